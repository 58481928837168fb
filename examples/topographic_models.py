"""How topographic is IT? The same network's IT sheet under its arrangements (channels placed
by similarity, by post-hoc swaps or at random; units placed one by one by post-hoc swaps) and
the fine-tuned topographic model, measured against the null of shuffled places.

For each arrangement: the spatial-correlation objective on the calibration images, the
correlation of face d' between units 1-3 mm apart (real places vs shuffled places), and the
face patches (units' d' averaged within 1 mm above 0.85) with their diameters in mm.

    python examples/topographic_models.py                   # EfficientNet-Lite0 (+ _topo)
    python examples/topographic_models.py --model tiny      # seconds, for a try
"""

from __future__ import annotations

import argparse

import insilico as lab
from insilico.analysis.topography import category_dprime, correlogram, patches, shuffled_places


def measure(name: str, arrangement: str | None) -> None:
    model = lab.load_model(name, arrangement={"IT": arrangement} if arrangement else None)
    rig = lab.Rig(model)
    face_set = lab.stimuli.faces("test", size_deg=4.0)  # 50 faces, 50 non-faces (lfw)
    dprime = category_dprime(rig, "IT", face_set, "category", "face")
    units = model.units("IT")
    bins = (1.0, 3.0)
    real = correlogram(units, dprime, bins_mm=bins)["similarity"].iloc[0]
    level = "unit" if arrangement == "unit-swap" else "channel"  # shuffle what was placed
    null = correlogram(shuffled_places(units, level=level), dprime, bins_mm=bins)
    null = null["similarity"].iloc[0]
    found = patches(units, dprime)
    sizes = ", ".join(f"{d:.1f}" for d in found["diameter_mm"].head(3))
    largest = f", largest {sizes} mm" if len(found) else ""
    print(
        f"{name:<24} {model.region('IT').arrangement:<10} objective "
        f"{model.region_units('IT').spatial_correlation:5.2f}   face-d' r(1-3 mm) {real:+.3f} "
        f"(shuffled {null:+.3f})   {len(found)} patches{largest}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    a = p.parse_args()
    for arrangement in ("similarity", "swap", "random", "unit-swap"):
        measure(a.model, arrangement)
    if a.model == "efficientnet_lite0":
        measure("efficientnet_lite0_topo", None)  # IT arranged as it was fine-tuned
    print("in vivo: 6 face patches per hemisphere (Tsao et al. 2008); the middle patch ~6 mm")
    print("across (Aparicio et al. 2016); see insilico.analysis.topography for the sources")


if __name__ == "__main__":
    main()
