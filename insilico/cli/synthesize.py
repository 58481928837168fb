"""``insilico synthesize`` and ``insilico export``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from insilico.cli.rig import implant, open_rig
from insilico.cli.values import parse_pair, site_numbers

# command functions import their dependencies lazily so that `insilico --help` starts fast


def cmd_synthesize(args: argparse.Namespace) -> None:
    import stimuli

    t0 = time.perf_counter()
    _, rig = open_rig(args)
    position = parse_pair(args.position_deg, "--position-deg")
    if args.neuroids:
        targets = [t.strip() for t in args.neuroids.split(",") if t.strip()]
    else:
        targets = implant(rig, args).sites[site_numbers(args.sites)]
    size = args.size_deg
    reference = stimuli.natural(args.reference, size_deg=size, seed=args.seed + 1)
    res = rig.synthesize(
        targets,
        objective=args.objective,
        n_per_target=args.n_per_target,
        size_deg=size,
        position_deg=position,
        steps=args.steps,
        seed=args.seed,
        reference=reference,
        rms_contrast=args.rms_contrast,
        progress=not args.quiet,
    )
    res.save(args.out, overwrite=args.overwrite)
    print(res.print_summary())
    if args.export:
        res.export(args.export, display=rig.display, overwrite=args.overwrite)
        print(f"exported  {len(res)} PNGs + manifest to {args.export}")
    print(f"saved     {args.out}")
    print(f"time      {time.perf_counter() - t0:.1f} s")


def cmd_export(args: argparse.Namespace) -> None:
    """A synthesis store -> one PNG per image + manifest.csv/json for a real display."""
    from stimuli import Display
    from stimuli.synthesis import open_result

    res = open_result(args.store)
    if args.display:
        display = _display_from_toml(args.display)
    elif isinstance(res.attrs.get("display"), dict):
        display = Display(**res.attrs["display"])  # the display the synthesis measured on
    else:
        display = Display()
    manifest = res.export(
        args.out,
        display=display,
        gamma_correct=not args.no_gamma_correct,
        bit_depth=args.bit_depth,
        overwrite=args.overwrite,
    )
    bits = int(manifest["bit_depth"].iloc[0])
    print(
        f"exported  {len(manifest)} PNGs ({bits}-bit, {int(manifest['size_px'].iloc[0])} px, "
        f"gamma {'corrected' if not args.no_gamma_correct else 'not corrected'}) + manifest "
        f"to {args.out}"
    )
    for row in manifest.head(5).itertuples(index=False):
        print(f"  {row.file}")
    if len(manifest) > 5:
        print(f"  ... {len(manifest) - 5} more")


def _display_from_toml(path: str) -> Any:
    """A Display from a TOML file: keys at the top level or under a [display] table."""
    import tomllib
    from pathlib import Path

    from stimuli import Display

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--display {path!r}: no such file")
    try:
        data = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"--display {path!r} is not valid TOML: {err}") from None
    data = data.get("display", data)
    try:
        return Display(**data)
    except TypeError:
        known = set(Display.__dataclass_fields__)
        bad = sorted(set(data) - known)
        raise ValueError(
            f"--display {path!r}: unknown keys {bad}; expected some of {sorted(known)}"
        ) from None
