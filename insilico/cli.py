"""The ``insilico`` command line: models, record, demo.

Every command prints a one-screen summary; bad input exits with status 2 and one line
``insilico: error: ...`` naming the bad value.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

STIMULUS_KINDS = ("gratings", "gabors", "natural", "white_noise", "pink_noise", "blank", "folder")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _pair(text: str, name: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"{name} must be two numbers 'X,Y', got {text!r}") from None
    return x, y


def _value(text: str) -> Any:
    """'3' -> 3, '0.5' -> 0.5, '0:180:15' -> range list, '1,2,4' -> list, else the string."""
    if "," in text:
        return [_value(t) for t in text.split(",") if t != ""]
    if text.count(":") == 2 and "/" not in text:
        try:
            start, stop, step = (float(t) for t in text.split(":"))
        except ValueError:
            return text
        if step <= 0:
            raise CLIError(f"range {text!r} needs a positive step")
        values = list(_frange(start, stop, step))
        return [int(v) if float(v).is_integer() else v for v in values]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _frange(start: float, stop: float, step: float):
    k = 0
    while start + k * step < stop - 1e-12:
        yield round(start + k * step, 10)
        k += 1


def _stimuli(kind: str, settings: Sequence[str]):
    import stimuli

    params: dict[str, Any] = {}
    for item in settings:
        if "=" not in item:
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        params[key.strip()] = _value(text.strip())
    for key in ("position_deg", "size_px"):
        if key in params and isinstance(params[key], list):
            params[key] = tuple(params[key])
    if kind == "folder":
        if "path" not in params:
            raise CLIError("--stimuli folder needs --set path=DIR")
        fn, args = stimuli.from_folder, {"path": str(params.pop("path"))}
    else:
        fn, args = getattr(stimuli, kind), {}
    try:
        return fn(**args, **params)
    except TypeError as err:
        raise CLIError(f"--stimuli {kind}: {err}") from None


def _site_numbers(text: str) -> list[int]:
    """``--sites 3,17,22``: site numbers of the implanted array (same meaning everywhere)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"--sites must be site numbers like 3,17,22, got {text!r}") from None


def cmd_models(args: argparse.Namespace) -> None:
    import insilico as lab

    table = lab.models()
    cols = ["name", "visual_degrees", "input_size", "V1", "V2", "V4", "IT", "weights"]
    print(table[cols].to_string(index=False))


def cmd_record(args: argparse.Namespace) -> None:
    import numpy as np

    import insilico as lab

    if args.sites and not args.n_sites:
        raise CLIError("--sites picks sites of an implanted array: give --n-sites too")
    t0 = time.perf_counter()
    model = lab.load_model(args.model, weights=args.weights, device=args.device)
    rig = lab.Rig(model)
    stim = _stimuli(args.stimuli, args.set)
    if args.n_sites:
        at_deg = _pair(args.at_deg, "--at-deg") if args.at_deg else None
        at_mm = _pair(args.at_mm, "--at-mm") if args.at_mm else None
        if at_deg is None and at_mm is None:
            at_deg = (0.0, 0.0)
        targets = rig.implant(args.region, args.n_sites, at_deg=at_deg, at_mm=at_mm, seed=args.seed)
        if args.sites:
            targets = targets.sites[_site_numbers(args.sites)]
    else:
        model.region(args.region)
        targets = args.region
    rec = rig.record(
        stim,
        targets,
        repeats=args.repeats,
        noise=None if args.noise == "none" else args.noise,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
        overwrite=args.overwrite,
        progress=not args.quiet,
        precision=args.precision,
    )
    values = rec.values
    print(
        f"recorded  {rec.sizes['presentation']} presentations x {rec.sizes['neuroid']} neuroids "
        f"of {args.region} in {model.name} ({len(stim)} stimuli x {args.repeats} repeats)"
    )
    print(
        f"rates     mean {np.mean(values):.1f}, max {np.max(values):.1f} spikes/s; "
        f"{100 * np.mean(values.max(axis=(0, 2)) > 0):.0f}% of neuroids responsive"
    )
    print(f"saved     {args.out}")
    print(f"time      {time.perf_counter() - t0:.1f} s")


def cmd_synthesize(args: argparse.Namespace) -> None:
    import insilico as lab

    t0 = time.perf_counter()
    model = lab.load_model(args.model, weights=args.weights, device=args.device)
    rig = lab.Rig(model)
    position = _pair(args.position_deg, "--position-deg")
    if args.neuroids:
        targets = [t.strip() for t in args.neuroids.split(",") if t.strip()]
    else:
        at_mm = _pair(args.at_mm, "--at-mm") if args.at_mm else None
        at_deg = None if at_mm else (_pair(args.at_deg, "--at-deg") if args.at_deg else (0, 0))
        array = rig.implant(args.region, args.n_sites, at_deg=at_deg, at_mm=at_mm, seed=args.seed)
        targets = array.sites[_site_numbers(args.sites)]
    size = args.size_deg
    reference = lab.stimuli.natural(args.reference, size_deg=size, seed=args.seed + 1)
    res = rig.synthesize(
        targets,
        objective=args.objective,
        n_per_target=args.n_per_target,
        size_deg=size,
        position_deg=position,
        steps=args.steps,
        seed=args.seed,
        reference=reference,
        rms_contrast=args.rms_contrast,
        progress=not args.quiet,
    )
    res.save(args.out, overwrite=args.overwrite)
    print(res.print_summary())
    if args.export:
        res.export(args.export, display=rig.display, overwrite=args.overwrite)
        print(f"exported  {len(res)} PNGs + manifest to {args.export}")
    print(f"saved     {args.out}")
    print(f"time      {time.perf_counter() - t0:.1f} s")


def cmd_export(args: argparse.Namespace) -> None:
    """A synthesis store -> one PNG per image + manifest.csv/json for a real display."""
    import insilico as lab
    import stimuli

    res = stimuli.synthesis.open_result(args.store)
    if args.display:
        display = _display_from_toml(args.display)
    elif isinstance(res.attrs.get("display"), dict):
        display = lab.Display(**res.attrs["display"])  # the display the synthesis measured on
    else:
        display = lab.Display()
    manifest = res.export(
        args.out,
        display=display,
        gamma_correct=not args.no_gamma_correct,
        bit_depth=args.bit_depth,
        overwrite=args.overwrite,
    )
    bits = int(manifest["bit_depth"].iloc[0])
    print(
        f"exported  {len(manifest)} PNGs ({bits}-bit, {int(manifest['size_px'].iloc[0])} px, "
        f"gamma {'corrected' if not args.no_gamma_correct else 'not corrected'}) + manifest "
        f"to {args.out}"
    )
    for row in manifest.head(5).itertuples(index=False):
        print(f"  {row.file}")
    if len(manifest) > 5:
        print(f"  ... {len(manifest) - 5} more")


def _display_from_toml(path: str) -> Any:
    """A Display from a TOML file: keys at the top level or under a [display] table."""
    import tomllib
    from pathlib import Path

    import insilico as lab

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--display {path!r}: no such file")
    try:
        data = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"--display {path!r} is not valid TOML: {err}") from None
    data = data.get("display", data)
    try:
        return lab.Display(**data)
    except TypeError:
        known = set(lab.Display.__dataclass_fields__)
        bad = sorted(set(data) - known)
        raise ValueError(
            f"--display {path!r}: unknown keys {bad}; expected some of {sorted(known)}"
        ) from None


def cmd_run(args: argparse.Namespace) -> None:
    from insilico import experiments

    if args.list:
        for name, path in experiments.library().items():
            spec = experiments.load(path)
            text = " ".join(spec.description.split())
            # the headline: up to the first colon or full stop, else the first 80 characters
            cut = min((i for i in (text.find(": "), text.find(". ")) if i > 0), default=-1)
            head = text[:cut] if 0 < cut <= 120 else text[:80] + ("…" if len(text) > 80 else "")
            preds = len(spec.predictions)
            print(f"{name:<24} {head} ({preds} prediction{'s' * (preds != 1)})")
        return
    if not args.experiment:
        raise CLIError("give an experiment file or a shipped name (insilico run --list)")
    exp = experiments.Experiment.from_toml(experiments.resolve(args.experiment))
    if args.model:
        exp = exp.with_model(args.model)
    if args.device is not None:
        exp.spec.model = {**exp.spec.model, "device": args.device}
    if args.seed is not None:
        if args.seed < 0:
            raise CLIError(f"--seed must be a non-negative integer, got {args.seed}")
        exp.spec.seed = args.seed
    out = args.out or f"runs/{exp.spec.name}"
    res = exp.run(
        out,
        overwrite=args.overwrite,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.quiet,
    )
    print(f"{exp.spec.name}: {len(res.predictions)} predictions ({res.seconds:.1f} s)")
    for p in res.predictions:
        null = (
            f"; null {p['null_value']:.4g}, 95th pct {p['null_95']:.4g}"
            if "null_value" in p
            else ""
        )
        print(
            f"  [{p['verdict']:>12}] {p['name']}: {p['metric']} = {p['value']:.4g} "
            f"(95% CI {p['ci'][0]:.4g} .. {p['ci'][1]:.4g}{null}; expected {p['expect']})"
        )
    print(f"report    {res.out / 'report.md'}")
    print(f"results   {res.out / 'results.zarr'}")


def _has_display() -> bool:
    """Whether Qt can open a window here (an X or Wayland display, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal"):
        return False  # napari cannot draw there; say so rather than abort inside Qt
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_view(args: argparse.Namespace) -> None:
    from insilico.viewer import view

    if not _has_display():
        raise CLIError(
            "no display: insilico view opens a napari window; run it under xvfb-run "
            "(xvfb-run insilico view ...) or set DISPLAY"
        )
    try:
        view(args.path, synthesize=args.synthesize or None)  # bad store: ValueError, exit 2
        import napari
    except ImportError as err:
        raise CLIError(
            f"insilico view needs napari and Qt ({err.name} is missing): "
            "pip install 'insilico-lab[view]'"
        ) from None
    napari.run()


def cmd_demo(args: argparse.Namespace) -> None:
    from insilico.demo import run_demo

    at = _pair(args.at_deg, "--at-deg")
    s = run_demo(
        out=args.out,
        model_name=args.model,
        at_deg=at,
        n_sites=args.n_sites,
        repeats=args.repeats,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print()
    print(
        f"V1 orientation tuning: {s['n_sites']} sites at {at} deg, "
        f"{s['n_presentations']} presentations"
    )
    print(
        f"{'site':>4} {'RF x,y (deg)':>14} {'pref (deg)':>10} {'OSI':>5} {'SF (c/deg)':>10} "
        f"{'peak (sp/s)':>11}"
    )
    for row in s["table"]:
        rx, ry = row["rf_deg"]
        print(
            f"{row['site']:>4} {f'{rx:+.2f},{ry:+.2f}':>14} {row['pref_deg']:>10.0f} "
            f"{row['osi']:>5.2f} {row['best_sf']:>10g} {row['peak_hz']:>11.1f}"
        )
    print(
        f"responsive sites (peak above spontaneous): {s['responsive']}/{s['n_sites']}; "
        f"median OSI {s['median_osi']:.2f} (cross-validated); OSI > 0.3: "
        f"{100 * s['frac_osi_gt_0.3']:.0f}%"
    )
    print(
        f"null (orientations shuffled): median OSI {s['null_median_osi']:.2f}, 95th percentile "
        f"{s['null_osi_95']:.2f}; sites above it: {100 * s['frac_above_null']:.0f}%"
    )
    print(f"recording: {s['store']}")
    print(f"plot:      {s['plot']}")
    print(f"time:      {s['seconds']:.1f} s")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="insilico",
        description="In-silico visual neuroscience: record from brain models in degrees.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list the brain models of the zoo")
    m.set_defaults(func=cmd_models)

    r = sub.add_parser(
        "record",
        help="record responses of a region or an implanted array to a stimulus set",
        description="Record firing rates (spikes/s) to a zarr store. Example: insilico record "
        "--model efficientnet_lite0 --region V1 --sites 64 --at-deg=1.5,-1 --stimuli gratings "
        "--set size_deg=3 --set position_deg=1.5,-1 --set orientation_deg=0:180:15 "
        "--out runs/v1.zarr",
    )
    r.add_argument("--model", default="efficientnet_lite0", help="model name (insilico models)")
    r.add_argument("--weights", default=None, help="local weights file (state dict)")
    r.add_argument("--device", default="cpu", help="cpu or cuda")
    r.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "bfloat16"),
        help="forward-pass precision (bfloat16: torch.autocast, for a GPU; rates within ~1%%)",
    )
    r.add_argument("--region", required=True, help="V1, V2, V4 or IT")
    r.add_argument(
        "--n-sites",
        type=int,
        default=0,
        help="implant an array of this many sites (default: record every unit of the region)",
    )
    r.add_argument(
        "--sites", default=None, help="record only these site numbers of the array, e.g. 3,17,22"
    )
    r.add_argument("--at-deg", default=None, help="array centre X,Y in degrees (use --at-deg=-1,2)")
    r.add_argument("--at-mm", default=None, help="array centre X,Y on the cortical sheet in mm")
    r.add_argument("--stimuli", required=True, choices=STIMULUS_KINDS, help="stimulus generator")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="generator parameter; VALUE may be a list 1,2,4 or a range 0:180:15",
    )
    r.add_argument("--repeats", type=int, default=1, help="presentations of each stimulus")
    r.add_argument(
        "--noise",
        choices=("none", "poisson"),
        default="none",
        help="none: expected rates; poisson: spike counts per bin / bin duration",
    )
    r.add_argument("--seed", type=int, default=0, help="seed of the array jitter and the noise")
    r.add_argument("--batch-size", type=int, default=64, help="stimuli per forward pass")
    r.add_argument("--out", required=True, help="zarr store to write (resumes the same job)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing store")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_record)

    y = sub.add_parser(
        "synthesize",
        help="synthesize images that drive / silence / one-hot control recorded sites",
        description="Example: insilico synthesize --model efficientnet_lite0 --region V4 "
        "--sites 3,17,22 --objective drive --out runs/drive.zarr",
    )
    y.add_argument("--model", default="efficientnet_lite0", help="brain model (insilico models)")
    y.add_argument("--weights", default=None, help="weights file instead of the shipped ones")
    y.add_argument("--device", default="cpu", help="cpu or cuda")
    y.add_argument("--region", required=True, help="V1, V2, V4 or IT")
    y.add_argument("--n-sites", type=int, default=96, help="sites of the implanted array")
    y.add_argument("--at-deg", default=None, help="array centre X,Y in degrees (default 0,0)")
    y.add_argument("--at-mm", default=None, help="array centre X,Y on the sheet in mm")
    y.add_argument("--sites", default="0", help="target site numbers, e.g. 3,17,22")
    y.add_argument("--neuroids", default=None, help="target neuroid ids instead of sites")
    y.add_argument(
        "--objective",
        default="drive",
        choices=("drive", "silence", "one_hot"),
        help="drive or silence each target, or drive it while silencing the rest of the array",
    )
    y.add_argument("--n-per-target", type=int, default=1, help="images per target (seeds)")
    y.add_argument("--size-deg", type=float, default=6.0, help="image diameter in degrees")
    y.add_argument("--position-deg", default="0,0", help="image centre X,Y in degrees")
    y.add_argument("--steps", type=int, default=256, help="gradient steps")
    y.add_argument(
        "--rms-contrast", type=float, default=0.25, help="RMS-contrast budget of the images"
    )
    y.add_argument("--reference", type=int, default=1000, help="natural images to compare with")
    y.add_argument("--seed", type=int, default=0, help="seed of the array and the images")
    y.add_argument("--out", required=True, help="zarr store for images, trajectories, responses")
    y.add_argument("--export", default=None, help="also write PNGs + manifest to this folder")
    y.add_argument("--overwrite", action="store_true", help="replace an existing store")
    y.add_argument("--quiet", action="store_true", help="no progress bar")
    y.set_defaults(func=cmd_synthesize)

    x = sub.add_parser(
        "export",
        help="write a synthesis store's images as PNGs + manifest for a real display",
        description="Example: insilico export runs/drive.zarr --out session/ --display "
        "rig.toml. PNGs at the display's pixels per degree, named by image number and site "
        "(000_site03_drive_r0.png), gamma-corrected, with manifest.csv and manifest.json.",
    )
    x.add_argument("store", help="synthesis store written by insilico synthesize / rig.synthesize")
    x.add_argument("--out", required=True, help="folder for the PNGs and the manifest")
    x.add_argument(
        "--display",
        default=None,
        help="TOML file with the display (distance_cm, width_cm, resolution, gamma, "
        "background, bit_depth); default: the display the synthesis was measured on",
    )
    x.add_argument("--bit-depth", type=int, default=None, help="8, 10, 12 or 16 (default: display)")
    x.add_argument(
        "--no-gamma-correct", action="store_true", help="write linear values, no gamma correction"
    )
    x.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    x.set_defaults(func=cmd_export)

    e = sub.add_parser(
        "run",
        help="run an experiment file (or a shipped experiment) and write a report",
        description="Run EXPERIMENT (a .toml file or a shipped name, see --list): every "
        "measure under every condition, predictions evaluated, results.zarr + report.md.",
    )
    e.add_argument(
        "experiment", nargs="?", default=None, help="experiment .toml file or shipped name"
    )
    e.add_argument("--list", action="store_true", help="list the shipped experiments")
    e.add_argument("--out", default=None, help="output folder (default runs/NAME)")
    e.add_argument("--model", default=None, help="run on another model (e.g. tiny)")
    e.add_argument("--device", default=None, help="cpu or cuda (default: the file's, else cpu)")
    e.add_argument("--seed", type=int, default=None, help="replace the experiment's seed")
    e.add_argument("--workers", type=int, default=None, help="local Dask workers for a sweep")
    e.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the output folder (a sweep otherwise resumes its sweep.zarr)",
    )
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_run)

    w = sub.add_parser("view", help="open a synthesis or recording store in napari (view extra)")
    w.add_argument(
        "path", nargs="?", default=None, help="zarr store (omit: empty viewer + Synthesize)"
    )
    w.add_argument("--synthesize", action="store_true", help="also open the Synthesize dock")
    w.set_defaults(func=cmd_view)

    d = sub.add_parser(
        "demo",
        help="V1 orientation tuning on the offline model: zarr + PNG + summary",
        description="Implant a 64-site V1 array at an RF location, record orientation tuning "
        "to gratings with Poisson noise, save the recording and a plot of tuning curves.",
    )
    d.add_argument("--out", default="insilico_demo", help="output folder")
    d.add_argument("--model", default="efficientnet_lite0", help="brain model (insilico models)")
    d.add_argument("--at-deg", default="1.5,-1.0", help="RF location X,Y in degrees")
    d.add_argument("--n-sites", type=int, default=64, help="sites of the V1 array")
    d.add_argument("--repeats", type=int, default=5, help="presentations of each grating")
    d.add_argument("--overwrite", action="store_true", help="replace the demo's outputs")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from insilico.brain.zoo import NotBrainLikeWarning

    warnings.simplefilter("always", NotBrainLikeWarning)
    try:
        args.func(args)
    except (
        CLIError,
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        BlockingIOError,
    ) as err:
        from recordings.format import error_line

        message = error_line(err)
        print(f"insilico: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("insilico: interrupted; finished batches are saved, rerun to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
