"""The virtual rig: present stimuli in degrees to a brain model, implant arrays, record."""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import xarray as xr
from tqdm.auto import tqdm

import recordings
from insilico import __version__
from insilico.brain import BrainModel
from insilico.brain.model import check_precision
from perturb.base import Perturbation
from recordings.format import NEUROID_COORDS, as_string_array
from rigs.arrays import UTAH_PITCH_MM, SiteArray, implant
from rigs.behavior import Decoder, fit_decoder, imagenet_categories
from rigs.mapping import MappedSites, map_neurons
from rigs.synthesis import synthesize
from stimuli import Display, StimulusSet
from stimuli.stimulus_set import check_position_deg, check_seed
from stimuli.synthesis.result import SynthesisResult

NOISE_MODELS = (None, "poisson")


@dataclass(frozen=True)
class _Target:
    region: str
    layer: str
    units: np.ndarray
    sites: np.ndarray  # site number per unit, -1 when not recorded through an array
    whole: bool = False  # all units of the region, in table order
    mapped: MappedSites | None = None  # linear readouts of the layer instead of units


def _as_stimulus_set(stimuli: Any) -> StimulusSet:
    """A StimulusSet, or a synthesis result's images as one (same ids, size, position)."""
    if isinstance(stimuli, StimulusSet):
        return stimuli
    from stimuli.synthesis.result import SynthesisResult

    if isinstance(stimuli, SynthesisResult):
        from stimuli import from_arrays

        t = stimuli.table
        images = stimuli.images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        keep = [c for c in ("target", "replicate", "objective") if c in t.columns]
        return from_arrays(
            images,
            size_deg=float(t["size_deg"].iloc[0]),
            position_deg=(float(t["position_x_deg"].iloc[0]), float(t["position_y_deg"].iloc[0])),
            ids=t["stimulus_id"].astype(str).tolist(),
            encoding="linear",
            metadata=t[keep].reset_index(drop=True),
        )
    raise TypeError(
        f"stimuli must be a StimulusSet or a SynthesisResult, got {type(stimuli).__name__}"
    )


class OffScreenWarning(UserWarning):
    """Part of a stimulus or of the model's field of view lies off the physical display."""


class Rig:
    """A brain model in front of a display, fixating ``fixation_deg`` (from screen centre).

    Stimulus positions are in degrees relative to fixation, x right, y up. The model sees a
    square window ``visual_degrees`` wide centred on fixation.
    """

    def __init__(
        self,
        model: BrainModel,
        display: Display | None = None,
        fixation_deg: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        if not isinstance(model, BrainModel):
            raise TypeError(
                f"model must be a BrainModel (lab.load_model(...)), got {type(model).__name__}"
            )
        self.model = model
        self.display = display if display is not None else Display()
        if not isinstance(self.display, Display):
            raise TypeError(f"display must be a Display, got {type(self.display).__name__}")
        self.fixation_deg = check_position_deg(fixation_deg, "fixation_deg")
        #: live perturbations: (perturbation, hook handle, applied persistently?) in order
        self._live: list[tuple[Perturbation, Any, bool]] = []
        n = model.input_size
        ppd = n / model.visual_degrees
        coords = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) / ppd
        sx = coords[None, :] + self.fixation_deg[0]
        sy = -coords[:, None] + self.fixation_deg[1]
        hx, hy = self.display.extent_deg
        #: model-input pixels that fall on the screen (outside it the room is dark)
        on_screen = ((sx.abs() <= hx) & (sy.abs() <= hy)).float()[None, None]
        self._on_screen = None if bool(on_screen.all()) else on_screen
        if self._on_screen is not None:
            warnings.warn(
                f"{100 * (1 - float(on_screen.mean())):.0f} % of the model's field of view falls "
                f"off the display (±{hx:.2f} x ±{hy:.2f} deg) at fixation {self.fixation_deg} "
                "deg: the model sees darkness there",
                OffScreenWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        d = self.display
        return (
            f"Rig({self.model.name!r}, display {d.resolution[0]}x{d.resolution[1]} px at "
            f"{d.distance_cm:g} cm, fixation {self.fixation_deg} deg)"
        )

    # geometry ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-safe rig geometry for provenance."""
        return {
            "display": self.display.to_dict(),
            "fixation_deg": list(self.fixation_deg),
            "visual_degrees": self.model.visual_degrees,
            "input_size": self.model.input_size,
        }

    def screen_px_to_deg(self, u: float, v: float) -> tuple[float, float]:
        """Monitor pixel (column u, row v) -> degrees relative to fixation (atan geometry)."""
        x, y = self.display.px_to_deg(u, v)
        return float(x) - self.fixation_deg[0], float(y) - self.fixation_deg[1]

    def check_visible(self, stimuli: StimulusSet) -> None:
        """Raise if a stimulus lies entirely outside the model's field of view; warn if part
        of one lies off the physical display (that part is not shown)."""
        half = self.model.visual_degrees / 2
        h, w = stimuli.shape_px
        width = stimuli.size_deg
        height = width * h / w
        pos = stimuli.position_deg
        hx, hy = self.display.extent_deg
        sx = np.abs(pos[:, 0] + self.fixation_deg[0]) + width / 2
        sy = np.abs(pos[:, 1] + self.fixation_deg[1]) + height / 2
        cut = (sx > hx + 1e-9) | (sy > hy + 1e-9)
        if cut.any():
            k = int(np.argmax(cut))
            warnings.warn(
                f"{int(cut.sum())} of {len(cut)} stimuli extend past the display "
                f"(±{hx:.2f} x ±{hy:.2f} deg), e.g. {stimuli.ids[k]!r} at "
                f"({pos[k, 0]:g}, {pos[k, 1]:g}) deg, {width[k]:g} deg wide: the part off the "
                "screen is not shown",
                OffScreenWarning,
                stacklevel=3,
            )
        off = (np.abs(pos[:, 0]) - width / 2 >= half) | (np.abs(pos[:, 1]) - height / 2 >= half)
        if off.any():
            k = int(np.argmax(off))
            raise ValueError(
                f"stimulus {stimuli.ids[k]!r} at ({pos[k, 0]:g}, {pos[k, 1]:g}) deg, "
                f"{width[k]:g} deg wide, lies entirely outside the model's field of view "
                f"(±{half:g} deg around fixation)"
            )

    # presentation -----------------------------------------------------------------------
    def present(
        self, stimuli: StimulusSet, index: Sequence[int] | slice | None = None
    ) -> torch.Tensor:
        """Render stimuli as the model sees them: ``(n, 3, N, N)`` pixel values in [0, 1].

        Each stimulus is composited at its position and size onto the display background
        over the model's field of view (cropped where larger, padded where smaller), with
        antialiased resampling in linear luminance, then gamma-encoded for the display.
        """
        if not isinstance(stimuli, StimulusSet):
            raise TypeError(f"stimuli must be a StimulusSet, got {type(stimuli).__name__}")
        rows = stimuli.meta if index is None else stimuli.meta.iloc[index]
        rendered = stimuli.render(index)
        n_px = self.model.input_size
        gamma = self.display.gamma
        sizes = rows["size_deg"].to_numpy(dtype=float)
        pos = rows[["position_x_deg", "position_y_deg"]].to_numpy(dtype=float)
        groups = np.unique(sizes)
        if (
            len(groups) == 1
            and rendered.alpha is None
            and self._on_screen is None
            and self._pixel_offset(pos, float(groups[0]), *stimuli.shape_px) == (0, 0)
            and stimuli.shape_px == (n_px, n_px)
        ):  # the stimuli exactly fill the field of view: presenting is re-encoding
            values = rendered.values.float()
            if rendered.gamma == gamma:
                return values if rendered.in_range else values.clamp(0.0, 1.0)
            # a buffer of our own for the in-place powers (never the renderer's tensor)
            values = values.clone() if rendered.in_range else values.clamp(0.0, 1.0)
            return (values if rendered.gamma is None else values.pow_(rendered.gamma)).pow_(
                1 / gamma
            )
        bg = float(self.display.background)
        rgb = rendered.linear()
        premult = rgb - bg if rendered.alpha is None else rendered.alpha * (rgb - bg)
        if len(groups) == 1:
            out = self._place(premult, pos, float(groups[0]))
        else:
            out = torch.empty(len(rows), 3, n_px, n_px)
            for size in groups:
                sel = np.flatnonzero(sizes == size)
                out[torch.as_tensor(sel)] = self._place(premult[sel], pos[sel], float(size))
        luminance = (out + bg).clamp_(0.0, 1.0)
        if self._on_screen is not None:
            luminance *= self._on_screen
        return luminance.pow_(1.0 / gamma)

    def _pixel_offset(
        self, pos: np.ndarray, width: float, h: int, w: int
    ) -> tuple[int, int] | None:
        """(column, row) of the images' top-left corner on the model's pixel grid when they
        share the model's pixels per degree and sit at one integral offset; else None."""
        n_px = self.model.input_size
        ppd = n_px / self.model.visual_degrees
        left = (n_px - w) / 2 + pos[:, 0] * ppd
        top = (n_px - h) / 2 - pos[:, 1] * ppd
        x0, y0 = round(float(left[0])), round(float(top[0]))
        aligned = (
            abs(ppd / (w / width) - 1) < 1e-9
            and np.allclose(left, x0, atol=1e-6)
            and np.allclose(top, y0, atol=1e-6)
        )
        return (x0, y0) if aligned else None

    def _place(self, src: torch.Tensor, pos: np.ndarray, width: float) -> torch.Tensor:
        """Resample images ``width`` deg wide centred at ``pos`` onto the model's pixel grid."""
        n_px, vd = self.model.input_size, self.model.visual_degrees
        ppd = n_px / vd
        _, _, h, w = src.shape
        factor = ppd / (w / width)  # model ppd / stimulus ppd
        offset = self._pixel_offset(pos, width, h, w)
        if offset is not None:  # same pixel grid: placing is copying (exact, no resampling)
            out = src.new_zeros(len(src), 3, n_px, n_px)
            x0, y0 = offset
            dx0, dy0 = max(0, x0), max(0, y0)
            dx1, dy1 = min(n_px, x0 + w), min(n_px, y0 + h)
            if dx1 > dx0 and dy1 > dy0:
                out[:, :, dy0:dy1, dx0:dx1] = src[:, :, dy0 - y0 : dy1 - y0, dx0 - x0 : dx1 - x0]
            return out
        if factor < 1.0:  # antialias: low-pass to the model's sampling density first
            target = (max(2, math.ceil(h * factor)), max(2, math.ceil(w * factor)))
            src = F.interpolate(
                src, size=target, mode="bilinear", antialias=True, align_corners=False
            )
        height = width * h / w
        theta = torch.zeros(len(src), 2, 3)
        theta[:, 0, 0] = vd / width
        theta[:, 1, 1] = vd / height
        theta[:, 0, 2] = torch.as_tensor(-2 * pos[:, 0] / width)
        theta[:, 1, 2] = torch.as_tensor(2 * pos[:, 1] / height)
        grid = F.affine_grid(theta, [len(src), 3, n_px, n_px], align_corners=False)
        return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # perturbations ----------------------------------------------------------------------
    @property
    def perturbations(self) -> list[Perturbation]:
        """The perturbations whose hooks are live now, in the order applied (provenance is
        read from here, so it always equals the live hooks)."""
        return [p for p, _, _ in self._live]

    def _attach(self, perturbations: Sequence[Any], persistent: bool) -> list:
        for p in perturbations:
            if not isinstance(p, Perturbation):
                raise TypeError(
                    f"expected perturbations (lab.perturb.Muscimol(...), ...), got {p!r}"
                )
        entries = []
        try:
            for p in perturbations:
                entry = (p, p.attach(self.model, present=self.present), persistent)
                entries.append(entry)
                self._live.append(entry)
        except BaseException:
            self._detach(entries)
            raise
        return entries

    def _detach(self, entries: Sequence[tuple[Perturbation, Any, bool]]) -> None:
        for entry in reversed(entries):
            if any(entry is e for e in self._live):
                entry[1].remove()
                self._live = [e for e in self._live if e is not entry]

    @contextmanager
    def perturb(self, *perturbations: Perturbation) -> Iterator[Rig]:
        """Apply ``perturbations`` inside a ``with`` block; they are removed on exit, also
        after an exception. Recordings made inside carry them in their provenance; an
        ``apply`` inside the block outlives it, a ``clear`` inside it leaves the block's own."""
        entries = self._attach(perturbations, persistent=False)
        try:
            yield self
        finally:
            self._detach(entries)

    def apply(self, *perturbations: Perturbation) -> None:
        """Apply ``perturbations`` until ``clear()`` (persistent, e.g. a lesioned animal)."""
        self._attach(perturbations, persistent=True)

    def clear(self) -> None:
        """Remove every perturbation applied with ``apply`` (those of an enclosing
        ``with rig.perturb(...)`` block stay until the block ends)."""
        self._detach([e for e in self._live if e[2]])

    # behaviour --------------------------------------------------------------------------
    def region_rates(
        self, stimuli: StimulusSet, region: str, batch_size: int = 64, progress: bool = False
    ) -> torch.Tensor:
        """Expected rates (spikes/s) of every unit of ``region``: (stimuli, units)."""
        self.check_visible(stimuli)
        target = self._targets(region)
        out = []
        for lo in tqdm(range(0, len(stimuli), batch_size), disable=not progress, leave=False):
            idx = np.arange(lo, min(lo + batch_size, len(stimuli)))
            out.append(self._rates(self.present(stimuli, idx), target).float().cpu())
        return torch.cat(out)

    def fit_task(
        self,
        stimuli: StimulusSet,
        labels: Any,
        region: str = "IT",
        folds: int = 5,
        seed: int = 0,
        l2: float = 1.0,
    ) -> Decoder:
        """Fit a linear (logistic) decoder of ``labels`` from ``region``'s rates to
        ``stimuli``; its k-fold cross-validated accuracy is in the result."""
        check_seed(seed)
        if isinstance(labels, str):
            if labels not in stimuli.meta.columns:
                raise ValueError(f"labels {labels!r} is not a column of the stimulus table")
            labels = stimuli.meta[labels].to_numpy()
        features = self.region_rates(stimuli, region)
        return fit_decoder(features, labels, region, self.model.name, folds=folds, seed=seed, l2=l2)

    def behave(
        self, stimuli: StimulusSet, task: str | Decoder = "imagenet", batch_size: int = 64
    ) -> xr.DataArray:
        """Choices of the model: an xarray (presentation, choice) of probabilities with the
        chosen label as the presentation coordinate ``label``.

        ``task="imagenet"`` reads the network's own classifier; a ``Decoder`` from
        ``fit_task`` reads its region. Perturbations upstream of the readout change both.
        """
        self.check_visible(stimuli)
        if isinstance(task, Decoder):
            if task.model_name != self.model.name:
                raise ValueError(
                    f"decoder was fitted on {task.model_name!r}, rig holds {self.model.name!r}"
                )
            probs = task.probabilities(self.region_rates(stimuli, task.region, batch_size))
            choices = [str(c) for c in task.classes]
        elif task == "imagenet":
            parts = []
            for lo in range(0, len(stimuli), batch_size):
                idx = np.arange(lo, min(lo + batch_size, len(stimuli)))
                parts.append(torch.softmax(self.model.logits(self.present(stimuli, idx)), 1).cpu())
            probs = torch.cat(parts)
            choices = imagenet_categories(probs.shape[1])
        else:
            raise ValueError(
                f"task must be 'imagenet' or a Decoder from rig.fit_task, got {task!r}"
            )
        p = probs.numpy()
        meta = stimuli.parameters
        coords = {
            name: ("presentation", as_string_array(col) if col.dtype == object else col)
            for name, col in ((c, meta[c].to_numpy()) for c in meta.columns)
        }
        coords["choice"] = ("choice", as_string_array(choices))
        coords["label"] = (
            "presentation",
            as_string_array(np.asarray(choices, dtype=object)[p.argmax(1)]),
        )
        return xr.DataArray(
            p,
            dims=("presentation", "choice"),
            coords=coords,
            name="choice_probability",
            attrs=recordings.json_attrs(
                {
                    "model": self.model.name,
                    "task": task.describe() if isinstance(task, Decoder) else task,
                    "perturbations": [p_.describe() for p_ in self.perturbations],
                    "rig": self.describe(),
                }
            ),
        )

    # mapping ----------------------------------------------------------------------------
    def map_neurons(
        self,
        responses: Any,
        region: str,
        method: str = "ridge",
        cv: int = 5,
        seed: int = 0,
        **kwargs: Any,
    ) -> MappedSites:
        """Map recorded sites onto ``region`` (its committed layer, ``layer=NAME``, or
        ``layer="best"`` over ``candidate_layers``) by ``method`` ("ridge" or "pls") with
        ``cv``-fold cross-validation. ``responses``: an xarray, or a path to .nc / .zarr /
        .nwb (see ``recordings.load_responses``); its stimuli come from an ``image_path``
        coordinate plus ``size_deg``, or ``stimuli_set=`` a StimulusSet matched by
        ``stimulus_id``. ``noise_ceiling="auto"`` (from repetitions when there are any),
        True (required) or False. Returns MappedSites, usable as targets of ``record``,
        ``synthesize`` and ``behave``-style readouts; see ``report()``."""
        return map_neurons(self, responses, region, method=method, cv=cv, seed=seed, **kwargs)

    # synthesis --------------------------------------------------------------------------
    def synthesize(self, targets: Any, objective: Any = "drive", **kwargs: Any) -> SynthesisResult:
        """Synthesize images that ``objective`` the ``targets`` (drive / silence / one_hot /
        match, or a composed ``stimuli.synthesis.objectives.Objective``).

        ``targets``: a SiteArray (each site a target), neuroid ids, a region name or a dict
        ``{name: members}`` of population targets. Keywords: ``n_per_target=1``,
        ``size_deg`` (default 3/4 of the field of view), ``position_deg=(0, 0)``,
        ``steps=256``, ``seed=0``, ``reference`` (natural StimulusSet to compare with; default
        256 crops), ``population`` (for one_hot; default the targets' whole array),
        ``goal`` (match: pattern in spikes/s), ``param="fourier"|"pixel"``,
        ``transforms=True``, ``rms_contrast=0.25``, ``edge_deg=0.25``, ``lr=0.05``,
        ``temperature=1.0``, ``batch_size=32``, ``transfer=[other rigs]``, ``progress``,
        ``callback(step, deviations, values) -> cancel?``. Images are constrained exactly
        (aperture, mean luminance = background, RMS contrast, gamut) and their responses
        re-measured as the display shows them.
        """
        return synthesize(self, targets, objective, **kwargs)

    # arrays -----------------------------------------------------------------------------
    def implant(
        self,
        region: str,
        n_sites: int,
        at_deg: tuple[float, float] | None = None,
        at_mm: tuple[float, float] | None = None,
        pitch_mm: float = UTAH_PITCH_MM,
        seed: int = 0,
        hemisphere: str | None = None,
    ) -> SiteArray:
        """Implant an ``n_sites`` array in ``region`` near visual position ``at_deg`` (or sheet
        position ``at_mm`` on ``hemisphere``'s sheet); see :func:`rigs.arrays.implant`."""
        return implant(
            self.model,
            region,
            n_sites,
            at_deg=at_deg,
            at_mm=at_mm,
            pitch_mm=pitch_mm,
            seed=seed,
            hemisphere=hemisphere,
        )

    def units(self, region: str) -> pd.DataFrame:
        """The unit table of ``region`` (RFs in deg, tissue positions in mm)."""
        return self.model.units(region)

    # recording --------------------------------------------------------------------------
    def _targets(self, targets: Any) -> list[_Target]:
        model = self.model
        if isinstance(targets, SiteArray):
            if targets.model_name != model.name:
                raise ValueError(
                    f"array was implanted in model {targets.model_name!r}, "
                    f"this rig holds {model.name!r}"
                )
            return [_Target(targets.region, targets.layer, targets.units, targets.site_numbers)]
        if isinstance(targets, MappedSites):
            if targets.model_name != model.name:
                raise ValueError(
                    f"sites were mapped onto {targets.model_name!r}, this rig holds {model.name!r}"
                )
            n = len(targets)
            return [
                _Target(targets.region, targets.layer, np.arange(n), np.arange(n), mapped=targets)
            ]
        if isinstance(targets, str):
            ru = model.region_units(targets)
            n = len(ru.table)
            return [_Target(targets, ru.layer, np.arange(n), np.full(n, -1), whole=True)]
        if isinstance(targets, list | tuple | np.ndarray) and len(targets) > 0:
            if all(isinstance(t, SiteArray | MappedSites | str) for t in targets) and not all(
                isinstance(t, str) and t.count(".") == 3 for t in targets
            ):
                return [t for item in targets for t in self._targets(item)]
            ids = [str(t) for t in targets]
            by_region: dict[str, list[str]] = {}
            for nid in ids:
                by_region.setdefault(nid.split(".")[0], []).append(nid)
            out = []
            for region, group in by_region.items():
                ru = model.region_units(region)
                units = ru.units_of(group)
                out.append(_Target(region, ru.layer, units, np.full(len(units), -1)))
            return out
        raise ValueError(
            f"targets must be a region name ({', '.join(model.regions)}), a SiteArray or a "
            f"list of neuroid ids, got {targets!r}"
        )

    def _neuroid_coords(self, targets: list[_Target]) -> dict[str, tuple[str, np.ndarray]]:
        """The neuroid coordinates (DESIGN.md) of the targeted units, in target order."""
        labels = ("neuroid_id", "region", "layer", "hemisphere", "site")
        numeric = [name for name in NEUROID_COORDS if name not in labels]
        columns: dict[str, list[np.ndarray]] = {
            name: [] for name in ("neuroid_id", "region", "layer", *numeric, "hemisphere", "site")
        }
        for t in targets:
            if t.mapped is not None:
                for name, values in _mapped_coords(self.model, t).items():
                    columns[name].append(values)
                continue
            ru = self.model.region_units(t.region)
            units = slice(None) if t.whole else t.units
            columns["neuroid_id"].append(ru.neuroid_ids(np.arange(len(ru.table))[units]))
            columns["region"].append(as_string_array([t.region] * len(t.units)))
            columns["layer"].append(as_string_array([t.layer] * len(t.units)))
            for name in numeric:
                columns[name].append(ru.table[name].to_numpy()[units])
            columns["hemisphere"].append(as_string_array(ru.table["hemisphere"].to_numpy()[units]))
            columns["site"].append(t.sites)
        coords = {name: ("neuroid", np.concatenate(parts)) for name, parts in columns.items()}
        ids = coords["neuroid_id"][1]
        if len(targets) > 1 or not targets[0].whole:
            unique, counts = np.unique(ids.astype(object), return_counts=True)
            if (counts > 1).any():
                raise ValueError(f"neuroid {unique[counts > 1][0]!r} is targeted twice")
        return coords

    def rates(self, images: torch.Tensor, targets: Any) -> torch.Tensor:
        """Firing rates (spikes/s) of ``targets`` for model-input ``images``: ``(n, neuroids)``."""
        return self._rates(images, self._targets(targets))

    def _rates(
        self,
        images: torch.Tensor,
        resolved: list[_Target],
        grad: bool = False,
        clamp: bool = True,
        precision: str = "float32",
    ) -> torch.Tensor:
        with self.model.autocast(precision):
            acts = self.model.activations(images, [t.layer for t in resolved], grad=grad)
        if precision != "float32":  # rates computed in float32 from the reduced-precision pass
            acts = {k: v.float() for k, v in acts.items()}
        parts = [self._target_rates(acts[t.layer], t, clamp) for t in resolved]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _target_rates(self, activation: torch.Tensor, t: _Target, clamp: bool) -> torch.Tensor:
        if t.mapped is not None:  # linear readout of the whole layer
            flat = activation.reshape(activation.shape[0], -1).float()
            w = t.mapped.weights.to(flat.device)
            out = flat @ w.T + t.mapped.bias.to(flat.device)
            return out.clamp(min=0.0) if clamp else out
        units = None if t.whole else t.units
        return self.model.rates(t.region, self.model.gather(activation, units), units, clamp=clamp)

    def record(
        self,
        stimuli: StimulusSet,
        targets: Any,
        repeats: int = 1,
        noise: str | None = None,
        time_bins: Sequence[tuple[float, float]] = ((70.0, 170.0),),
        batch_size: int = 64,
        seed: int = 0,
        out: str | os.PathLike | None = None,
        overwrite: bool = False,
        progress: bool = True,
        precision: str = "float32",
    ) -> xr.DataArray:
        """Record firing rates (spikes/s) of ``targets`` to ``stimuli``.

        ``targets``: a region name (all its units), a :class:`SiteArray`, or neuroid ids.
        Each stimulus is shown ``repeats`` times; ``noise="poisson"`` draws spike counts
        ``~ Poisson(rate * bin duration)`` per presentation and bin (seeded per stimulus by
        ``seed``), ``None`` returns the expected rates. The network is feedforward: every time
        bin (ms after onset) has the same expected rate. With ``out``, batches stream to a
        zarr store as they finish; rerunning the same call resumes an interrupted store.
        ``precision="bfloat16"`` runs the network under ``torch.autocast`` (for a GPU; rates
        agree with float32 to about 1 %, and the recording's attributes say so). On CUDA,
        batches are rendered into pinned memory and copied asynchronously.
        Returns an ``xarray.DataArray`` with dims (presentation, neuroid, time_bin).
        """
        stimuli = _as_stimulus_set(stimuli)
        check_precision(precision)
        if not isinstance(repeats, int | np.integer) or repeats < 1:
            raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if noise not in NOISE_MODELS:
            raise ValueError(f"noise must be one of {NOISE_MODELS}, got {noise!r}")
        check_seed(seed)
        bins = np.asarray(time_bins, dtype=float)
        if bins.ndim != 2 or bins.shape[1] != 2 or not (bins[:, 1] > bins[:, 0]).all():
            raise ValueError(
                f"time_bins must be (start_ms, end_ms) pairs with end > start, got {time_bins!r}"
            )
        self.check_visible(stimuli)
        resolved = self._targets(targets)
        neuroid_coords = self._neuroid_coords(resolved)
        meta = stimuli.parameters
        job = {
            "model": self.model.identity(),
            "rig": self.describe(),
            "perturbations": [p.describe() for p in self.perturbations],
            "stimuli": stimuli.fingerprint(),
            "neuroids": hashlib.sha256(
                "|".join(neuroid_coords["neuroid_id"][1].tolist()).encode()
            ).hexdigest()[:16],
            "repeats": int(repeats),
            "noise": noise,
            "seed": int(seed),
            "time_bins": bins.tolist(),
        }
        if precision != "float32":  # (float32 jobs keep the key set older stores have)
            job["precision"] = precision
        writer = None if out is None else recordings.StreamWriter(out, job, overwrite=overwrite)
        start = 0 if writer is None else writer.done // repeats
        try:
            if writer is not None and writer.complete:
                return recordings.open(writer.path)
            n = len(stimuli)
            n_neuroids = len(neuroid_coords["neuroid_id"][1])
            values = None
            if writer is None:  # filled batch by batch: no copy at the end
                values = np.empty((n * repeats, n_neuroids, len(bins)), dtype=np.float32)
            bar = tqdm(
                total=n,
                initial=start,
                desc=f"recording {self.model.name}",
                unit="img",
                disable=not progress,
            )
            for lo in range(start, n, batch_size):
                idx = np.arange(lo, min(lo + batch_size, n))
                images = self.present(stimuli, idx)
                if self.model.device.type == "cuda":
                    images = images.pin_memory()  # the copy to the GPU runs asynchronously
                rates = self._rates(images, resolved, precision=precision)
                rates = rates.float().cpu().numpy()
                batch = self._noisy(rates, idx, bins, repeats, noise, seed)
                if writer is None:
                    values[lo * repeats : (lo + len(idx)) * repeats] = batch
                else:
                    writer.append(self._recording(batch, idx, meta, neuroid_coords, bins, repeats))
                bar.update(len(idx))
            bar.close()
            attrs = {
                "units": "spikes/s",
                "insilico_version": __version__,
                "model": self.model.name,
                "weights_id": self.model.weights_id,
                "brain_like": self.model.brain_like,
                "commitment": self.model.commitment.to_dict(),
                "rig": self.describe(),
                "perturbations": [p.describe() for p in self.perturbations],
                "stimulus_set": {
                    "kind": stimuli.kind,
                    "fingerprint": stimuli.fingerprint(),
                    "n": n,
                },
                "repeats": int(repeats),
                "noise": "none" if noise is None else noise,
                "seed": int(seed),
                "precision": precision,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
            if writer is not None:
                return writer.finish(attrs)
            rec = self._recording(values, np.arange(n), meta, neuroid_coords, bins, repeats)
            rec.attrs = recordings.json_attrs(attrs)
            return rec
        finally:
            if writer is not None:
                writer.close()  # the lock goes; committed batches stay resumable

    @staticmethod
    def _noisy(
        rates: np.ndarray,
        idx: np.ndarray,
        bins: np.ndarray,
        repeats: int,
        noise: str | None,
        seed: int,
    ) -> np.ndarray:
        """(stimuli, neuroids) rates -> (stimuli * repeats, neuroids, time bins) responses."""
        n, k = rates.shape
        t = len(bins)
        expected = np.broadcast_to(rates[:, None, :, None], (n, repeats, k, t))
        if noise == "poisson":
            duration_s = (bins[:, 1] - bins[:, 0]) / 1000.0
            values = np.empty((n, repeats, k, t), dtype=np.float32)
            for j, stim in enumerate(idx):  # one generator per stimulus: batch-size independent
                rng = np.random.default_rng([int(seed), int(stim)])
                counts = rng.poisson(expected[j] * duration_s)
                values[j] = counts / duration_s
        else:
            values = np.ascontiguousarray(expected, dtype=np.float32)
        return values.reshape(n * repeats, k, t)

    @staticmethod
    def _recording(
        values: np.ndarray,
        idx: np.ndarray,
        meta: pd.DataFrame,
        neuroid_coords: dict,
        bins: np.ndarray,
        repeats: int,
    ) -> xr.DataArray:
        """Responses of stimuli ``idx`` (each ``repeats`` times) as a lab recording."""
        rows = meta.iloc[idx]
        pres = {}
        for name in rows.columns:
            col = np.repeat(rows[name].to_numpy(), repeats)
            if col.dtype == object:
                col = as_string_array(col)
            pres[name] = ("presentation", col)
        pres["repetition"] = ("presentation", np.tile(np.arange(repeats), len(idx)))
        pres["stimulus_index"] = ("presentation", np.repeat(idx, repeats))
        coords = {
            **pres,
            **neuroid_coords,
            "time_bin_start": ("time_bin", bins[:, 0]),
            "time_bin_end": ("time_bin", bins[:, 1]),
        }
        return xr.DataArray(
            values, dims=("presentation", "neuroid", "time_bin"), coords=coords, name="response"
        )


def _mapped_coords(model: BrainModel, t: _Target) -> dict[str, np.ndarray]:
    """Neuroid coordinates of mapped sites: RF and sheet position are the |weight|-weighted
    centroids over the layer's units (NaN when the layer is not a committed region layer)."""
    m = t.mapped
    n = len(m)
    out = {
        "neuroid_id": as_string_array(m.names),
        "region": as_string_array([m.region] * n),
        "layer": as_string_array([m.layer] * n),
        "channel": np.full(n, -1),
        "row": np.full(n, -1),
        "col": np.full(n, -1),
        "site": np.arange(n),
    }
    regions = {model.region(r).layer: r for r in model.regions}
    w = m.weights.abs().numpy()
    w = w / np.clip(w.sum(1, keepdims=True), 1e-30, None)
    table = model.units(regions[m.layer]) if m.layer in regions else None
    for name in ("rf_x_deg", "rf_y_deg", "rf_size_deg", "tissue_x_mm", "tissue_y_mm"):
        if table is None or name == "rf_size_deg":
            out[name] = np.full(n, np.nan)
        else:
            out[name] = w @ table[name].to_numpy()
    # the hemisphere holding most of the site's |weight| ("" when not a committed region layer);
    # tissue centroids average positions on one frame shared by both sheets
    if table is None:
        out["hemisphere"] = as_string_array([""] * n)
    else:
        left = w @ (table["hemisphere"].to_numpy() == "left").astype(float)
        out["hemisphere"] = as_string_array(np.where(left >= 0.5, "left", "right"))
    return out
