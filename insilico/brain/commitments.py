"""Brain-model commitments, kept as data: one TOML file per model in ``commitments/``.

A commitment says how a network is to be read as a brain: how many degrees of visual angle
its input spans (``visual_degrees``, default 8 as in Brain-Score), its input size in pixels
and normalisation, which layer *is* each region (V1, V2, V4, IT), and how a layer's
activation becomes a firing rate in spikes/s and a position on a cortical sheet in mm.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

REGIONS = ("V1", "V2", "V4", "IT")
#: how a region's channels may be placed on its sheet (``insilico.brain.layout.arrange``)
ARRANGEMENTS = ("similarity", "swap", "trained", "random", "unit-swap")
_DIR = "commitments"
UNIT_ONLY = (
    "arrangement 'unit-swap' places the units of a non-retinotopic sheet (IT) one by one; "
    "this region is retinotopic"
)


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
    arrangement: str = "similarity"

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
            "arrangements": {k: v.arrangement for k, v in self.regions.items()},
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


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _number(value: Any, what: str, where: str, low: float = 0.0, strict: bool = True) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= low if strict else value < low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ValueError(
            f"commitment {where}: {what} must be a finite number {bound}, got {value!r}"
        )
    return float(value)


def _check_region(spec: dict[str, Any], name: str, where: str) -> None:
    """Types and ranges of one region's constants (mm, deg, spikes/s)."""
    at = f"region {name}"
    if not isinstance(spec["layer"], str) or not spec["layer"]:
        raise ValueError(
            f"commitment {where}: {at}: layer must be a module name, got {spec['layer']!r}"
        )
    if not isinstance(spec.get("retinotopic", True), bool):
        raise ValueError(
            f"commitment {where}: {at}: retinotopic must be true or false, "
            f"got {spec['retinotopic']!r}"
        )
    if spec.get("arrangement", "similarity") not in ARRANGEMENTS:
        raise ValueError(
            f"commitment {where}: {at}: arrangement must be one of {', '.join(ARRANGEMENTS)}, "
            f"got {spec['arrangement']!r}"
        )
    if spec.get("arrangement") == "unit-swap" and spec.get("retinotopic", True):
        raise ValueError(f"commitment {where}: {at}: {UNIT_ONLY}")
    for key in ("magnification_mm", "magnification_e2_deg", "sheet_size_mm", "max_hz"):
        if key in spec:
            _number(spec[key], f"{at}: {key}", where)
    if "baseline_hz" in spec:
        _number(spec["baseline_hz"], f"{at}: baseline_hz", where, strict=False)
    if spec.get("max_hz", 100.0) <= spec.get("baseline_hz", 5.0):
        raise ValueError(
            f"commitment {where}: {at}: max_hz ({spec.get('max_hz')!r}) must exceed "
            f"baseline_hz ({spec.get('baseline_hz')!r}) spikes/s"
        )


def _check_top(data: dict[str, Any], where: str) -> None:
    """Types of the top-level keys; the name becomes a cache file name, so no paths."""
    for key in ("name", "architecture", "weights"):
        if not isinstance(data[key], str) or not data[key]:
            raise ValueError(
                f"commitment {where}: {key} must be a non-empty string, got {data[key]!r}"
            )
    if not _SAFE_NAME.match(data["name"]) or ".." in data["name"]:
        raise ValueError(
            f"commitment {where}: name {data['name']!r} must be letters, digits, '.', '_', '+' "
            "or '-' (it names cache files; no path separators or '..')"
        )
    if not isinstance(data["regions"], dict) or not data["regions"]:
        raise ValueError(f"commitment {where}: regions must be a table of region tables")
    if "visual_degrees" in data:
        _number(data["visual_degrees"], "visual_degrees (deg)", where)
    for key in ("input_size", "num_classes"):
        value = data.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"commitment {where}: {key} must be a positive integer, got {value!r}")
    for key in ("mean", "std"):
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, list) or len(value) != 3:
            raise ValueError(
                f"commitment {where}: {key} must be 3 numbers (R, G, B), got {value!r}"
            )
        for v in value:
            _number(v, key, where, strict=key == "std", low=0.0 if key == "std" else -math.inf)
    if data.get("classifier") is not None and not isinstance(data["classifier"], str):
        raise ValueError(
            f"commitment {where}: classifier must be a module name, got {data['classifier']!r}"
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
    _check_top(data, where)
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
        if name not in REGIONS:
            raise ValueError(
                f"commitment {where}: unknown region {name!r}; expected {', '.join(REGIONS)}"
            )
        _check_region(merged, name, where)
        regions[name] = RegionCommitment(name=name, **merged)
    fields = {k: v for k, v in data.items() if k != "regions"}
    for key in ("mean", "std"):
        if key in fields:
            fields[key] = tuple(float(v) for v in fields[key])
    c = Commitment(regions=regions, source=where, **fields)
    if c.visual_degrees <= 0 or c.input_size <= 0:
        raise ValueError(f"commitment {where}: visual_degrees and input_size must be positive")
    return c


def with_arrangement(c: Commitment, arrangement: str | dict[str, str]) -> Commitment:
    """``c`` with its regions' channel arrangement replaced: one name for every region or
    ``{region: name}`` (see ``insilico.brain.layout.arrange``)."""
    wanted = arrangement if isinstance(arrangement, dict) else dict.fromkeys(c.regions, arrangement)
    regions = dict(c.regions)
    for region, name in wanted.items():
        rc = c.region(region)
        if name not in ARRANGEMENTS:
            raise ValueError(
                f"arrangement for {region} must be one of {', '.join(ARRANGEMENTS)}, got {name!r}"
            )
        if name == "unit-swap" and rc.retinotopic:
            raise ValueError(f"{region}: {UNIT_ONLY}")
        regions[region] = replace(rc, arrangement=name)
    return replace(c, regions=regions)


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
