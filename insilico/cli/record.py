"""``insilico models``, ``insilico record`` and ``insilico demo``."""

from __future__ import annotations

import argparse
import time

from insilico.cli.rig import implant, open_rig
from insilico.cli.values import CLIError, parse_pair, site_numbers, stimulus_set

# command functions import their dependencies lazily so that `insilico --help` starts fast


def cmd_models(args: argparse.Namespace) -> None:
    from insilico.brain import models

    table = models()
    cols = ["name", "visual_degrees", "input_size", "V1", "V2", "V4", "IT", "weights"]
    print(table[cols].to_string(index=False))


def cmd_record(args: argparse.Namespace) -> None:
    import numpy as np

    if args.sites and not args.n_sites:
        raise CLIError("--sites picks sites of an implanted array: give --n-sites too")
    t0 = time.perf_counter()
    model, rig = open_rig(args)
    stim = stimulus_set(args.stimuli, args.set)
    if args.n_sites:
        targets = implant(rig, args)
        if args.sites:
            targets = targets.sites[site_numbers(args.sites)]
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


def cmd_demo(args: argparse.Namespace) -> None:
    from insilico.demo import run_demo

    at = parse_pair(args.at_deg, "--at-deg")
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
