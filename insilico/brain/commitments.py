"""Brain-model commitments, kept as data: one TOML file per model in ``commitments/``.

A commitment says how a network is to be read as a brain: how many degrees of visual angle
its input spans (``visual_degrees``, default 8 as in Brain-Score), its input size in pixels
and normalisation, which layer *is* each region (V1, V2, V4, IT), and how a layer's
activation becomes a firing rate in spikes/s and a position on a cortical sheet in mm.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

REGIONS = ("V1", "V2", "V4", "IT")
_DIR = "commitments"


@dataclass(frozen=True)
class RegionCommitment:
    """One region: its layer, rate mapping (spikes/s) and cortical-sheet geometry (mm)."""

    name: str
    layer: str
    retinotopic: bool = True
    magnification_mm: float = 12.2
    magnification_e2_deg: float = 0.94
    sheet_size_mm: float = 10.0
    baseline_hz: float = 5.0
    max_hz: float = 100.0

    def magnification(self, ecc_deg: float) -> float:
        """Linear cortical magnification M(E) = k / (E + a) in mm/deg on the horizontal
        meridian at eccentricity ``ecc_deg`` (deg) — the complex-log map's ``|dw/dz|``."""
        return self.magnification_mm / (ecc_deg + self.magnification_e2_deg)


@dataclass(frozen=True)
class Commitment:
    """Everything that makes a network a brain model, read from its TOML file."""

    name: str
    architecture: str
    weights: str
    regions: dict[str, RegionCommitment]
    description: str = ""
    visual_degrees: float = 8.0
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    classifier: str | None = None
    num_classes: int = 1000
    source: str = field(default="", compare=False)

    def region(self, name: str) -> RegionCommitment:
        if name not in self.regions:
            raise ValueError(
                f"model {self.name!r} has no region {name!r}; its regions are "
                f"{', '.join(self.regions)}"
            )
        return self.regions[name]

    @property
    def ppd(self) -> float:
        """Model input pixels per degree of visual angle."""
        return self.input_size / self.visual_degrees

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "weights": self.weights,
            "visual_degrees": self.visual_degrees,
            "input_size": self.input_size,
            "regions": {k: v.layer for k, v in self.regions.items()},
        }


def _read(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"commitment file {where}: {err}") from None


def _region_defaults() -> dict[str, Any]:
    return _read(
        (resources.files(__package__) / _DIR / "_regions.toml").read_text(), "_regions.toml"
    )


def available() -> list[str]:
    """Names of the models with a shipped commitment file."""
    folder = resources.files(__package__) / _DIR
    return sorted(
        p.name.removesuffix(".toml")
        for p in folder.iterdir()
        if p.name.endswith(".toml") and not p.name.startswith("_")
    )


def parse(data: dict[str, Any], where: str) -> Commitment:
    """Validate a commitment table (from TOML) and fill region defaults."""
    known = {f for f in Commitment.__dataclass_fields__ if f not in ("regions", "source")}
    unknown = set(data) - known - {"regions"}
    if unknown:
        raise ValueError(f"commitment {where}: unknown key(s) {sorted(unknown)}")
    for key in ("name", "architecture", "weights", "regions"):
        if key not in data:
            raise ValueError(f"commitment {where}: missing key {key!r}")
    defaults = _region_defaults()
    regions = {}
    region_fields = set(RegionCommitment.__dataclass_fields__) - {"name"}
    for name, spec in data["regions"].items():
        merged = {**defaults.get(name, {}), **spec}
        bad = set(merged) - region_fields
        if bad:
            raise ValueError(f"commitment {where}: region {name}: unknown key(s) {sorted(bad)}")
        if "layer" not in merged:
            raise ValueError(f"commitment {where}: region {name} has no 'layer'")
        regions[name] = RegionCommitment(name=name, **merged)
    fields = {k: v for k, v in data.items() if k != "regions"}
    for key in ("mean", "std"):
        if key in fields:
            fields[key] = tuple(float(v) for v in fields[key])
    c = Commitment(regions=regions, source=where, **fields)
    if c.visual_degrees <= 0 or c.input_size <= 0:
        raise ValueError(f"commitment {where}: visual_degrees and input_size must be positive")
    return c


def load(name_or_path: str | Path) -> Commitment:
    """A shipped commitment by model name, or a commitment TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return parse(_read(path.read_text(), str(path)), str(path))
    name = str(name_or_path)
    if name not in available():
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(available())}")
    text = (resources.files(__package__) / _DIR / f"{name}.toml").read_text()
    return parse(_read(text, f"{name}.toml"), f"{name}.toml")
