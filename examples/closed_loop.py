"""Closed loop, in silico: record an "animal", map its sites, synthesize, show it the images.

The honest preview of a real session. The ground-truth animal is the same network under a
different commitment (it sees 9 instead of 8 degrees, so every image lands 11 % smaller and
its RFs differ) with Poisson spiking; we record its V4 sites' responses to natural images
(4 repetitions), map them onto the lab's model with ridge regression, synthesize one "drive"
image per well-predicted site on the lab's model (contrast limited only by the gamut, like
the natural crops), show those images to the animal, and count for how many sites the
synthesized image beats the animal's best natural image of the whole session.

Run: python examples/closed_loop.py [--model efficientnet_lite0] [--sites 24] [--steps 128]
"""

import argparse
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

import insilico as lab

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--model", default="efficientnet_lite0")
p.add_argument("--sites", type=int, default=24)
p.add_argument("--images", type=int, default=2000)
p.add_argument("--steps", type=int, default=128)
p.add_argument("--min-r", type=float, default=0.5, help="well-predicted: predictivity above")
p.add_argument("--animal-degrees", type=float, default=9.0, help="the animal's visual degrees")
args = p.parse_args()

# the animal: same weights, other commitment (9 visual degrees)
text = (resources.files("insilico.brain") / "commitments" / f"{args.model}.toml").read_text()
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "animal.toml"
    path.write_text(text.replace("visual_degrees = 8.0", f"visual_degrees = {args.animal_degrees}"))
    animal = lab.Rig(lab.load_model(str(path)))
lab_rig = lab.Rig(lab.load_model(args.model))
size = 8.0

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

# 3. synthesize drive images on the lab model, full field like the session; natural crops are
# not contrast-limited, so the synthesized images may use the whole gamut too
res = lab_rig.synthesize(
    good,
    objective="drive",
    size_deg=size,
    steps=args.steps,
    seed=0,
    reference=session[:200],
    rms_contrast=1.0,
    progress=False,
)

# 4. show them to the animal: its expected rates (no noise) vs its best natural image
shown = lab.stimuli.from_arrays(
    res.displayed_luminance(lab_rig.display), size_deg=size, encoding="linear"
)
ids = list(good.names)
truth_synth = animal.record(shown, ids, progress=False).values[:, :, 0]
truth_natural = animal.record(session, ids, progress=False).values[:, :, 0]
synth = np.diag(truth_synth)  # image k was made for site k
best_natural = truth_natural.max(axis=0)
wins = synth > best_natural
for k, nid in enumerate(ids):
    print(
        f"{nid:>14}: r {good.predictivity[k]:.2f}  synthesized {synth[k]:7.1f}  "
        f"best natural {best_natural[k]:7.1f} spikes/s  {'WIN' if wins[k] else 'loss'}"
    )
print(
    f"synthesized beats the animal's best natural image for {wins.sum()}/{len(wins)} "
    f"well-predicted sites (median ratio {np.median(synth / best_natural):.2f})"
)
print("CLAIM HOLDS" if wins.mean() > 0.5 else "CLAIM FAILS")
