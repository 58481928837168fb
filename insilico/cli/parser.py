"""The ``insilico`` argument parser: every command, its flags and their help texts.

``--n-sites N`` is always a count (implant an N-site array) and ``--sites 3,17,22`` always
site numbers of that array.
"""

from __future__ import annotations

import argparse

from insilico.cli.record import cmd_demo, cmd_models, cmd_record
from insilico.cli.run import cmd_run
from insilico.cli.synthesize import cmd_export, cmd_synthesize
from insilico.cli.values import STIMULUS_KINDS
from insilico.cli.view import cmd_view


def _model_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--weights`` and ``--device``: the brain model a command runs."""
    parser.add_argument(
        "--model", default="efficientnet_lite0", help="brain model (insilico models)"
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="local weights file (state dict) instead of the shipped ones",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="insilico",
        description="In-silico visual neuroscience: record from brain models in degrees.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list the brain models of the zoo")
    m.set_defaults(func=cmd_models)

    r = sub.add_parser(
        "record",
        help="record responses of a region or an implanted array to a stimulus set",
        description="Record firing rates (spikes/s) to a zarr store. Example: insilico record "
        "--model efficientnet_lite0 --region V1 --n-sites 64 --at-deg=1.5,-1 --stimuli gratings "
        "--set size_deg=3 --set position_deg=1.5,-1 --set orientation_deg=0:180:15 "
        "--out runs/v1.zarr",
    )
    _model_options(r)
    r.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "bfloat16"),
        help="forward-pass precision (bfloat16: torch.autocast, for a GPU; rates within ~1%%)",
    )
    r.add_argument("--region", required=True, help="V1, V2, V4 or IT")
    r.add_argument(
        "--n-sites",
        type=int,
        default=0,
        help="implant an array of this many sites (default: record every unit of the region)",
    )
    r.add_argument(
        "--sites", default=None, help="record only these site numbers of the array, e.g. 3,17,22"
    )
    r.add_argument("--at-deg", default=None, help="array centre X,Y in degrees (use --at-deg=-1,2)")
    r.add_argument("--at-mm", default=None, help="array centre X,Y on the cortical sheet in mm")
    r.add_argument("--stimuli", required=True, choices=STIMULUS_KINDS, help="stimulus generator")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="generator parameter; VALUE may be a list 1,2,4 or a range 0:180:15",
    )
    r.add_argument("--repeats", type=int, default=1, help="presentations of each stimulus")
    r.add_argument(
        "--noise",
        choices=("none", "poisson"),
        default="none",
        help="none: expected rates; poisson: spike counts per bin / bin duration",
    )
    r.add_argument("--seed", type=int, default=0, help="seed of the array jitter and the noise")
    r.add_argument("--batch-size", type=int, default=64, help="stimuli per forward pass")
    r.add_argument("--out", required=True, help="zarr store to write (resumes the same job)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing store")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_record)

    y = sub.add_parser(
        "synthesize",
        help="synthesize images that drive / silence / one-hot control recorded sites",
        description="Example: insilico synthesize --model efficientnet_lite0 --region V4 "
        "--sites 3,17,22 --objective drive --out runs/drive.zarr",
    )
    _model_options(y)
    y.add_argument("--region", required=True, help="V1, V2, V4 or IT")
    y.add_argument("--n-sites", type=int, default=96, help="number of sites of the implanted array")
    y.add_argument("--at-deg", default=None, help="array centre X,Y in degrees (default 0,0)")
    y.add_argument("--at-mm", default=None, help="array centre X,Y on the sheet in mm")
    y.add_argument("--sites", default="0", help="target site numbers of the array, e.g. 3,17,22")
    y.add_argument("--neuroids", default=None, help="target neuroid ids instead of sites")
    y.add_argument(
        "--objective",
        default="drive",
        choices=("drive", "silence", "one_hot"),
        help="drive or silence each target, or drive it while silencing the rest of the array",
    )
    y.add_argument("--n-per-target", type=int, default=1, help="images per target (seeds)")
    y.add_argument("--size-deg", type=float, default=6.0, help="image diameter in degrees")
    y.add_argument("--position-deg", default="0,0", help="image centre X,Y in degrees")
    y.add_argument("--steps", type=int, default=256, help="gradient steps")
    y.add_argument(
        "--rms-contrast", type=float, default=0.25, help="RMS-contrast budget of the images"
    )
    y.add_argument("--reference", type=int, default=1000, help="natural images to compare with")
    y.add_argument("--seed", type=int, default=0, help="seed of the array and the images")
    y.add_argument("--out", required=True, help="zarr store for images, trajectories, responses")
    y.add_argument("--export", default=None, help="also write PNGs + manifest to this folder")
    y.add_argument("--overwrite", action="store_true", help="replace an existing store")
    y.add_argument("--quiet", action="store_true", help="no progress bar")
    y.set_defaults(func=cmd_synthesize)

    x = sub.add_parser(
        "export",
        help="write a synthesis store's images as PNGs + manifest for a real display",
        description="Example: insilico export runs/drive.zarr --out session/ --display "
        "rig.toml. PNGs at the display's pixels per degree, named by image number and site "
        "(000_site03_drive_r0.png), gamma-corrected, with manifest.csv and manifest.json.",
    )
    x.add_argument("store", help="synthesis store written by insilico synthesize / rig.synthesize")
    x.add_argument("--out", required=True, help="folder for the PNGs and the manifest")
    x.add_argument(
        "--display",
        default=None,
        help="TOML file with the display (distance_cm, width_cm, resolution, gamma, "
        "background, bit_depth); default: the display the synthesis was measured on",
    )
    x.add_argument("--bit-depth", type=int, default=None, help="8, 10, 12 or 16 (default: display)")
    x.add_argument(
        "--no-gamma-correct", action="store_true", help="write linear values, no gamma correction"
    )
    x.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    x.set_defaults(func=cmd_export)

    e = sub.add_parser(
        "run",
        help="run an experiment file (or a shipped experiment) and write a report",
        description="Run EXPERIMENT (a .toml file or a shipped name, see --list): every "
        "measure under every condition, predictions evaluated, results.zarr + report.md.",
    )
    e.add_argument(
        "experiment", nargs="?", default=None, help="experiment .toml file or shipped name"
    )
    e.add_argument("--list", action="store_true", help="list the shipped experiments")
    e.add_argument(
        "--suite",
        default=None,
        help="run a benchmark suite instead of one experiment: 'perturbation' (the nine IT "
        "perturbation benchmarks, one table)",
    )
    e.add_argument(
        "--arrangement",
        default=None,
        help="with --suite: place IT's channels by similarity, swap, trained or random, or "
        "its units one by one (unit-swap)",
    )
    e.add_argument(
        "--null", action="store_true", help="with --suite: every dose zero (the suite's null)"
    )
    e.add_argument(
        "--draws",
        type=int,
        default=None,
        help="with --suite: draws of sites (default 10), each also run on the null sheets; "
        "1 with no --nulls gives Brain-Score's one-draw rule without a null",
    )
    e.add_argument(
        "--nulls",
        default=None,
        help="with --suite: null sheets, comma-separated: channels (default), units",
    )
    e.add_argument("--out", default=None, help="output folder (default runs/NAME)")
    e.add_argument("--model", default=None, help="run on another model (e.g. tiny)")
    e.add_argument("--device", default=None, help="cpu or cuda (default: the file's, else cpu)")
    e.add_argument("--seed", type=int, default=None, help="replace the experiment's seed")
    e.add_argument("--workers", type=int, default=None, help="local Dask workers for a sweep")
    e.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the output folder (a sweep otherwise resumes its sweep.zarr)",
    )
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_run)

    w = sub.add_parser("view", help="open a synthesis or recording store in napari (view extra)")
    w.add_argument(
        "path", nargs="?", default=None, help="zarr store (omit: empty viewer + Synthesize)"
    )
    w.add_argument("--synthesize", action="store_true", help="also open the Synthesize dock")
    w.set_defaults(func=cmd_view)

    d = sub.add_parser(
        "demo",
        help="V1 orientation tuning on the offline model: zarr + PNG + summary",
        description="Implant a V1 array (--n-sites, default 64) at an RF location, record "
        "orientation tuning to gratings with Poisson noise, save the recording and a plot of "
        "tuning curves.",
    )
    d.add_argument("--out", default="insilico_demo", help="output folder")
    d.add_argument("--model", default="efficientnet_lite0", help="brain model (insilico models)")
    d.add_argument("--at-deg", default="1.5,-1.0", help="RF location X,Y in degrees")
    d.add_argument("--n-sites", type=int, default=64, help="number of sites of the V1 array")
    d.add_argument("--repeats", type=int, default=5, help="presentations of each grating")
    d.add_argument("--overwrite", action="store_true", help="replace the demo's outputs")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_demo)
    return p
