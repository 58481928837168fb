"""Closed loop, in silico: record an "animal", map its sites, synthesize, show it the images.

The honest preview of a real session. The ground-truth animal is a *different network*
(default EfficientNet-Lite2, trained separately from the lab's Lite0) with Poisson spiking;
we record its V4 sites' responses to natural images (4 repetitions), map them onto the lab's
model with ridge regression, synthesize one "drive" image per well-predicted site on the
lab's model (aperture, mean luminance = background, RMS contrast 0.25, 8-bit display), show
those images to the animal, and compare each site's response with its response to the best
natural image of the session *held to the same display budget* (equated: same aperture,
mean, RMS contrast and quantisation) and, beside it, to the best plain full-gamut crop.

The claim is a number with a 95 % interval: the fraction of well-predicted sites whose
synthesized image beats the animal's best equated natural image (Clopper-Pearson interval),
and the median ratio synthesized / best natural (bootstrap interval over sites). The null:
if a synthesized image were just one more natural-like image, it would beat the best of N
natural images with probability 1 / (N + 1).

Run: python examples/closed_loop.py [--model efficientnet_lite0] [--animal efficientnet_lite2]
     [--sites 24] [--steps 128]
With ``--animal`` equal to ``--model`` (e.g. ``--model tiny --animal tiny`` for a quick check)
the animal is that network under another commitment (``--animal-degrees``, default 9).
"""

import argparse
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.stats import beta

import insilico as lab


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion k / n."""
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def bootstrap_median(x: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the median of ``x`` (resampling sites)."""
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, len(x), size=(n_boot, len(x)))], axis=1)
    return float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


def animal_model(name: str, lab_name: str, degrees: float):
    if name != lab_name:
        return lab.load_model(name)
    # the same network: another commitment (it sees `degrees` instead of 8 visual degrees)
    text = (resources.files("insilico.brain") / "commitments" / f"{name}.toml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "animal.toml"
        path.write_text(text.replace("visual_degrees = 8.0", f"visual_degrees = {degrees}"))
        return lab.load_model(str(path))


def report(label: str, synth: np.ndarray, best: np.ndarray, n_natural: int) -> None:
    wins = synth > best
    k, n = int(wins.sum()), len(wins)
    lo, hi = clopper_pearson(k, n)
    ratio = synth / np.maximum(best, 1e-9)
    rlo, rhi = bootstrap_median(ratio)
    print(
        f"RESULT beats_{label} = {k / n:.3f} [{lo:.3f}, {hi:.3f}] "
        f"({k}/{n} sites; Clopper-Pearson 95% CI; null {1 / (n_natural + 1):.4f})"
    )
    print(
        f"RESULT median_ratio_{label} = {np.median(ratio):.3f} [{rlo:.3f}, {rhi:.3f}] "
        "(bootstrap 95% CI over sites, 2000 resamples)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0", help="the lab's model")
    p.add_argument("--animal", default="efficientnet_lite2", help="the ground-truth network")
    p.add_argument("--sites", type=int, default=24)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--rms-contrast", type=float, default=0.25)
    p.add_argument("--min-r", type=float, default=0.5, help="well-predicted: predictivity above")
    p.add_argument("--animal-degrees", type=float, default=9.0, help="see the module doc")
    args = p.parse_args()

    animal = lab.Rig(animal_model(args.animal, args.model, args.animal_degrees))
    lab_rig = lab.Rig(lab.load_model(args.model))
    size = 8.0
    print(f"lab model {args.model}, animal {animal.model.name} ({args.animal})")

    # 1. the recording session: natural images, 4 repetitions, Poisson spikes
    array = animal.implant("V4", n_sites=args.sites, at_deg=(0.5, 0.5), seed=0)
    session = lab.stimuli.natural(args.images, size_deg=size, seed=7)
    recording = animal.record(session, array, repeats=4, noise="poisson", seed=0, progress=False)

    # 2. map the animal's sites onto the lab model
    mapped = lab_rig.map_neurons(
        recording, "V4", method="ridge", cv=5, stimuli_set=session, progress=False
    )
    print(mapped)
    good = mapped.sites[mapped.predictivity > args.min_r]
    print(f"{len(good)} of {len(mapped)} sites predicted with r > {args.min_r}")
    if len(good) == 0:
        raise SystemExit("no well-predicted sites: nothing to synthesize for")

    # 3. synthesize drive images on the lab model under the display budget
    res = lab_rig.synthesize(
        good,
        objective="drive",
        size_deg=size,
        steps=args.steps,
        seed=0,
        reference=session[:200],
        rms_contrast=args.rms_contrast,
        progress=False,
    )

    # 4. show them to the animal: its expected rates (no noise) vs its best natural image,
    # equated to the same budget and plain
    shown = lab.stimuli.from_arrays(
        res.displayed_luminance(lab_rig.display), size_deg=size, encoding="linear"
    )
    equated = lab.stimuli.equate(session, args.rms_contrast, 0.25, animal.display)
    ids = list(good.neuroid_ids)
    synth = np.diag(animal.record(shown, ids, progress=False).values[:, :, 0])  # image k: site k
    best_eq = animal.record(equated, ids, progress=False).values[:, :, 0].max(axis=0)
    best_plain = animal.record(session, ids, progress=False).values[:, :, 0].max(axis=0)
    for k, nid in enumerate(ids):
        print(
            f"{nid:>14}: r {good.predictivity[k]:.2f}  synthesized {synth[k]:7.1f}  best natural "
            f"equated {best_eq[k]:7.1f}  plain {best_plain[k]:7.1f} spikes/s  "
            f"{'WIN' if synth[k] > best_eq[k] else 'loss'}"
        )
    print(f"synthesized on {args.model}, shown to {args.animal}; {len(session)} natural images")
    report("equated", synth, best_eq, len(session))
    report("unconstrained", synth, best_plain, len(session))


if __name__ == "__main__":
    main()
