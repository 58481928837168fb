"""BrainModel: a network plus its commitments, with forward passes truncated at need."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import pandas as pd
import torch
from torch import nn

from insilico.brain.allocator import tune_allocator
from insilico.brain.commitments import Commitment, RegionCommitment
from insilico.brain.units import RegionUnits, measure_region

#: Width (spikes/s) of the soft threshold at zero drive: lab choice, small next to every
#: region's spontaneous rate so that ``saturate(baseline_hz)`` stays within 1 % of it.
SOFT_THRESHOLD_HZ = 1.0


def saturate(drive: torch.Tensor, max_hz: float | torch.Tensor) -> torch.Tensor:
    """Firing rate (spikes/s) from drive ``u`` (spikes/s): ``max_hz * tanh(s(u) / max_hz)``
    with ``s(u) = w * log(1 + exp(u / w))``, w = SOFT_THRESHOLD_HZ. ``max_hz`` is one rate
    or a tensor broadcasting against ``drive`` (a maximum per unit or site).

    Smooth and strictly increasing, -> 0 for u << 0 (softplus soft threshold), ~u for
    0 << u << max_hz and -> max_hz for u >> 0. A compressive, saturating response as in
    the contrast-response functions of Naka & Rushton (1966, J Physiol 185:536) and
    Albrecht & Hamilton (1982, J Neurophysiol 48:217); the tanh form and the width are the
    lab's choice, not fitted to data.
    """
    if not bool(torch.all(torch.as_tensor(max_hz) > 0)):
        raise ValueError(f"max_hz must be > 0 spikes/s, got {max_hz!r}")
    soft = torch.nn.functional.softplus(drive, beta=1.0 / SOFT_THRESHOLD_HZ, threshold=20.0)
    if soft.requires_grad:
        return max_hz * torch.tanh(soft / max_hz)
    return soft.div_(max_hz).tanh_().mul_(max_hz)  # the same numbers, one buffer


#: forward-pass precisions a recording may ask for (see BrainModel.autocast)
PRECISIONS = ("float32", "bfloat16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of PRECISIONS, else a one-line ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


#: channels-last pixels per row when normalising (3 x 16 = 48 values: vectorises)
_PIXELS_PER_ROW = 16


class _StopForward(Exception):
    """Raised by the hook of the deepest requested layer: nothing after it is computed."""


class BrainModel:
    """A PyTorch network committed to visual degrees and to brain regions.

    Images enter as pixel values in [0, 1], shape ``(n, 3, input_size, input_size)``,
    spanning ``visual_degrees`` around fixation; the model normalises them itself.
    ``activations`` runs the network only up to the deepest layer asked for. Forward hooks
    registered on the network's modules (perturbations) act on every pass.
    """

    def __init__(
        self,
        network: nn.Module,
        commitment: Commitment,
        weights_id: str,
        brain_like: bool = True,
        device: str | torch.device = "cpu",
        trained_cells: dict[str, np.ndarray] | None = None,
    ) -> None:
        tune_allocator()
        #: per layer, the channel -> grid-cell map a topographic network was trained with
        #: (region arrangement "trained"; see insilico.brain.layout.arrange)
        self.trained_cells = dict(trained_cells or {})
        self.network = network.eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.commitment = commitment
        self.weights_id = weights_id
        self.brain_like = brain_like
        self.device = torch.device(device)
        self._modules = dict(self.network.named_modules())
        for region in commitment.regions.values():
            if region.layer not in self._modules:
                raise ValueError(
                    f"commitment {commitment.source}: region {region.name} names layer "
                    f"{region.layer!r}, which the network does not have"
                )
        self._order: dict[str, int] | None = None
        self._units: dict[str, RegionUnits] = {}
        self._shapes: dict[str, tuple[int, int, int]] = {}
        self._silencers: dict[str, list] = {}
        self._silencing: dict[str, torch.Tensor] = {}
        self._output_gain: dict[str, torch.Tensor] = {}
        self.to(device)

    # description ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.commitment.name

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self.commitment.regions)

    @property
    def visual_degrees(self) -> float:
        return self.commitment.visual_degrees

    @property
    def input_size(self) -> int:
        return self.commitment.input_size

    def region(self, name: str) -> RegionCommitment:
        """The commitment of region ``name`` (clear error naming the model's regions)."""
        return self.commitment.region(name)

    def identity(self) -> dict:
        """JSON-safe identity for provenance: model, weights hash, commitment."""
        return {
            "model": self.name,
            "weights_id": self.weights_id,
            "brain_like": self.brain_like,
            "commitment": self.commitment.to_dict(),
        }

    def __repr__(self) -> str:
        regions = ", ".join(f"{k}={v.layer}" for k, v in self.commitment.regions.items())
        return (
            f"BrainModel({self.name!r}, {self.visual_degrees} deg @ {self.input_size} px, "
            f"{regions}, device={self.device})"
        )

    # devices ----------------------------------------------------------------------------
    def to(self, device: str | torch.device) -> BrainModel:
        """Move the network to ``device`` ("cpu", "cuda", ...); channels-last on CPU."""
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
        self.device = device
        self.network.to(device=device, memory_format=torch.channels_last)
        c = self.commitment
        self._mean = torch.tensor(c.mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(c.std, device=device).view(1, 3, 1, 1)
        # the same, repeated for 16 channels-last pixels (see normalise)
        self._mean_px = self._mean.reshape(3).repeat(_PIXELS_PER_ROW)
        self._std_px = self._std.reshape(3).repeat(_PIXELS_PER_ROW)
        return self

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per colour channel, channels-last (the network's format).

        Bit-identical to the broadcast expression. A channels-last batch is normalised as
        rows of 16 interleaved RGB pixels (48 values): a broadcast over an innermost
        dimension of 3 does not vectorise: 25 ms for 64 x 224 px images on 2 cores, against
        11 ms as rows of 48 (median of 11, same process)."""
        n, c, h, w = x.shape
        if (
            c == 3
            and x.is_contiguous(memory_format=torch.channels_last)
            and (h * w) % _PIXELS_PER_ROW == 0
            and x.dtype == self._mean_px.dtype
        ):
            rows = x.permute(0, 2, 3, 1).reshape(-1, 3 * _PIXELS_PER_ROW)  # a view
            out = rows.sub(self._mean_px).div_(self._std_px)
            return out.view(n, h, w, c).permute(0, 3, 1, 2)
        return ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    def autocast(self, precision: str = "float32") -> AbstractContextManager:
        """Context in which forward passes run at ``precision``: "float32" (exact, the
        default) or "bfloat16" (``torch.autocast`` on the model's device: convolutions and
        matrix products in bfloat16, about 3 significant digits; for recording on a GPU).
        Unit tables are always measured in float32 (their cache is shared)."""
        if check_precision(precision) == "float32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, precision))

    # forward passes ---------------------------------------------------------------------
    def layer_order(self) -> dict[str, int]:
        """Module name -> position in the forward pass (measured once on a 1-image pass)."""
        if self._order is None:
            order: dict[str, int] = {}

            def seen(name: str):
                def hook(module: nn.Module, args, output) -> None:
                    order.setdefault(name, len(order))

                return hook

            handles = [
                module.register_forward_hook(seen(name))
                for name, module in self._modules.items()
                if name
            ]
            try:
                with torch.inference_mode():
                    self.network(self._blank(1))
            finally:
                for h in handles:
                    h.remove()
            self._order = order
        return self._order

    def _blank(self, n: int) -> torch.Tensor:
        size = self.input_size
        return torch.full((n, 3, size, size), 0.5, device=self.device)

    def check_input(self, images: torch.Tensor) -> torch.Tensor:
        """Validate a batch of model-input images; move it to the model's device."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        size = self.input_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(
                f"images have shape {tuple(images.shape)}; model {self.name!r} expects "
                f"(n, 3, {size}, {size})"
            )
        if not images.dtype.is_floating_point:
            raise ValueError(
                f"images have dtype {images.dtype}; expected float pixel values in [0, 1]"
            )
        return images.to(self.device, non_blocking=True)

    def activations(
        self, images: torch.Tensor, layers: Iterable[str], grad: bool = False
    ) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` for ``images`` (pixel values in [0, 1]).

        Runs the network only as far as the deepest of ``layers``. With ``grad=False`` the
        pass runs in inference mode; with ``grad=True`` gradients flow to ``images``.
        """
        layers = list(dict.fromkeys(layers))
        for layer in layers:
            if layer not in self._modules or not layer:
                raise ValueError(f"model {self.name!r} has no layer {layer!r}")
        order = self.layer_order()
        deepest = max(layers, key=lambda name: order.get(name, -1))
        x = self.check_input(images)
        out: dict[str, torch.Tensor] = {}

        def capture(name: str):
            def hook(module: nn.Module, args, output: torch.Tensor):
                out[name] = output
                if name == deepest:
                    raise _StopForward

            return hook

        handles = [self._modules[name].register_forward_hook(capture(name)) for name in layers]
        ctx = nullcontext() if grad else torch.inference_mode()
        try:
            with ctx:
                x = self.normalise(x)
                try:
                    self.network(x)
                except _StopForward:
                    pass
        finally:
            for h in handles:
                h.remove()
        missing = [name for name in layers if name not in out]
        if missing:
            raise RuntimeError(f"layers {missing} were not reached in the forward pass")
        return out

    def logits(self, images: torch.Tensor, grad: bool = False) -> torch.Tensor:
        """The network's own classifier output for ``images`` (full forward pass)."""
        x = self.check_input(images)
        ctx = nullcontext() if grad else torch.inference_mode()
        with ctx:
            return self.network(self.normalise(x))

    def layer_shape(self, layer: str) -> tuple[int, int, int]:
        """(channels, rows, cols) of a layer's output at the model's input size."""
        if layer not in self._shapes:
            out = self.activations(self._blank(1), [layer])[layer]
            if out.ndim != 4:
                raise ValueError(
                    f"layer {layer!r} output has shape {tuple(out.shape)}; expected a feature map"
                )
            self._shapes[layer] = tuple(int(s) for s in out.shape[1:])
        return self._shapes[layer]

    # units ------------------------------------------------------------------------------
    def units(self, region: str) -> pd.DataFrame:
        """The units of ``region`` as a table (one row per unit; see ``RegionUnits``)."""
        return self.region_units(region).table

    def region_units(self, region: str) -> RegionUnits:
        """Measured unit properties of ``region`` (RFs, rate scale, sheet layout), cached."""
        self.region(region)
        if region not in self._units:
            with torch.autocast(self.device.type, enabled=False):  # always float32
                self._units[region] = measure_region(self, region)
        return self._units[region]

    def rates(
        self,
        region: str,
        activation: torch.Tensor,
        units: np.ndarray | None = None,
        clamp: bool = True,
    ) -> torch.Tensor:
        """Activation of ``region``'s units -> firing rate in spikes/s.

        The drive is ``u = baseline_hz + gain * a`` (spikes/s, unbounded; gain =
        (max_hz - baseline_hz) / a99, a99 the 99th percentile of the layer's activations
        over natural crops). ``clamp=True`` returns the rate ``silencing * saturate(u)``
        in [0, max_hz] (see :func:`saturate`); ``clamp=False`` returns ``u`` itself, which
        keeps gradients alive for synthesis (silencing is not applied to ``u``).
        ``units`` are the flat unit indices of ``activation``'s columns (None: all units),
        needed when a perturbation silences some units.
        """
        rc = self.region(region)
        scale = self.region_units(region).rate_scale
        silencing = self._silencing.get(region)
        if clamp and silencing is not None:
            # a silencing perturbation scales the layer's output by its gain (what downstream
            # layers see); the recorded neuron's own rate is scaled once, by the silencing
            # factor: rate = s * R(u), not s * R(b + g * gain * a)
            idx = None if units is None else torch.tensor(np.asarray(units))
            gain = self._output_gain[region] if idx is None else self._output_gain[region][idx]
            activation = activation / gain.to(activation.device)
        drive = activation.mul((rc.max_hz - rc.baseline_hz) / scale).add_(rc.baseline_hz)
        if not clamp:
            return drive
        rate = saturate(drive, rc.max_hz)
        if silencing is not None:
            s = silencing if units is None else silencing[torch.tensor(np.asarray(units))]
            rate = rate * s.to(rate.device)
        return rate

    def saturate(self, region: str, drive: torch.Tensor) -> torch.Tensor:
        """Rate (spikes/s) of ``region``'s units for drive ``u`` (spikes/s); no silencing."""
        return saturate(drive, self.region(region).max_hz)

    def add_rate_silencing(
        self, region: str, factor: torch.Tensor, output_gain: torch.Tensor | None = None
    ):
        """Multiply the firing rate (spikes/s) of ``region``'s units by ``factor`` (flat unit
        order, each in [0, 1] for silencing) until the returned remover is called (used by
        perturbations): factor 0 -> exactly 0 spikes/s, factor 1 -> untouched.

        ``output_gain`` is the gain the same perturbation applies to the layer's output (what
        downstream layers see); the recorded rate undoes it before the rate function, so a
        unit silenced by a factor f fires f * R(u) (where the gain is 0 the factor is 0)."""
        entries = self._silencers.setdefault(region, [])
        token = object()
        gain = torch.ones_like(factor) if output_gain is None else output_gain
        safe = torch.where(gain > 0, gain, torch.ones_like(gain)).float().cpu()
        entries.append((token, factor.float().cpu(), safe))
        self._update_silencing(region)

        def remove() -> None:
            entries[:] = [e for e in entries if e[0] is not token]
            self._update_silencing(region)

        return remove

    def _update_silencing(self, region: str) -> None:
        entries = self._silencers.get(region, [])
        if not entries:
            self._silencing.pop(region, None)
            self._output_gain.pop(region, None)
            return
        total = entries[0][1].clone()
        gain = entries[0][2].clone()
        for _, f, g in entries[1:]:
            total *= f
            gain *= g
        self._silencing[region] = total
        self._output_gain[region] = gain

    def gather(
        self, activation: torch.Tensor, units: np.ndarray | Sequence[int] | None
    ) -> torch.Tensor:
        """Select flat unit indices (channel-major, as in the unit table) from a feature map;
        ``units=None`` takes them all."""
        flat = activation.reshape(activation.shape[0], -1)
        if units is None:
            return flat
        index = torch.tensor(np.asarray(units, dtype=np.int64), device=flat.device)
        return flat.index_select(1, index)
