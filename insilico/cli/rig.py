"""The rig that a command's flags describe: the brain model (``--model``, ``--weights``,
``--device``) in front of a rig, and the array that ``--region``, ``--n-sites``,
``--at-deg`` / ``--at-mm`` and ``--seed`` implant."""

from __future__ import annotations

import argparse
from typing import Any

from insilico.cli.values import parse_pair

# these helpers import the brain and the rig lazily, as the commands do: `insilico --help`
# must start fast


def open_rig(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(model, rig)`` for ``--model``, ``--weights`` and ``--device``."""
    from insilico.brain import load_model
    from rigs import Rig

    model = load_model(args.model, weights=args.weights, device=args.device)
    return model, Rig(model)


def implant(rig: Any, args: argparse.Namespace) -> Any:
    """The ``--n-sites`` array in ``--region`` centred at ``--at-deg`` or ``--at-mm`` (not
    both; default 0,0 deg), its jitter seeded by ``--seed``."""
    at_deg = parse_pair(args.at_deg, "--at-deg") if args.at_deg else None
    at_mm = parse_pair(args.at_mm, "--at-mm") if args.at_mm else None
    if at_deg is None and at_mm is None:
        at_deg = (0.0, 0.0)
    return rig.implant(args.region, args.n_sites, at_deg=at_deg, at_mm=at_mm, seed=args.seed)
