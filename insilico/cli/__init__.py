"""The ``insilico`` command line: models, record, synthesize, export, run, view, demo.

Every command prints a one-screen summary; bad input exits with status 2 and one line
``insilico: error: ...`` naming the bad value.

``parser`` declares the commands and their flags; ``record``, ``synthesize``, ``run`` and
``view`` hold the commands; ``rig`` builds the model, rig and array the flags describe;
``values`` parses the text of flags.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

from insilico.cli.parser import build_parser
from insilico.cli.values import CLIError

__all__ = ["CLIError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # imported after parsing (torch, xarray): `insilico --help` must start fast
    from insilico.brain.zoo import NotBrainLikeWarning

    warnings.simplefilter("always", NotBrainLikeWarning)
    try:
        args.func(args)
    except (
        CLIError,
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        BlockingIOError,
    ) as err:
        from recordings.format import error_line

        message = error_line(err)
        print(f"insilico: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("insilico: interrupted; finished batches are saved, rerun to resume", file=sys.stderr)
        return 130
    return 0
