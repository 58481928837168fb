"""``insilico run``: an experiment file or a shipped experiment, with its report."""

from __future__ import annotations

import argparse

from insilico.cli.values import CLIError

# command functions import their dependencies lazily so that `insilico --help` starts fast


def cmd_run(args: argparse.Namespace) -> None:
    from insilico.experiments import Experiment, library, load, resolve

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
