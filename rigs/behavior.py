"""Behavioural readouts: the model's own ImageNet classifier, and fitted linear decoders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr

import recordings
from recordings.format import as_string_array
from stimuli import StimulusSet
from stimuli.stimulus_set import check_seed

if TYPE_CHECKING:
    from rigs.rig import Rig


@dataclass
class Decoder:
    """A multinomial logistic decoder of ``classes`` from a region's firing rates (spikes/s).

    Features are z-scored with the training mean and s.d.; ``cv_accuracy`` is the k-fold
    cross-validated accuracy on the training set (``chance`` = 1 / number of classes).
    """

    region: str
    model_name: str
    classes: np.ndarray
    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    cv_accuracy: float
    cv_sem: float
    folds: int
    l2: float
    units: np.ndarray | None = field(default=None, repr=False)

    @property
    def chance(self) -> float:
        return 1.0 / len(self.classes)

    def probabilities(self, rates: torch.Tensor) -> torch.Tensor:
        """Choice probabilities (n, classes) from rates (n, units)."""
        z = (rates.float().cpu() - self.mean) / self.std
        return torch.softmax(z @ self.weight.T + self.bias, dim=1)

    def describe(self) -> dict[str, Any]:
        return {
            "type": "Decoder",
            "region": self.region,
            "classes": [str(c) for c in self.classes],
            "cv_accuracy": self.cv_accuracy,
            "folds": self.folds,
            "l2": self.l2,
        }

    def __repr__(self) -> str:
        return (
            f"Decoder({self.region} of {self.model_name!r} -> {list(map(str, self.classes))}, "
            f"{self.folds}-fold CV accuracy {self.cv_accuracy:.3f} ± {self.cv_sem:.3f}, "
            f"chance {self.chance:.3f})"
        )


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, k: int, l2: float) -> tuple[torch.Tensor, ...]:
    """Multinomial logistic regression (L2 penalty ``l2`` on weights), full-batch L-BFGS."""
    mean = x.mean(0)
    std = x.std(0).clamp(min=1e-6)
    z = (x - mean) / std
    w = torch.zeros(k, x.shape[1], requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w.T + b, y) + l2 * (w**2).sum() / len(y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), mean, std


def fit_decoder(
    features: torch.Tensor,
    labels: Any,
    region: str,
    model_name: str,
    folds: int = 5,
    seed: int = 0,
    l2: float = 1.0,
) -> Decoder:
    """Fit a decoder of ``labels`` from ``features`` (n, units) with k-fold CV accuracy."""
    labels = np.asarray(labels)
    n = len(features)
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} stimuli")
    classes, y_np = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"a task needs at least 2 classes, got {list(classes)}")
    if not isinstance(folds, int) or not 2 <= folds <= n:
        raise ValueError(f"folds must be an integer in [2, {n}], got {folds!r}")
    x = features.float().cpu()
    y = torch.as_tensor(y_np)
    rng = np.random.default_rng(seed)
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(y_np == c)) for c in range(len(classes))]
    )
    fold_of = np.empty(n, dtype=int)
    fold_of[order] = np.arange(n) % folds  # stratified: classes spread over folds
    accs = []
    for f in range(folds):
        test = torch.as_tensor(fold_of == f)
        w, b, mean, std = _fit_logistic(x[~test], y[~test], len(classes), l2)
        pred = (((x[test] - mean) / std) @ w.T + b).argmax(1)
        accs.append(float((pred == y[test]).float().mean()))
    w, b, mean, std = _fit_logistic(x, y, len(classes), l2)
    return Decoder(
        region=region,
        model_name=model_name,
        classes=classes,
        weight=w,
        bias=b,
        mean=mean,
        std=std,
        cv_accuracy=float(np.mean(accs)),
        cv_sem=float(np.std(accs, ddof=1) / np.sqrt(folds)),
        folds=folds,
        l2=l2,
    )


def imagenet_categories(num_classes: int) -> list[str]:
    """ImageNet class names (shipped with torchvision, no download) or class_0..N-1."""
    if num_classes == 1000:
        try:
            from torchvision.models import ResNet18_Weights

            return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
        except (ImportError, AttributeError, KeyError):
            pass
    return [f"class_{k}" for k in range(num_classes)]


def fit_task(
    rig: Rig,
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
    features = rig.region_rates(stimuli, region)
    return fit_decoder(features, labels, region, rig.model.name, folds=folds, seed=seed, l2=l2)


def behave(
    rig: Rig, stimuli: StimulusSet, task: str | Decoder = "imagenet", batch_size: int = 64
) -> xr.DataArray:
    """Choices of the model: an xarray (presentation, choice) of probabilities with the
    chosen label as the presentation coordinate ``label``.

    ``task="imagenet"`` reads the network's own classifier; a ``Decoder`` from
    ``fit_task`` reads its region. Perturbations upstream of the readout change both.
    """
    rig.check_visible(stimuli)
    if isinstance(task, Decoder):
        if task.model_name != rig.model.name:
            raise ValueError(
                f"decoder was fitted on {task.model_name!r}, rig holds {rig.model.name!r}"
            )
        probs = task.probabilities(rig.region_rates(stimuli, task.region, batch_size))
        choices = [str(c) for c in task.classes]
    elif task == "imagenet":
        parts = []
        for lo in range(0, len(stimuli), batch_size):
            idx = np.arange(lo, min(lo + batch_size, len(stimuli)))
            parts.append(torch.softmax(rig.model.logits(rig.present(stimuli, idx)), 1).cpu())
        probs = torch.cat(parts)
        choices = imagenet_categories(probs.shape[1])
    else:
        raise ValueError(f"task must be 'imagenet' or a Decoder from rig.fit_task, got {task!r}")
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
                "model": rig.model.name,
                "task": task.describe() if isinstance(task, Decoder) else task,
                "perturbations": [p_.describe() for p_ in rig.perturbations],
                "rig": rig.describe(),
            }
        ),
    )
