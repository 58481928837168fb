"""napari layer data for the lab's results and stores (numpy only: no napari or Qt here).

Every function returns napari ``LayerDataTuple``s ``(data, kwargs, layer_type)``, the form an
npe2 reader returns, so the reader, :func:`insilico.viewer.view` and the widgets build the
same layers.

Geometry: images sit where the rig showed them, in degrees of visual angle relative to
fixation. The last two axes are ``("elevation", "azimuth")`` with ``units`` degree and
``scale`` = degrees per pixel; elevation grows upwards, so its scale is negative and the
viewer's camera is turned to point up (:func:`insilico.viewer.attach` does that).
Images are linear luminance; they are shown as the monitor shows them, ``lum ** (1/gamma)``
with contrast limits (0, 1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recordings.format import error_line

SYNTHESIS_KIND = "insilico-synthesis"
META = "insilico"  # key of our information in a layer's ``metadata``
SPATIAL_LABELS = ("elevation", "azimuth")
DEGREE = "degree"
#: above this many bytes a display stack is computed lazily (dask) instead of in memory
LAZY_BYTES = 256 * 2**20

LayerData = tuple[Any, dict[str, Any], str]


# identifying a store -------------------------------------------------------------------
def identify(path: str | os.PathLike) -> tuple[str | None, str]:
    """``("synthesis" | "recording" | None, reason)`` for a path, reading only metadata."""
    p = Path(path)
    if not p.exists():
        return None, f"{str(p)!r} does not exist"
    if not p.is_dir():
        return None, f"{str(p)!r} is not a zarr store (a folder)"
    if not ((p / "zarr.json").exists() or (p / ".zgroup").exists()):
        return None, f"{str(p)!r} is not a zarr store (no zarr.json or .zgroup)"
    import zarr

    try:
        group = zarr.open_group(str(p), mode="r")
        attrs = dict(group.attrs)
    except Exception as err:  # zarr raises several types for a broken store
        return None, f"{str(p)!r} cannot be read as a zarr group ({type(err).__name__}: {err})"
    if attrs.get("kind") == SYNTHESIS_KIND:
        return "synthesis", "synthesis result written by insilico-lab"
    try:
        member = group.get("response")
    except Exception:
        member = None
    dims = ()
    if member is not None:
        dims = tuple(getattr(member.metadata, "dimension_names", None) or ()) or tuple(
            member.attrs.get("_ARRAY_DIMENSIONS", ())
        )
    if dims[:1] == ("presentation",) or "insilico_job" in attrs or "presentations_done" in attrs:
        return "recording", "recording written by insilico-lab"
    return None, (
        f"{str(p)!r} is a zarr store but not one written by insilico-lab (no "
        f"kind={SYNTHESIS_KIND!r} attribute and no 'response' recording); open it with "
        "napari's own reader"
    )


def read_store(path: str | os.PathLike) -> list[LayerData]:
    """Layers for a lab store; ``ValueError`` with a readable message if it is not one or if
    it is damaged."""
    kind, reason = identify(path)
    if kind is None:
        if not Path(path).exists():
            raise FileNotFoundError(f"no store at {str(path)!r}")
        raise ValueError(reason)
    name = Path(path).name.removesuffix(".zarr") or str(path)
    try:
        if kind == "synthesis":
            from stimuli.synthesis import open_result

            return synthesis_layers(open_result(path), name=name, source=str(path))
        import recordings

        rec = recordings.open(path)
        return recording_layers(rec, name=name, source=str(path))
    except Exception as err:
        message = error_line(err)
        raise ValueError(
            f"insilico-lab cannot read {str(path)!r} (a {kind} store): {message}. "
            "The store may be incomplete or damaged; write it again."
        ) from err


# synthesis ------------------------------------------------------------------------------
def gamma_of(attrs: dict[str, Any]) -> float:
    display = attrs.get("display") or {}
    try:
        return float(display.get("gamma", 2.2))
    except (TypeError, ValueError, AttributeError):
        return 2.2


def encode(lum: np.ndarray, gamma: float) -> np.ndarray:
    """Linear luminance -> what the monitor shows (values in [0, 1]) as float32."""
    return np.clip(lum, 0.0, 1.0, dtype=np.float32) ** np.float32(1.0 / gamma)


def placement(size_deg: float, position_deg: tuple[float, float], width_px: int) -> dict:
    """``scale`` and ``translate`` of the two spatial axes (elevation, azimuth)."""
    dpp = float(size_deg) / int(width_px)
    x, y = float(position_deg[0]), float(position_deg[1])
    return {
        "scale": (-dpp, dpp),
        "translate": (y + size_deg / 2 - dpp / 2, x - size_deg / 2 + dpp / 2),
    }


def aperture_layer(size_deg: float, position_deg: tuple[float, float], name: str) -> LayerData:
    """The circular aperture (diameter ``size_deg``) as a shapes layer in degrees."""
    x, y = float(position_deg[0]), float(position_deg[1])
    r = float(size_deg) / 2
    ellipse = np.array([[y, x], [r, r]])  # centre and radii
    kwargs = {
        "name": name,
        "shape_type": "ellipse",
        "edge_color": "yellow",
        "face_color": "transparent",
        "edge_width": max(size_deg / 150, 1e-3),
        "opacity": 0.8,
        "units": (DEGREE, DEGREE),
        "axis_labels": SPATIAL_LABELS,
        "metadata": {META: {"kind": "aperture", "size_deg": size_deg}},
    }
    return [ellipse], kwargs, "shapes"


def _stack(frames: list[np.ndarray], gamma: float) -> Any:
    """(B, n, H, W, 3) display stack from n frames of (B, 3, H, W) linear luminance."""
    b, _, h, w = frames[0].shape
    nbytes = b * len(frames) * h * w * 3 * 4
    if nbytes > LAZY_BYTES:
        try:
            import dask.array as da
        except ImportError:  # pragma: no cover - napari depends on dask
            da = None
        if da is not None:
            lazy = da.stack([da.from_array(f, chunks=(1, 3, h, w)) for f in frames], axis=1)
            return encode(lazy.transpose(0, 1, 3, 4, 2), gamma)
    out = np.empty((b, len(frames), h, w, 3), np.float32)
    for k, f in enumerate(frames):
        out[:, k] = encode(np.moveaxis(np.asarray(f, np.float32), 1, -1), gamma)
    return out


def synthesis_layers(
    res: Any, name: str | None = None, source: str | None = None, live: bool = False
) -> list[LayerData]:
    """Image stack (image, [step,] elevation, azimuth) + aperture outline for a result."""
    name = name or f"{res.attrs.get('objective_kind', res.attrs.get('objective', 'synthesis'))}"
    images = res.images.detach().cpu().numpy() if hasattr(res.images, "numpy") else res.images
    images = np.asarray(images, np.float32)
    b, _, _, w = images.shape
    gamma = gamma_of(res.attrs)
    table = res.table
    size = float(table["size_deg"].iloc[0])
    pos = (float(table["position_x_deg"].iloc[0]), float(table["position_y_deg"].iloc[0]))
    snaps = np.asarray(res.snapshots)
    steps_done = len(res.trajectory)
    if snaps.ndim == 5 and len(snaps) > 0 and snaps.shape[1] == b:
        frames = [s.astype(np.float32) + np.float32(res.background) for s in snaps]
        step_labels = [int(s) for s in res.snapshot_steps[: len(frames)]]
        if not step_labels or step_labels[-1] != steps_done:
            frames.append(images)
            step_labels.append(steps_done)
        else:
            frames[-1] = images
        data = _stack(frames, gamma)
    else:
        data = encode(np.moveaxis(images, 1, -1), gamma)
        step_labels = [steps_done]
    place = placement(size, pos, w)
    lead = ("image", "step") if data.ndim == 5 else ("image",)
    meta = {
        "kind": "synthesis-live" if live else "synthesis",
        "result": res,
        "steps": step_labels,
        "gamma": gamma,
        "size_deg": size,
        "position_deg": pos,
        "source": source,
    }
    kwargs = {
        "name": name,
        "rgb": True,
        "contrast_limits": (0.0, 1.0),
        "scale": (1.0,) * len(lead) + place["scale"],
        "translate": (0.0,) * len(lead) + place["translate"],
        "units": (None,) * len(lead) + (DEGREE, DEGREE),
        "axis_labels": (*lead, *SPATIAL_LABELS),
        "interpolation2d": "nearest",
        "metadata": {META: meta},
    }
    return [(data, kwargs, "image"), aperture_layer(size, pos, f"{name} aperture")]


def live_frame(deviations: np.ndarray, background: float, gamma: float) -> np.ndarray:
    """(B, H, W, 3) display frame from a batch of deviations (B, 3, H, W) during a run."""
    lum = np.asarray(deviations, np.float32) + np.float32(background)
    return encode(np.moveaxis(lum, 1, -1), gamma)


def decoded(attrs: dict[str, Any]) -> dict[str, Any]:
    """Provenance attrs with their JSON text (dicts, lists) decoded."""
    import json

    out = {}
    for key, value in dict(attrs).items():
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out


# recordings -----------------------------------------------------------------------------
def presentation_table(rec: Any) -> pd.DataFrame:
    """One row per presentation: every 1-d presentation coordinate."""
    cols = {
        name: np.asarray(coord.values)
        for name, coord in rec.coords.items()
        if coord.dims == ("presentation",)
    }
    return pd.DataFrame(cols)


def stimulus_responses(rec: Any) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(stimulus table, mean (S, N), s.d. over repetitions (S, N)) in first-shown order;
    responses averaged over time bins."""
    rates = np.asarray(rec.values, np.float64)
    if rates.ndim == 3:
        rates = rates.mean(axis=2)
    table = presentation_table(rec)
    if "stimulus_id" in table:
        key = table["stimulus_id"].astype(str).to_numpy()
    else:
        key = np.arange(len(table)).astype(str)
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first)  # stimuli in the order they were first shown
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group = rank[inverse]
    s = len(uniq)
    count = np.bincount(group, minlength=s).astype(np.float64)[:, None]
    total = np.zeros((s, rates.shape[1]))
    np.add.at(total, group, rates)
    mean = total / count
    sq = np.zeros_like(total)
    np.add.at(sq, group, (rates - mean[group]) ** 2)
    sd = np.sqrt(sq / np.maximum(count - 1, 1))
    stim = table.iloc[first[order]].drop(columns=["repetition"], errors="ignore")
    return stim.reset_index(drop=True), mean, sd


_GRATING_COLUMNS = (
    "size_deg",
    "orientation_deg",
    "sf_cpd",
    "phase_deg",
    "contrast",
    "mean",
    "waveform",
    "edge_deg",
    "position_x_deg",
    "position_y_deg",
)


def render_stimuli(
    stim: pd.DataFrame, kind: str | None, background: float = 0.5, max_px: int = 128
) -> np.ndarray | None:
    """Re-render gratings or Gabor patches from their parameters: (S, 3, H, W) linear
    luminance composited on the background, or None when the parameters do not allow it
    (other kinds, several sizes or positions, too many stimuli)."""
    if kind not in ("gratings", "gabors") or not set(_GRATING_COLUMNS) <= set(stim.columns):
        return None
    if kind == "gabors" and "sigma_deg" not in stim.columns:
        return None
    places = stim[["size_deg", "position_x_deg", "position_y_deg"]].drop_duplicates()
    if len(places) != 1:
        return None
    try:
        from stimuli.parametric import grating_renderer
        from stimuli.tables import DEFAULT_PPD, shape_for

        size = float(stim["size_deg"].iloc[0])
        ppd = min(DEFAULT_PPD, max_px / size)
        rows = stim.copy()
        if "aperture" not in rows:
            rows["aperture"] = "none" if kind == "gabors" else "circle"
        for col in rows.columns:
            if rows[col].dtype == object and col in ("waveform", "aperture"):
                rows[col] = rows[col].astype(str)
        shape = shape_for(size, ppd)
        if len(rows) * 3 * shape[0] * shape[1] * 4 > LAZY_BYTES:
            return None
        out = grating_renderer(shape)(rows.reset_index(drop=True))
        lum = out.linear().numpy()
        if out.alpha is not None:
            alpha = out.alpha.numpy()
            lum = lum * alpha + background * (1 - alpha)
        return lum.astype(np.float32)
    except Exception:  # parameters this version cannot render: fall back to responses
        return None


def recording_layers(
    rec: Any, name: str | None = None, source: str | None = None
) -> list[LayerData]:
    """Stimuli re-rendered in degrees when their parameters allow it (gratings, Gabors), else
    the response matrix (stimulus x neuroid, spikes/s). The responses of each neuroid are
    in the layer metadata for the Responses dock."""
    name = name or "recording"
    attrs = decoded(rec.attrs)
    stim, mean, sd = stimulus_responses(rec)
    neuroids = presentation_free_coords(rec)
    kind = (attrs.get("stimulus_set") or {}).get("kind")
    background = float(((attrs.get("rig") or {}).get("display") or {}).get("background", 0.5))
    gamma = gamma_of(attrs.get("rig") or {})
    meta = {
        "kind": "recording",
        "stimuli": stim,
        "mean": mean,
        "sd": sd,
        "neuroids": neuroids,
        "units": attrs.get("units", "spikes/s"),
        "source": source,
        "attrs": attrs,
    }
    images = render_stimuli(stim, kind, background)
    if images is not None:
        size = float(stim["size_deg"].iloc[0])
        pos = (float(stim["position_x_deg"].iloc[0]), float(stim["position_y_deg"].iloc[0]))
        place = placement(size, pos, images.shape[-1])
        meta.update(axis="stimulus", size_deg=size, position_deg=pos)
        kwargs = {
            "name": f"{name} stimuli",
            "rgb": True,
            "contrast_limits": (0.0, 1.0),
            "scale": (1.0, *place["scale"]),
            "translate": (0.0, *place["translate"]),
            "units": (None, DEGREE, DEGREE),
            "axis_labels": ("stimulus", *SPATIAL_LABELS),
            "metadata": {META: meta},
        }
        data = encode(np.moveaxis(images, 1, -1), gamma)
        return [(data, kwargs, "image"), aperture_layer(size, pos, f"{name} aperture")]
    hi = float(np.nanpercentile(mean, 99.5)) if mean.size else 1.0
    kwargs = {
        "name": f"{name} responses",
        "colormap": "magma",
        "contrast_limits": (0.0, hi if hi > 0 else 1.0),
        "axis_labels": ("stimulus", "neuroid"),
        "interpolation2d": "nearest",
        "metadata": {META: {**meta, "axis": "matrix"}},
    }
    return [(mean.astype(np.float32), kwargs, "image")]


def presentation_free_coords(rec: Any) -> pd.DataFrame:
    """One row per neuroid: every 1-d neuroid coordinate."""
    cols = {
        name: np.asarray(coord.values)
        for name, coord in rec.coords.items()
        if coord.dims == ("neuroid",)
    }
    if "neuroid_id" not in cols:
        cols["neuroid_id"] = np.arange(rec.sizes["neuroid"]).astype(str)
    return pd.DataFrame(cols)
