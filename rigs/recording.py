"""Recording: expected rates of targets to stimuli, with Poisson noise and repetitions, as
a lab recording (DESIGN.md "Recording format"), in memory or streamed to a resumable store."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

import recordings
from insilico.brain.model import check_precision
from recordings.format import INSILICO_VERSION, as_string_array
from rigs.screen import as_stimulus_set
from rigs.targets import neuroid_coords, rates, resolve_targets
from stimuli import StimulusSet
from stimuli.stimulus_set import check_seed

if TYPE_CHECKING:
    from rigs.rig import Rig

NOISE_MODELS = (None, "poisson")


def record(
    rig: Rig,
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
    stimuli = as_stimulus_set(stimuli)
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
    rig.screen.check_visible(stimuli)
    resolved = resolve_targets(rig.model, targets)
    coords = neuroid_coords(rig.model, resolved)
    meta = stimuli.parameters
    job = {
        "model": rig.model.identity(),
        "rig": rig.describe(),
        "perturbations": [p.describe() for p in rig.perturbations],
        "stimuli": stimuli.fingerprint(),
        "neuroids": hashlib.sha256("|".join(coords["neuroid_id"][1].tolist()).encode()).hexdigest()[
            :16
        ],
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
        n_neuroids = len(coords["neuroid_id"][1])
        values = None
        if writer is None:  # filled batch by batch: no copy at the end
            values = np.empty((n * repeats, n_neuroids, len(bins)), dtype=np.float32)
        bar = tqdm(
            total=n,
            initial=start,
            desc=f"recording {rig.model.name}",
            unit="img",
            disable=not progress,
        )
        for lo in range(start, n, batch_size):
            idx = np.arange(lo, min(lo + batch_size, n))
            images = rig.present(stimuli, idx)
            if rig.model.device.type == "cuda":
                images = images.pin_memory()  # the copy to the GPU runs asynchronously
            expected = rates(rig.model, images, resolved, precision=precision)
            expected = expected.float().cpu().numpy()
            batch = add_noise(expected, idx, bins, repeats, noise, seed)
            if writer is None:
                values[lo * repeats : (lo + len(idx)) * repeats] = batch
            else:
                writer.append(as_recording(batch, idx, meta, coords, bins, repeats))
            bar.update(len(idx))
        bar.close()
        attrs = {
            "units": "spikes/s",
            "insilico_version": INSILICO_VERSION,
            "model": rig.model.name,
            "weights_id": rig.model.weights_id,
            "brain_like": rig.model.brain_like,
            "commitment": rig.model.commitment.to_dict(),
            "rig": rig.describe(),
            "perturbations": [p.describe() for p in rig.perturbations],
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
        rec = as_recording(values, np.arange(n), meta, coords, bins, repeats)
        rec.attrs = recordings.json_attrs(attrs)
        return rec
    finally:
        if writer is not None:
            writer.close()  # the lock goes; committed batches stay resumable


def add_noise(
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


def as_recording(
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
