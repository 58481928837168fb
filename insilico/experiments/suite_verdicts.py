"""Verdicts of the perturbation suite over several draws of sites, against null sheets.

Brain-Score's qualitative rule passes a benchmark on one draw of sites when its effect is
significant (p < 0.05) in the published direction. Measured here (README, issue 12): single
verdicts flip between draws, and the same network with IT's channels dealt to random places
passes as many benchmarks as the topographic sheets. This lab's verdict therefore adds two
controls, a stated change of that rule:

* **draws**: the suite runs ``K`` times, seeds 1..K, each drawing its own sites;
* **null sheets**: at the same seeds (so the same sheet positions), the same network and
  dose with the region's places shuffled afresh for each draw
  (:func:`insilico.analysis.topography.shuffled_places`): ``"channels"`` moves whole
  channels (each stays a patch), ``"units"`` moves every unit (no topography left).

A benchmark is **predicted** when the model passes in at least half of the draws and more
often than on the first null (one-sided Fisher exact test on the two pass counts,
p < ``ALPHA``); **not beyond null** when it passes in at least half but the null about as
often; **fail** otherwise. A "no significant change" benchmark (name ending
``_insignificant``: the ipsilateral control) is a control of the others, not a prediction
topography could make: it is **predicted** when it passes in at least half of the draws,
whatever the null does.
"""

from __future__ import annotations

import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from insilico.analysis.topography import shuffled_places
from insilico.experiments.perturbation_suite import suite_rig, suite_table
from insilico.experiments.suite_tasks import ALPHA
from rigs.rig import Rig

#: null sheets: name -> level of ``shuffled_places``
NULLS = {"channels": "channel", "units": "unit"}


def run_draws(
    rig: Rig,
    draws: int = 10,
    nulls: tuple[str, ...] | None = None,
    dose_scale: float = 1.0,
    only: list[str] | None = None,
    progress: bool = True,
    first_seed: int = 1,
) -> pd.DataFrame:
    """The suite on ``rig``'s model and on each null sheet in ``nulls`` (keys of ``NULLS``;
    default: ``("units",)`` for a sheet whose units are placed one by one, ``"unit-swap"``,
    else ``("channels",)``),
    ``draws`` draws of sites each (seeds ``first_seed`` onwards; the nulls' places are
    shuffled with the draw's seed). One row per sheet, draw and benchmark
    (``suite_table``'s columns plus ``sheet``, "model" or "null: <name> shuffled", and
    ``draw``)."""
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive whole number, got {draws!r}")
    if not isinstance(first_seed, int) or first_seed < 0:
        raise ValueError(f"the first seed must be a non-negative integer, got {first_seed!r}")
    s = suite_rig(rig, dose_scale, only)
    if nulls is None:
        nulls = (
            ("units",) if s.model.region_units("IT").arrangement == "unit-swap" else ("channels",)
        )
    bad = [n for n in nulls if n not in NULLS]
    if bad:
        raise ValueError(f"unknown null {bad[0]!r}; expected one of {', '.join(NULLS)}")
    sheets = ["model"] + [f"null: {n} shuffled" for n in nulls]
    jobs = [(sheet, seed) for seed in range(first_seed, first_seed + draws) for sheet in sheets]
    parts = []
    for sheet, seed in tqdm(jobs, desc="suite draws", disable=not progress):
        view = s
        if sheet != "model":
            level = NULLS[sheet.split()[1]]
            places = shuffled_places(s.table, seed=seed, level=level)
            view = s.with_places(places, f"{level}s shuffled (seed {seed})")
        table = suite_table(view, seed, only)
        table.insert(0, "draw", seed)
        table.insert(0, "sheet", sheet)
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


def verdicts(long: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark of a ``run_draws`` table: passes of the model and of each null over the
    draws, the Fisher p of model against the first null, and the verdict (module doc)."""
    draws = int(long["draw"].nunique())
    passed = (long["verdict"] == "pass").groupby([long["benchmark"], long["sheet"]]).sum()
    sheets = list(dict.fromkeys(long["sheet"]))
    rows = []
    for bench in dict.fromkeys(long["benchmark"]):
        m = int(passed[bench, "model"])
        row = {"benchmark": bench, "model passes": f"{m}/{draws}"}
        for sheet in sheets[1:]:
            row[f"{sheet} passes"] = f"{int(passed[bench, sheet])}/{draws}"
        majority = 2 * m >= draws
        if bench.endswith("_insignificant"):
            p, verdict = float("nan"), "predicted" if majority else "fail"
        elif len(sheets) > 1:
            n = int(passed[bench, sheets[1]])
            table = [[m, draws - m], [n, draws - n]]
            p = float(stats.fisher_exact(table, alternative="greater")[1])
            verdict = "fail" if not majority else "predicted" if p < ALPHA else "not beyond null"
        else:
            p, verdict = float("nan"), "pass (no null run)" if majority else "fail"
        first = long[(long["benchmark"] == bench) & (long["sheet"] == "model")].iloc[0]
        row.update(
            {
                "p vs null": p,
                "verdict": verdict,
                "effect (draw 1)": first["model_effect"],
                "in_vivo": first["in_vivo"],
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)
