"""StimulusSet: images sized and placed in degrees, rendered lazily batch by batch."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

#: columns every stimulus table has (one row per stimulus)
BASE_COLUMNS = ("stimulus_id", "size_deg", "position_x_deg", "position_y_deg")


class Rendered(NamedTuple):
    """A rendered batch: ``values`` (n, 3, H, W) in [0, 1], ``alpha`` (n, 1, H, W) or None.

    ``gamma`` None means ``values`` are linear luminance; a number means they are pixel
    values whose luminance is ``values ** gamma`` (8-bit images stay encoded until needed).
    ``in_range`` True promises every value already lies in [0, 1] (decoded 8-bit pixels),
    so presenting them needs no clamping pass.
    """

    values: torch.Tensor
    alpha: torch.Tensor | None = None
    gamma: float | None = None
    in_range: bool = False

    def linear(self) -> torch.Tensor:
        """Linear luminance in [0, 1]."""
        v = self.values.float().clamp(0.0, 1.0)
        return v if self.gamma is None else v.pow_(self.gamma)


#: a renderer turns table rows into a Rendered batch
Renderer = Callable[[pd.DataFrame], Rendered]


def check_seed(seed: Any, name: str = "seed") -> int:
    """A random seed: a non-negative integer (numpy refuses -1 with a message naming nothing)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_positive_int(value: Any, name: str) -> int:
    """``value`` as an int if it is an integer >= 1 (not a bool); else a one-line error."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive(value: Any, name: str, what: str = "a positive number") -> float:
    """``value`` as a float if it is a finite number > 0; else an error saying ``name`` must
    be ``what``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {what}, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return number


def check_size_deg(size_deg: Any, name: str = "size_deg") -> float:
    """A size in degrees: a finite number > 0."""
    return check_positive(size_deg, name, "a positive number of degrees")


def check_position_deg(position_deg: Any, name: str = "position_deg") -> tuple[float, float]:
    """A position (x, y) in degrees: two finite numbers."""
    try:
        x, y = (float(v) for v in position_deg)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (x_deg, y_deg), got {position_deg!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{name} must be finite (x_deg, y_deg), got {position_deg!r}")
    return x, y


class StimulusSet:
    """An ordered set of stimuli of one pixel shape, each with a size and position in degrees.

    Images are float32 *linear luminance* in [0, 1], shape ``(3, H, W)``, optionally with an
    alpha mask (1 = stimulus, 0 = transparent, showing the display background). They are
    rendered on demand by ``images()``, so a set of 100,000 gratings costs only its table.

    ``meta`` has one row per stimulus: ``stimulus_id``, ``size_deg`` (image width in deg),
    ``position_x_deg``/``position_y_deg`` (image centre relative to fixation, y up) and every
    generating parameter. Pixels per degree = ``shape_px[1] / size_deg``.
    """

    def __init__(
        self,
        meta: pd.DataFrame,
        shape_px: tuple[int, int],
        renderer: Renderer,
        kind: str,
        fingerprint: str,
    ) -> None:
        missing = [c for c in BASE_COLUMNS if c not in meta.columns]
        if missing:
            raise ValueError(
                f"stimulus table lacks columns {missing}; expected {list(BASE_COLUMNS)}"
            )
        meta = meta.reset_index(drop=True)
        if meta["stimulus_id"].duplicated().any():
            dup = meta["stimulus_id"][meta["stimulus_id"].duplicated()].iloc[0]
            raise ValueError(f"stimulus_id values must be unique; {dup!r} appears twice")
        for size in meta["size_deg"].unique():
            check_size_deg(size)
        pos = meta[["position_x_deg", "position_y_deg"]].to_numpy(dtype=float)
        if not np.isfinite(pos).all():
            raise ValueError("stimulus positions must be finite numbers of degrees")
        self.meta = meta
        self.shape_px = (int(shape_px[0]), int(shape_px[1]))
        self.kind = kind
        self._renderer = renderer
        self._fingerprint = fingerprint

    # container protocol -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.meta)

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> StimulusSet:
        """A subset (same renderer); ``index`` is an int, slice, int array or boolean mask."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        rows = self.meta.iloc[index]
        sub = StimulusSet(rows, self.shape_px, self._renderer, self.kind, self._fingerprint)
        return sub

    def __repr__(self) -> str:
        h, w = self.shape_px
        params = [c for c in self.meta.columns if c not in BASE_COLUMNS and not c.startswith("_")]
        return (
            f"StimulusSet({self.kind}, n={len(self)}, {h}x{w} px, "
            f"size_deg={sorted(set(self.meta['size_deg'].round(4)))}, params={params})"
        )

    # properties -------------------------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        return self.meta["stimulus_id"].to_numpy(dtype=object)

    @property
    def size_deg(self) -> np.ndarray:
        """Image width in degrees, per stimulus."""
        return self.meta["size_deg"].to_numpy(dtype=float)

    @property
    def position_deg(self) -> np.ndarray:
        """Image centre (x, y) in degrees relative to fixation, per stimulus: shape (n, 2)."""
        return self.meta[["position_x_deg", "position_y_deg"]].to_numpy(dtype=float)

    @property
    def ppd(self) -> np.ndarray:
        """Pixels per degree of each stimulus image."""
        return self.shape_px[1] / self.size_deg

    @property
    def parameters(self) -> pd.DataFrame:
        """The public stimulus table (internal ``_``-prefixed columns dropped)."""
        return self.meta[[c for c in self.meta.columns if not c.startswith("_")]]

    def fingerprint(self) -> str:
        """Hash of everything that determines the images and their placement."""
        h = hashlib.sha256(self._fingerprint.encode())
        h.update(repr(self.shape_px).encode())
        h.update(
            pd.util.hash_pandas_object(self.meta.astype(str), index=False).to_numpy().tobytes()
        )
        return h.hexdigest()[:16]

    # rendering --------------------------------------------------------------------------
    def images(
        self, index: slice | Sequence[int] | np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Render stimuli ``index`` (default all): rgb ``(n,3,H,W)``, alpha ``(n,1,H,W)|None``."""
        out = self.render(index)
        return out.linear(), out.alpha

    def render(self, index: slice | Sequence[int] | np.ndarray | None = None) -> Rendered:
        """Render stimuli ``index`` as the renderer makes them (maybe still gamma-encoded)."""
        rows = self.meta if index is None else self.meta.iloc[index]
        return self._renderer(rows)

    def with_position(self, position_deg: tuple[float, float]) -> StimulusSet:
        """The same images centred at ``position_deg`` (x, y) degrees."""
        x, y = check_position_deg(position_deg)
        meta = self.meta.copy()
        meta["position_x_deg"], meta["position_y_deg"] = x, y
        return StimulusSet(meta, self.shape_px, self._renderer, self.kind, self._fingerprint)

    def with_size(self, size_deg: float) -> StimulusSet:
        """The same images shown ``size_deg`` wide (their pixels stretch accordingly)."""
        meta = self.meta.copy()
        meta["size_deg"] = check_size_deg(size_deg)
        return StimulusSet(meta, self.shape_px, self._renderer, self.kind, self._fingerprint)

    def show(
        self,
        n: int = 16,
        path: str | None = None,
        background: float = 0.5,
        columns: int | None = None,
        label: str | None = None,
    ):
        """A contact sheet of the first ``n`` stimuli (matplotlib; no napari needed).

        Each image is composited on a ``background`` grey (linear luminance) through its
        aperture, gamma-encoded (2.2) for the screen and titled by ``label`` (a table column,
        default the stimulus id's tail) with its size in degrees. ``path`` writes a PNG;
        returns the matplotlib Figure.
        """
        # pyplot is imported here, not at the top: it is heavy, and writing a file needs the
        # Agg backend chosen before pyplot is first imported
        import matplotlib

        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive number of stimuli, got {n!r}")
        if label is not None and label not in self.meta.columns:
            raise ValueError(
                f"label {label!r} is not a column of this set; columns: "
                f"{', '.join(self.parameters.columns)}"
            )
        k = min(n, len(self))
        rgb, alpha = self.images(slice(0, k))
        if alpha is not None:
            rgb = rgb * alpha + background * (1 - alpha)
        shown = rgb.clamp(0, 1) ** (1 / 2.2)
        cols = columns or min(k, 8)
        rows = -(-k // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
        for i, ax in enumerate(axes.ravel()):
            ax.axis("off")
            if i >= k:
                continue
            ax.imshow(shown[i].permute(1, 2, 0).numpy(), interpolation="nearest")
            row = self.meta.iloc[i]
            name = str(row[label]) if label else str(row["stimulus_id"]).split("_")[-1][:6]
            ax.set_title(f"{name}\n{row['size_deg']:g} deg", fontsize=7)
        fig.suptitle(f"{self.kind}: {k} of {len(self)} stimuli", fontsize=9)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig
