"""The IT perturbation suite with its controls: draws of sites and null sheets.

Runs Schrimpf et al. 2024's nine IT perturbation benchmarks ``--draws`` times on one model
and, at the same sites, on the same network with IT's places shuffled (channels, and units
one by one), then prints the lab's verdicts (predicted only when the model passes in most
draws and more often than the channel-shuffled null) beside Brain-Score's one-draw count.

    python examples/perturbation_suite.py                       # Lite0, 10 draws, ~8 min
    python examples/perturbation_suite.py --model efficientnet_lite0_topo
    python examples/perturbation_suite.py --model tiny --draws 2 --only Afraz2006
"""

from __future__ import annotations

import argparse

import insilico as lab
from insilico.experiments.suite_verdicts import run_draws, verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--arrangement", default=None, help="IT arrangement (default: the model's)")
    ap.add_argument("--draws", type=int, default=10, help="draws of sites (seeds 1..N)")
    ap.add_argument("--only", nargs="*", default=None, help="papers, e.g. Afraz2006 Moeller2017")
    args = ap.parse_args()

    arrangement = {"IT": args.arrangement} if args.arrangement else None
    rig = lab.Rig(lab.load_model(args.model, arrangement=arrangement))
    long = run_draws(rig, args.draws, ("channels", "units"), only=args.only)
    table = verdicts(long)
    print(table.drop(columns=["in_vivo"]).to_string(index=False))

    # Brain-Score's rule counts passes on one draw: the count per draw, for the model and nulls
    passes = long.assign(ok=long["verdict"].eq("pass")).groupby(["sheet", "draw"])["ok"].sum()
    for sheet, counts in passes.groupby(level=0):
        print(f"passes per draw, {sheet}: {', '.join(map(str, counts.to_list()))}")
    predicted = int((table["verdict"] == "predicted").sum())
    print(f"predicted beyond the null: {predicted} of {len(table)}")


if __name__ == "__main__":
    main()
