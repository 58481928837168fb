"""Muscimol in IT impairs the tasks whose discriminating units lie under the injection.

An in-silico analogue of Rajalingham & DiCarlo (2019, Neuron 102:493): inactivating a
millimetre-scale IT region produced object-discrimination deficits that varied across tasks,
predicted by how much each task relied on the inactivated units. Here: one linear decoder per
"object vs rest" task on IT rates, one muscimol injection (1 µl), and for each task the
accuracy drop (``lab.analysis.compare``) against the share of the decoder's weight that sits
under the injection. The claim holds if the two correlate negatively.

Run: python examples/muscimol_tasks.py [--model efficientnet_lite0]
"""

import argparse

import numpy as np

import insilico as lab

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--model", default="efficientnet_lite0")
p.add_argument("--controls", type=int, default=10)
args = p.parse_args()

model = lab.load_model(args.model)
rig = lab.Rig(model)
pool = lab.stimuli.natural(800, size_deg=model.visual_degrees, seed=21)
source = pool.meta["source"].to_numpy()
half = len(pool) // 2
ex, ey = model.region_units("IT").sheet_extent_mm
at = (ex * 0.3, ey * 0.6)
injection = lab.perturb.Muscimol("IT", at_mm=at, volume_ul=1.0)
spread = 1 - injection.factor(model).numpy()  # silenced share of each IT unit (left hemisphere)

rows = []
for obj in ("astronaut", "chelsea", "coffee", "rocket", "brick", "camera"):
    labels = np.where(source == obj, obj, "rest")
    decoder = rig.fit_task(pool[:half], labels[:half], region="IT")
    w = decoder.weight.abs().sum(0).numpy()
    under = float((w * spread).sum() / w.sum())
    e = lab.analysis.compare(
        rig,
        pool[half:],
        injection,
        readout="behaviour",
        task=decoder,
        labels=labels[half:],
        controls=args.controls,
        seed=0,
        progress=False,
    )
    rows.append((obj, decoder.cv_accuracy, under, e.effect, e.ci))
    print(
        f"{obj:>10}: CV acc {decoder.cv_accuracy:.3f}, weight under injection {under:.3f}, "
        f"accuracy change {100 * e.effect:+.1f} points "
        f"(95% CI {100 * e.ci[0]:+.1f}..{100 * e.ci[1]:+.1f})"
    )

under = np.array([r[2] for r in rows])
drop = np.array([r[3] for r in rows])
rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
rho = np.corrcoef(rank(under), rank(drop))[0, 1]
print(f"Spearman rho(weight under injection, accuracy change) = {rho:+.2f} over {len(rows)} tasks")
