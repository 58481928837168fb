"""Scripted virtual experiments: TOML experiment files with falsifiable predictions, a
library of classic experiments, Markdown reports with figures, and sweeps on Dask."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from insilico.experiments.experiment import Experiment
from insilico.experiments.results import Results
from insilico.experiments.spec import Spec, load, parse
from insilico.experiments.validation import ExperimentError
from insilico.experiments.verdicts import evaluate

LIBRARY = "library"


def library() -> dict[str, Path]:
    """The shipped experiments: name -> file."""
    folder = resources.files(__package__) / LIBRARY
    return {
        p.name.removesuffix(".toml"): Path(str(p))
        for p in sorted(folder.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".toml")
    }


def resolve(name_or_path: str) -> Path:
    """A shipped experiment by name, or an experiment file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return path
    shipped = library()
    if name_or_path in shipped:
        return shipped[name_or_path]
    if path.suffix == ".toml":
        raise FileNotFoundError(f"no experiment file at {name_or_path!r}")
    raise ValueError(f"unknown experiment {name_or_path!r}; shipped: {', '.join(shipped)}")


__all__ = [
    "Experiment",
    "ExperimentError",
    "Results",
    "Spec",
    "evaluate",
    "library",
    "load",
    "parse",
    "resolve",
]
