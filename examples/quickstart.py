"""Quickstart: V1 orientation tuning on the offline EfficientNet-Lite0, saved to zarr.

Run: python examples/quickstart.py [OUT_DIR]
"""

import sys
from pathlib import Path

import insilico as lab
from insilico.analysis import orientation_selectivity, tuning_curve

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")
model = lab.load_model("efficientnet_lite0")
rig = lab.Rig(model, display=lab.Display(distance_cm=57, width_cm=53, resolution=(1920, 1080)))
v1 = rig.implant("V1", n_sites=64, at_deg=(1.5, -1.0), seed=0)
grat = lab.stimuli.gratings(
    size_deg=3, position_deg=(1.5, -1.0), orientation_deg=range(0, 180, 15), sf_cpd=[1, 2, 4]
)
rec = rig.record(grat, v1, repeats=5, noise="poisson", seed=0)
lab.recordings.save(rec, out / "v1.zarr", overwrite=True)
rec2 = lab.recordings.open(out / "v1.zarr")

curves = tuning_curve(rec2, "orientation_deg")
osi, pref = orientation_selectivity(curves["mean"].values, curves["orientation_deg"].values)
print(rec2.sizes)
print(f"median OSI over {len(osi)} sites: {sorted(osi)[len(osi) // 2]:.2f}")
print(f"saved {out / 'v1.zarr'}")
