"""The result of a synthesis: images, responses, comparison with natural images, storage,
and export for a real display."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from recordings.format import as_string_array, json_attrs
from recordings.store import check_target
from stimuli.display import Display, check_bit_depth
from stimuli.synthesis.display_io import from_display, to_display, write_png

KIND = "insilico-synthesis"


@dataclass
class SynthesisResult:
    """Synthesized images and what they do.

    ``images``: (B, 3, H, W) linear luminance as optimised (they meet the display
    constraints). ``table``: one row per image (``stimulus_id``, ``target``, ``replicate``,
    ``objective``, ``size_deg``, position, ``response`` = the target's rate re-measured on the
    image as the display shows it, ``score`` for one_hot). ``targets``: one row per target
    with the best synthesized image, the best (or, for silence, lowest) natural image of the
    reference set held to the same display budget (equated; see ``stimuli.equate``), their
    ratio and whether the synthesis beats natural images, and the same against the plain
    full-gamut crops (``*_unconstrained``); ``transfer_NAME_*`` the same on another rig.
    ``trajectory`` (steps, B) objective values; ``snapshots`` (n, B, 3, H, W) deviations from
    the background every few steps (``snapshot_steps``).
    """

    images: torch.Tensor
    table: pd.DataFrame
    targets: pd.DataFrame
    trajectory: np.ndarray
    snapshots: np.ndarray
    snapshot_steps: list[int]
    background: float
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        a = self.attrs
        return (
            f"SynthesisResult({len(self)} images, {len(self.targets)} targets, "
            f"objective={a.get('objective')!r}, model={a.get('model')!r})"
        )

    # reporting --------------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """Per target: synthesized vs best natural response, ratio, beats-natural flag."""
        return self.targets.copy()

    def print_summary(self) -> str:
        t = self.targets
        head = (
            f"{self.attrs.get('objective')} on {len(t)} targets of {self.attrs.get('model')}: "
            f"beats natural for {t['beats_natural'].mean() * 100:.0f}% "
            f"(median ratio {t['ratio'].median():.2f})"
        )
        if self.attrs.get("reference_equated"):
            head += " against equated natural crops"
        if "beats_natural_unconstrained" in t:
            head += (
                f"; unconstrained crops: {t['beats_natural_unconstrained'].mean() * 100:.0f}% "
                f"(median ratio {t['ratio_unconstrained'].median():.2f})"
            )
        lines = [head, t.to_string(index=False, float_format=lambda v: f"{v:.3g}")]
        return "\n".join(lines)

    # storage ----------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        coords = {}
        for name in self.table.columns:
            col = self.table[name].to_numpy()
            coords[name] = ("image", as_string_array(col) if col.dtype == object else col)
        ds = xr.Dataset(
            {
                "images": (("image", "channel", "y", "x"), self.images.numpy().astype(np.float32)),
                "trajectory": (("step", "image"), self.trajectory.astype(np.float32)),
                "snapshots": (
                    ("snapshot", "image", "channel", "y", "x"),
                    self.snapshots.astype(np.float16),
                ),
            },
            coords={**coords, "snapshot_step": ("snapshot", np.asarray(self.snapshot_steps))},
        )
        for name in self.targets.columns:
            col = self.targets[name].to_numpy()
            ds[f"target__{name}"] = ("target", as_string_array(col) if col.dtype == object else col)
        ds.attrs = json_attrs(
            {
                **self.attrs,
                "kind": KIND,
                "background": self.background,
                "table_columns": list(self.table.columns),
                "target_columns": list(self.targets.columns),
            }
        )
        return ds

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write images, trajectories, snapshots, responses and provenance to a zarr store."""
        path = Path(path)
        check_target(path, overwrite)  # overwrite only ever replaces a store this library wrote
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_dataset().to_zarr(path, mode="w-", consolidated=False)
        return path

    @classmethod
    def open(cls, path: str | os.PathLike) -> SynthesisResult:
        """Read a store written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no synthesis result at {str(path)!r}")
        try:
            ds = xr.open_dataset(path, engine="zarr", consolidated=False, chunks=None).load()
        except Exception as err:
            raise ValueError(f"cannot open {str(path)!r} as a zarr store: {err}") from None
        if ds.attrs.get("kind") != KIND:
            raise ValueError(f"{str(path)!r} is not a synthesis result written by insilico-lab")
        table = pd.DataFrame(
            {name: _plain(ds[name].values) for name in ds.coords if ds[name].dims == ("image",)}
        )
        targets = pd.DataFrame(
            {
                name.removeprefix("target__"): _plain(ds[name].values)
                for name in ds.data_vars
                if name.startswith("target__")
            }
        )
        attrs = {k: _unjson(v) for k, v in ds.attrs.items()}
        table = table[attrs.pop("table_columns")]
        targets = targets[attrs.pop("target_columns")]
        attrs.pop("kind")
        attrs.pop("background")
        return cls(
            images=torch.from_numpy(ds["images"].values),
            table=table,
            targets=targets,
            trajectory=ds["trajectory"].values,
            snapshots=ds["snapshots"].values,
            snapshot_steps=[int(s) for s in ds["snapshot_step"].values],
            background=float(ds.attrs["background"]),
            attrs=attrs,
        )

    # export -----------------------------------------------------------------------------
    def display_values(
        self, display: Display, gamma_correct: bool = True, bit_depth: int | None = None
    ) -> np.ndarray:
        """Integer pixel values (B, h, w, 3) at the display's pixels per degree."""
        size = float(self.table["size_deg"].iloc[0])
        x = float(self.table["position_x_deg"].iloc[0])
        return to_display(self.images, display, size, x, gamma_correct, bit_depth)

    def displayed_luminance(self, display: Display, gamma_correct: bool = True) -> np.ndarray:
        """What the monitor shows (linear luminance, monitor pixels): quantised and resampled."""
        values = self.display_values(display, gamma_correct)
        return from_display(values, display, gamma_correct, display.bit_depth)

    def export(
        self,
        folder: str | os.PathLike,
        display: Display,
        gamma_correct: bool = True,
        bit_depth: int | None = None,
        overwrite: bool = False,
    ) -> pd.DataFrame:
        """One PNG per image at the monitor's pixels per degree (8, 10, 12 or 16 bits; default
        the display's; 10/12-bit codes in a 16-bit PNG with an sBIT chunk), background
        grey outside the aperture, gamma-corrected for the display if asked, plus
        ``manifest.csv`` and ``manifest.json`` (the display and the stimuli as JSON objects).
        Files are named by image number, requested site (or target) and replicate, e.g.
        ``000_site03_drive_r0.png``. Returns the manifest."""
        folder = Path(folder)
        bit_depth = display.bit_depth if bit_depth is None else check_bit_depth(bit_depth)
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            raise FileExistsError(
                f"export folder {str(folder)!r} is not empty; pass overwrite=True to replace files"
            )
        folder.mkdir(parents=True, exist_ok=True)
        values = self.display_values(display, gamma_correct, bit_depth)
        measured_on = self.attrs.get("display")
        rows = []
        has_site = "site" in self.table.columns
        for k, row in enumerate(self.table.itertuples(index=False)):
            who = f"site{int(row.site):02d}" if has_site else _slug(str(row.target))
            replicate = int(getattr(row, "replicate", 0))
            name = f"{k:03d}_{who}_{row.objective}_r{replicate}.png"
            write_png(folder / name, values[k], bit_depth)
            u, v = display.deg_to_px(row.position_x_deg, row.position_y_deg)
            rows.append(
                {
                    "stimulus_id": row.stimulus_id,
                    "file": name,
                    **({"site": int(row.site)} if has_site else {}),
                    "size_deg": row.size_deg,
                    "position_x_deg": row.position_x_deg,
                    "position_y_deg": row.position_y_deg,
                    "size_px": values.shape[2],
                    "center_x_px": float(u),
                    "center_y_px": float(v),
                    "target": row.target,
                    "replicate": replicate,
                    "objective": row.objective,
                    "predicted_response_hz": row.response,
                    "seed": self.attrs.get("seed"),
                    "model": self.attrs.get("model"),
                    "weights_id": self.attrs.get("weights_id"),
                    "insilico_version": self.attrs.get("insilico_version"),
                    "gamma_corrected": gamma_correct,
                    "bit_depth": bit_depth,
                    "background": self.background,
                }
            )
        manifest = pd.DataFrame(rows)
        manifest.to_csv(folder / "manifest.csv", index=False)
        meta = {
            "display": display.to_dict(),
            "predictions_measured_on_display": _unjson(measured_on),
            "objective": self.attrs.get("objective"),
            "stimuli": rows,
        }
        (folder / "manifest.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        return manifest


def read_manifest(folder: str | os.PathLike) -> pd.DataFrame:
    """The manifest an export wrote (from manifest.csv)."""
    return pd.read_csv(Path(folder) / "manifest.csv")


def _slug(text: str) -> str:
    """A file-name-safe form of a target name (no path separators, no dots in front)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:60] or "target"


def _plain(values: np.ndarray) -> np.ndarray:
    return (
        values.astype(object)
        if values.dtype.kind in "OUT" or "StringDType" in str(values.dtype)
        else values
    )


def _unjson(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
