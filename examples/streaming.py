"""Stream a long IT recording (2,000 natural images) to zarr; interrupt and rerun to resume.

Run: python examples/streaming.py [STORE]
"""

import sys

import insilico as lab

store = sys.argv[1] if len(sys.argv) > 1 else "runs/it_natural.zarr"
model = lab.load_model("efficientnet_lite0")
rig = lab.Rig(model)
it = rig.implant("IT", n_sites=96, at_mm=(5.0, 5.0), seed=0)
images = lab.stimuli.natural(2000, size_deg=6, seed=1)
rec = rig.record(images, it, repeats=2, noise="poisson", seed=0, out=store, batch_size=64)
print(rec.sizes, "->", store)
print("mean rate per site (spikes/s):", rec.mean(("presentation", "time_bin")).values[:8].round(1))
