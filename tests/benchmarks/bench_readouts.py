"""Readout cost and accuracy: ridge, factorized and Gaussian readouts of V4 fitted to synthetic
single-unit sites (a V4 unit of the more variable half, rate 20 +- 10 spikes/s, noise s.d. 5),
timed on all images and scored (Pearson r against the noisy responses) on a held-out 20 %.

    OMP_NUM_THREADS=2 python tests/benchmarks/bench_readouts.py          # Lite0, 100 x 1,000
    python tests/benchmarks/bench_readouts.py --quick                    # tiny model (CI smoke)
    python tests/benchmarks/bench_readouts.py --impl /tmp/old_readouts.py  # another fit_readout

Per method: wall time of one fit on all images (``fit_s``), of the fit on the training 80 %
(``fit_train_s``), median held-out r, and for the gradient readouts the share of sites whose
best validation error beats the starting point's (``improved_share``, from the summary's
``val_start`` / ``val_best`` where the implementation reports them). Target: <= 2 min per fit
for 100 sites x 1,000 images on Lite0 V4 with 2 threads.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np
import torch
from _common import write_result

import insilico as lab
import stimuli
from rigs.mapping import layer_features
from rigs.regression import DEFAULT_ALPHAS
from rigs.regression import fit as regression_fit


def _fit_readout(impl: str | None):
    if impl is None:
        from rigs.readouts import fit_readout

        return fit_readout
    spec = importlib.util.spec_from_file_location("alt_readouts", impl)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fit_readout


def _r(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    pc, yc = pred - pred.mean(0), y - y.mean(0)
    return (pc * yc).sum(0) / np.sqrt((pc**2).sum(0) * (yc**2).sum(0) + 1e-12)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--sites", type=int, default=100)
    p.add_argument("--methods", default="ridge,factorized,gaussian")
    p.add_argument("--impl", default=None, help="file whose fit_readout replaces rigs.readouts'")
    p.add_argument("--features", default=None, help="cache the layer's features in this .pt file")
    p.add_argument("--skip-full", action="store_true", help="time only the training-part fit")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.images, args.sites = "tiny", 240, 8
    rig = lab.Rig(lab.load_model(args.model))
    layer = "v4" if args.model == "tiny" else "_blocks.7"
    shape = rig.model.layer_shape(layer)
    t0 = time.perf_counter()
    if args.features and __import__("os").path.exists(args.features):
        x = torch.load(args.features)
    else:
        stim = stimuli.natural(args.images, size_deg=8, seed=3)
        x = layer_features(rig, stim, layer)
        if args.features:
            torch.save(x, args.features)
    features_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    xn = x.numpy()
    sd = xn.std(0)
    units = rng.choice(np.flatnonzero(sd > np.median(sd)), args.sites, replace=False)
    signal = xn[:, units]
    signal = 20 + 10 * (signal - signal.mean(0)) / signal.std(0)
    y = torch.as_tensor(signal + rng.standard_normal(signal.shape) * 5).float()
    perm = rng.permutation(len(x))
    n_test = len(x) // 5
    te, tr = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    fit_readout = _fit_readout(args.impl)
    result = {
        "model": args.model,
        "layer": layer,
        "shape": list(shape),
        "images": len(x),
        "sites": args.sites,
        "threads": torch.get_num_threads(),
        "features_s": round(features_s, 1),
        "impl": args.impl or "rigs.readouts",
        "methods": {},
    }
    for method in args.methods.split(","):

        def fit(xx, yy, method=method):
            if method == "ridge":
                return regression_fit("ridge", xx, yy, DEFAULT_ALPHAS, None)
            return fit_readout(method, xx, yy, shape)

        t0 = time.perf_counter()
        w, b, summary = fit(x[tr], y[tr])
        fit_train_s = time.perf_counter() - t0
        pred = (x[te] @ w + b).numpy()
        r = _r(pred, y[te].numpy())
        fit_s = float("nan")
        if not args.skip_full:
            t0 = time.perf_counter()
            fit(x, y)
            fit_s = time.perf_counter() - t0
        out = {
            "fit_s": round(fit_s, 2),
            "fit_train_s": round(fit_train_s, 2),
            "median_heldout_r": round(float(np.median(r)), 3),
            "mean_heldout_r": round(float(np.mean(r)), 3),
        }
        if isinstance(summary, dict):
            if "steps" in summary:
                out["median_steps"] = float(np.median(summary["steps"]))
                out["steps_zero_share"] = float(np.mean(np.asarray(summary["steps"]) == 0))
            if "val_start" in summary:
                imp = np.asarray(summary["val_best"]) < np.asarray(summary["val_start"]) - 1e-6
                out["improved_share"] = float(imp.mean())
                out["median_val_start"] = round(float(np.median(summary["val_start"])), 4)
                out["median_val_best"] = round(float(np.median(summary["val_best"])), 4)
        result["methods"][method] = out
        print(method, out, flush=True)
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
