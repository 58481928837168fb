"""``insilico run``: an experiment file or a shipped experiment, with its report."""

from __future__ import annotations

import argparse

from insilico.cli.values import CLIError

# command functions import their dependencies lazily so that `insilico --help` starts fast


SUITES = ("perturbation",)


def _markdown(table, cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table[cols].itertuples(index=False):
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cmd_suite(args: argparse.Namespace) -> None:
    """``insilico run --suite perturbation --model M``: one table, benchmark x verdict, over
    ``--draws`` draws of sites against null sheets (``insilico.experiments.suite_verdicts``)."""
    from pathlib import Path

    from insilico.brain import load_model
    from insilico.experiments.perturbation_suite import run_suite
    from insilico.experiments.suite_verdicts import run_draws, verdicts
    from rigs import Rig

    if args.suite not in SUITES:
        raise CLIError(f"unknown suite {args.suite!r}; expected one of {', '.join(SUITES)}")
    name = args.model or "efficientnet_lite0"
    draws = 10 if args.draws is None else args.draws
    nulls = tuple(args.nulls.split(",")) if args.nulls else (() if draws == 1 else None)
    seed = 1 if args.seed is None else args.seed
    try:
        if seed < 0:
            raise ValueError(f"--seed must be a non-negative integer, got {seed}")
        if draws < 1:
            raise ValueError(f"--draws must be a positive whole number, got {draws}")
        model = load_model(
            name,
            device=args.device or "cpu",
            arrangement={"IT": args.arrangement} if args.arrangement else None,
        )
        dose = 0.0 if args.null else 1.0
        if draws == 1 and not nulls:
            long = None
            table = run_suite(Rig(model), dose, seed, progress=not args.quiet)
        else:
            long = run_draws(Rig(model), draws, nulls, dose, None, not args.quiet, seed)
            table = verdicts(long)
    except ValueError as err:
        raise CLIError(str(err)) from None
    tag = f"{name}-{model.region('IT').arrangement}" + ("-null" if args.null else "")
    if args.seed is not None:
        tag += f"-seed{args.seed}"
    out = Path(args.out or f"runs/suite-{args.suite}-{tag}")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "table.csv", index=False)
    if long is None:
        (out / "table.md").write_text(
            _markdown(table, ["benchmark", "verdict", "model_effect", "p", "in_vivo"])
        )
        passed = int((table["verdict"] == "pass").sum())
        print(
            f"{args.suite} suite on {tag}: {passed} of {len(table)} benchmarks pass on one "
            "draw of sites (Brain-Score's rule; no null sheet: use --draws for verdicts)"
        )
        for row in table.itertuples():
            print(f"  [{row.verdict:>4}] {row.benchmark}: {row.model_effect} (p = {row.p:.3g})")
    else:
        long.to_csv(out / "draws.csv", index=False)
        (out / "table.md").write_text(_markdown(table, list(table.columns)))
        counts = table["verdict"].value_counts()
        null_cols = [c for c in table.columns if c.startswith("null: ")]
        print(
            f"{args.suite} suite on {tag}: {counts.get('predicted', 0)} of {len(table)} "
            f"benchmarks predicted over {draws} draws of sites beyond the "
            f"{null_cols[0].split()[1]}-shuffled null; {counts.get('not beyond null', 0)} pass "
            "only as often as the null"
        )
        for _, row in table.iterrows():
            beside = ", ".join(f"{c.split()[1]}-shuffled null {row[c]}" for c in null_cols)
            print(
                f"  [{row['verdict']:>15}] {row['benchmark']}: model {row['model passes']}"
                + (f", {beside}" if beside else "")
            )
    print(f"table     {out / 'table.csv'}")


def cmd_run(args: argparse.Namespace) -> None:
    from insilico.experiments import Experiment, library, load, resolve

    if args.suite is not None:
        return cmd_suite(args)
    if args.arrangement is not None or args.null:
        raise CLIError("--arrangement and --null go with --suite")

    if args.list:
        for name, path in library().items():
            spec = load(path)
            text = " ".join(spec.description.split())
            # the headline: up to the first colon or full stop, else the first 80 characters
            cut = min((i for i in (text.find(": "), text.find(". ")) if i > 0), default=-1)
            head = text[:cut] if 0 < cut <= 120 else text[:80] + ("…" if len(text) > 80 else "")
            preds = len(spec.predictions)
            print(f"{name:<24} {head} ({preds} prediction{'s' * (preds != 1)})")
        return
    if not args.experiment:
        raise CLIError("give an experiment file or a shipped name (insilico run --list)")
    exp = Experiment.from_toml(resolve(args.experiment))
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
