"""Helpers shared by the benchmark scripts (not a test module)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

#: the glibc settings insilico/brain/allocator.py applies in-process, as environment variables
#: for a peer's process (so that peers can be compared with and without them)
ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(2**31 - 1),
    "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1),
    "MALLOC_TOP_PAD_": str(256 << 20),
}


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time in seconds over ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def round_robin(
    jobs: dict[str, Callable[[], object]],
    repeats: int,
    sync: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Wall times of each job over ``repeats`` rounds (a, b, c, a, b, c, ...) after one
    warm-up round, so that drifts in machine speed hit every job. ``sync`` (e.g.
    ``torch.cuda.synchronize``) runs before and after each timed call."""
    for fn in jobs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, fn in jobs.items():
            if sync is not None:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            times[name].append(time.perf_counter() - t0)
    return times


def median_ratio(num: list[float], den: list[float]) -> float:
    """Median of the per-round ratios num / den."""
    ratios = sorted(a / b for a, b in zip(num, den, strict=True))
    return ratios[len(ratios) // 2]


def paired(fn_a: Callable[[], object], fn_b: Callable[[], object], repeats: int) -> dict:
    """Time two jobs alternately (a, b, a, b, ...) after a warm-up of each; returns best
    times and the median of the per-pair ratios a/b."""
    t = round_robin({"a": fn_a, "b": fn_b}, repeats)
    return {
        "a_best_s": min(t["a"]),
        "b_best_s": min(t["b"]),
        "median_ratio": median_ratio(t["a"], t["b"]),
    }


def forward_to(net: torch.nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The network's own modules called in order up to ``layer`` (EfficientNet-Lite
    ``_blocks.N`` or TinyNet ``v1``..``it``): the truncated forward a user writes by hand."""
    if layer.startswith("_blocks."):
        x = torch.nn.functional.relu6(net._bn0(net._conv_stem(x)), inplace=True)
        for block in net._blocks[: int(layer.split(".")[1]) + 1]:
            x = block(x)
        return x
    for name in ("v1", "v2", "v4", "it"):
        x = getattr(net, name)(x)
        if name == layer:
            break
    return x


def raw_truncated_forward(model, images: torch.Tensor, layer: str, batch_size: int) -> None:
    """Baseline: plain torch, the network's own modules called up to ``layer``, no hooks.

    Works for the project's EfficientNet-Lite0 (``_blocks.N``) and TinyNet (``v1``..``it``).
    """
    net = model.network
    mean, std = model._mean, model._std
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            forward_to(net, x, layer).reshape(len(x), -1).float().cpu()


def write_result(path: str | None, result: dict) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        Path(path).write_text(text)


def rss_mb() -> float:
    """This process's resident set (MB), from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line in /proc/self/status")


def peak_rss_while(fn: Callable[[], object]) -> tuple[object, float, float, float]:
    """``fn()``'s result, its wall time (s), the resident set before it (MB) and the peak
    resident set while it ran (MB), sampled every 5 ms on a thread."""
    peak, running = [0.0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.005)

    before = rss_mb()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - t0
        running[0] = False
        thread.join()
    return result, seconds, before, max(peak[0], before)


def median_normalised(r, ceiling, min_ceiling: float = 0.1) -> float:
    """Median over sites of predictivity / noise ceiling, sites with a ceiling below
    ``min_ceiling`` left out (their ratio is noise)."""
    r, ceiling = np.asarray(r, dtype=float), np.asarray(ceiling, dtype=float)
    ok = ceiling >= min_ceiling
    return float(np.nanmedian(r[ok] / ceiling[ok]))
