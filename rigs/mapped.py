"""Recorded sites mapped onto a model layer: the result of ``rigs.mapping.map_neurons``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from rigs.arrays import select_sites


@dataclass(frozen=True)
class MappedSites:
    """Recorded sites mapped onto a model layer; behaves like an implanted array.

    ``weights`` (sites, units) and ``bias`` (sites,) map the layer's activations (flat unit
    order) to the site's rate in the units of the real recording (spikes/s). ``predictivity``
    is the cross-validated Pearson r, ``noise_ceiling`` the r a perfect model could reach.
    """

    model_name: str
    region: str
    layer: str
    #: the recorded neuroid id each site stands for (the real recording's ids)
    neuroid_ids: np.ndarray
    weights: torch.Tensor = field(repr=False)
    bias: torch.Tensor = field(repr=False)
    predictivity: np.ndarray = field(repr=False)
    noise_ceiling: np.ndarray = field(repr=False)
    method: str = "ridge"
    info: dict = field(default_factory=dict, repr=False)
    parent: MappedSites | None = field(default=None, repr=False)
    #: site numbers (0..n-1 in the fitted set; a subset keeps its parent's numbers)
    site_numbers: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.site_numbers is None:
            object.__setattr__(self, "site_numbers", np.arange(len(self.neuroid_ids)))

    def __len__(self) -> int:
        return len(self.neuroid_ids)

    @property
    def sites(self) -> _Indexer:
        """``mapped.sites[[0, 3]]`` (site numbers), ``mapped.sites[mask]`` or ``sites[:2]``:
        a subset, still mapped; the same meaning as ``SiteArray.sites``."""
        return _Indexer(self)

    @property
    def consistency(self) -> np.ndarray:
        """Predictivity relative to the noise ceiling (1 = as good as the data allow); NaN
        where the ceiling is NaN or 0 (no reliable response to be consistent with)."""
        ceiling = np.where(self.noise_ceiling > 0, self.noise_ceiling, np.nan)
        with np.errstate(invalid="ignore"):
            return self.predictivity / ceiling

    def report(self) -> pd.DataFrame:
        """Per site (number): predictivity (Pearson r), noise ceiling, consistency, and the
        recorded neuroid id it stands for."""
        return pd.DataFrame(
            {
                "site": self.site_numbers,
                "predictivity": self.predictivity,
                "noise_ceiling": self.noise_ceiling,
                "consistency": self.consistency,
                "neuroid_id": self.neuroid_ids,
                "layer": self.layer,
                "method": self.method,
            }
        )

    @property
    def _ensemble(self) -> str:
        k = int(self.info.get("n_models", 1))
        return f" (ensemble of {k})" if k > 1 else ""

    def __repr__(self) -> str:
        return (
            f"MappedSites({len(self)} sites -> {self.region} ({self.layer}) of "
            f"{self.model_name!r} by {self.method}{self._ensemble}, "
            f"median r {np.nanmedian(self.predictivity):.3f}, "
            f"median ceiling {np.nanmedian(self.noise_ceiling):.3f})"
        )


class _Indexer:
    def __init__(self, mapped: MappedSites) -> None:
        self._m = mapped

    def __getitem__(self, key: Any) -> MappedSites:
        m = self._m
        idx = select_sites(m.site_numbers, key)
        t = torch.as_tensor(idx)
        return MappedSites(
            m.model_name,
            m.region,
            m.layer,
            m.neuroid_ids[idx],
            m.weights[t],
            m.bias[t],
            m.predictivity[idx],
            m.noise_ceiling[idx],
            m.method,
            m.info,
            m.parent or m,
            m.site_numbers[idx],
        )
