"""Paired comparison of two ``examples/closed_loop.py`` runs on the sites both selected.

    python tests/benchmarks/compare_closed_loops.py lite0.log lite0_lite1.log

Reads the per-site lines each run prints (measured: synthesized vs best re-shown natural
response; noise-free: synthesized vs best natural rate, one-hot shares; rates rounded to
0.1 spikes/s) and compares run B with run A site by site: Wilcoxon signed-rank test on the
responses, exact McNemar test on the wins, medians of B / A. The runs must share the animal
and day 1 (the same seeds), so the re-shown natural responses are identical (checked).
"""

from __future__ import annotations

import re
import sys

import numpy as np
from scipy.stats import binomtest, wilcoxon

MEASURED = re.compile(
    r"(site_\d+): r ([\d.]+)\s+synthesized\s+([\d.]+)\s+best natural\s+([\d.]+) \(day 1"
)
NOISE_FREE = re.compile(
    r"(site_\d+) noise-free: synthesized\s+([\d.]+) best natural\s+([\d.]+) spikes/s; "
    r"one-hot share ([\d.]+) vs ([\d.]+)"
)


def parse(text: str, pattern: re.Pattern) -> dict[str, np.ndarray]:
    """Per site id, the numbers of its line."""
    return {m[1]: np.array([float(v) for v in m.groups()[1:]]) for m in pattern.finditer(text)}


def mcnemar(wins_a: np.ndarray, wins_b: np.ndarray) -> str:
    """Discordant pairs and the exact McNemar p (two-sided binomial on them)."""
    b_only, n = int((wins_b & ~wins_a).sum()), int((wins_a ^ wins_b).sum())
    p = binomtest(b_only, n).pvalue if n else 1.0
    return f"B only {b_only}, A only {n - b_only}; exact McNemar p {p:.2g}"


def main(path_a: str, path_b: str) -> None:
    text_a, text_b = open(path_a).read(), open(path_b).read()
    a, b = parse(text_a, MEASURED), parse(text_b, MEASURED)
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        raise SystemExit(f"{len(shared)} sites in both runs: nothing to pair")
    A, B = np.array([a[s] for s in shared]), np.array([b[s] for s in shared])
    if not np.allclose(A[:, 2], B[:, 2]):
        raise SystemExit("the re-shown natural responses differ: not the same animal and day 1")
    n = len(shared)
    print(f"{len(a)} / {len(b)} sites selected, {n} in both")
    p = wilcoxon(B[:, 1], A[:, 1]).pvalue
    print(f"measured: synthesized B > A at {(B[:, 1] > A[:, 1]).sum()}/{n}, Wilcoxon p {p:.2g}, "
          f"median B/A {np.median(B[:, 1] / A[:, 1]):.3f}")  # fmt: skip
    wa, wb = A[:, 1] > A[:, 2], B[:, 1] > B[:, 2]
    print(f"  beat the best re-shown natural: A {wa.sum()}, B {wb.sum()}; {mcnemar(wa, wb)}")
    ta, tb = parse(text_a, NOISE_FREE), parse(text_b, NOISE_FREE)
    if not (set(shared) <= set(ta) and set(shared) <= set(tb)):
        return
    A, B = np.array([ta[s] for s in shared]), np.array([tb[s] for s in shared])
    p = wilcoxon(B[:, 0], A[:, 0]).pvalue
    print(f"noise-free: synthesized B > A at {(B[:, 0] > A[:, 0]).sum()}/{n}, Wilcoxon p "
          f"{p:.2g}, median B/A {np.median(B[:, 0] / A[:, 0]):.3f}")  # fmt: skip
    wa, wb = A[:, 0] > A[:, 1], B[:, 0] > B[:, 1]
    print(f"  beat the best natural: A {wa.sum()}, B {wb.sum()}; {mcnemar(wa, wb)}")
    ra, rb = A[:, 2] / A[:, 3], B[:, 2] / B[:, 3]
    p = wilcoxon(rb, ra).pvalue
    print(f"  one-hot share ratio: median A {np.median(ra):.3f}, B {np.median(rb):.3f}; "
          f"B > A at {(rb > ra).sum()}/{n}, Wilcoxon p {p:.2g}")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: compare_closed_loops.py RUN_A.log RUN_B.log")
    main(sys.argv[1], sys.argv[2])
