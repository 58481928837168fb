"""Data-efficient readouts of a frozen layer: factorized (Klindt et al. 2017: a spatial mask
times channel weights) and Gaussian (Lurz et al. 2021: a learned 2-D Gaussian on the feature
map times channel weights), batched over sites and fitted on the CPU.

Both are linear in the layer's features, so each returns the same contract as ridge and PLS
(``rigs.regression.fit``): a dense weight matrix W (units, sites) in the layer's flat unit
order (``activation.reshape(n, -1)``), a bias (sites,) and a per-site summary. Fitting: the
features are centred per unit and scaled per channel, the responses standardised per site;
each site starts at the feature-map position whose channels (a ridge fit on the training
part) best predict it on the validation part (the last 20 % of a seeded permutation of the
training stimuli); then Adam on the training part, full batch, with early stopping on the
validation part per site, restoring each site's best parameters.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

READOUTS = ("factorized", "gaussian")
#: fewest training stimuli a readout fits on (of which 20 % validate the early stopping)
MIN_TRAIN = 40
VAL_FRACTION = 0.2
#: L1 on the factorized mask and channel weights (Gaussian: channel weights), per site
L1 = 1e-3
#: squared Laplacian of the factorized mask, per site
SMOOTH = 1e-2
MAX_STEPS = 600
EVERY = 10
PATIENCE = 8
LR = 0.03
#: smallest Gaussian width in feature-map pixels
MIN_SIGMA = 0.3

_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]


def min_images(cv: int | None = None) -> int:
    """Fewest stimuli a readout needs: ``MIN_TRAIN`` in each of ``cv`` training folds."""
    if cv is None or not isinstance(cv, int) or cv < 2:
        return MIN_TRAIN
    return math.ceil(MIN_TRAIN * cv / (cv - 1))


def check_images(method: str, n: int, cv: int | None = None) -> None:
    """One-line error when ``n`` stimuli are too few for ``method``."""
    need = min_images(cv)
    if n < need:
        folds = f" with cv={cv}" if cv is not None else ""
        raise ValueError(
            f"method {method!r} needs at least {need} stimuli{folds} "
            f"({MIN_TRAIN} per training fold); got {n}"
        )


def _standardise(x: torch.Tensor, y: torch.Tensor, shape):
    """Features (n, C, P) centred per unit and scaled per channel; responses standardised."""
    c, h, w = (int(s) for s in shape)
    if x.ndim != 2 or x.shape[1] != c * h * w:
        raise ValueError(f"features of shape {tuple(x.shape)} do not match layer shape {shape}")
    x3 = x.reshape(len(x), c, h * w).double()
    xm = x3.mean(0)
    xs = (x3 - xm).pow(2).mean((0, 2)).sqrt().clamp(min=1e-8)
    ym = y.double().mean(0)
    ys = y.double().std(0).clamp(min=1e-8)
    xn = ((x3 - xm) / xs[:, None]).float()
    yn = ((y.double() - ym) / ys).float()
    return xn, yn, (xm, xs, ym, ys)


def _split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation stimuli: the last 20 % of a seeded permutation validate."""
    perm = np.random.default_rng(0).permutation(n)
    n_val = max(8, round(VAL_FRACTION * n))
    return np.sort(perm[:-n_val]), np.sort(perm[-n_val:])


def _best_positions(xn: torch.Tensor, yn: torch.Tensor, tr, va) -> tuple:
    """Per site, the feature-map position whose channels best predict it (ridge on the
    training part, squared error on the validation part), and those channel weights."""
    xt = xn[tr].double()
    g = torch.einsum("ncp,ndp->pcd", xt, xt)
    eye = torch.eye(xn.shape[1], dtype=torch.float64)
    rhs = torch.einsum("ncp,ns->pcs", xt, yn[tr].double())
    w = torch.linalg.solve(g + 0.1 * len(tr) * eye, rhs)  # (P, C, S)
    pred = torch.einsum("ncp,pcs->nps", xn[va].double(), w)
    err = (pred - yn[va].double()[:, None, :]).pow(2).mean(0)  # (P, S)
    best = err.argmin(0)
    sites = torch.arange(yn.shape[1])
    return best, w.permute(0, 2, 1)[best, sites].float()  # (S,), (S, C)


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return rows.reshape(-1), cols.reshape(-1)


def _to_unit(pos: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel position -> the unconstrained parameter whose tanh maps back inside the map."""
    if size == 1:
        return torch.zeros_like(pos)
    return torch.atanh((2 * pos / (size - 1) - 1).clamp(-0.9, 0.9))


def _from_unit(a: torch.Tensor, size: int) -> torch.Tensor:
    return (size - 1) / 2 * (1 + torch.tanh(a))


class _Factorized:
    """mask m (S, P) times channel weights v (S, C)."""

    def __init__(self, shape, best, v0) -> None:
        _, h, w = shape
        self.shape = shape
        rows, cols = _grid(h, w)
        d2 = (rows - rows[best][:, None]) ** 2 + (cols - cols[best][:, None]) ** 2
        self.m = torch.exp(-d2 / (2 * 0.5**2)).requires_grad_()
        self.v = v0.clone().requires_grad_()
        self.b = torch.zeros(len(best), requires_grad=True)
        self.params = [self.m, self.v, self.b]

    def weights(self) -> torch.Tensor:
        return (self.v[:, :, None] * self.m[:, None, :]).reshape(len(self.b), -1)

    def penalty(self) -> torch.Tensor:
        _, h, w = self.shape
        m = F.pad(self.m.reshape(-1, 1, h, w), (1, 1, 1, 1), mode="replicate")
        lap = F.conv2d(m, _LAPLACE).reshape(len(self.b), -1)
        l1 = self.m.abs().sum(1) + self.v.abs().sum(1)
        return L1 * l1 + SMOOTH * lap.pow(2).sum(1)

    def summary(self) -> dict:
        return {}


class _Gaussian:
    """a normalised 2-D Gaussian g (S, P) at mu with width sigma times channel weights v."""

    def __init__(self, shape, best, v0) -> None:
        _, h, w = shape
        self.shape = shape
        self.rows, self.cols = _grid(h, w)
        self.a_row = _to_unit(self.rows[best], h).requires_grad_()
        self.a_col = _to_unit(self.cols[best], w).requires_grad_()
        self.s = torch.full((len(best),), math.log(math.expm1(0.7 - MIN_SIGMA)))
        self.s.requires_grad_()
        self.v = v0.clone().requires_grad_()
        self.b = torch.zeros(len(best), requires_grad=True)
        self.params = [self.a_row, self.a_col, self.s, self.v, self.b]

    def centre(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, h, w = self.shape
        sigma = MIN_SIGMA + F.softplus(self.s)
        return _from_unit(self.a_row, h), _from_unit(self.a_col, w), sigma

    def mask(self) -> torch.Tensor:
        row, col, sigma = self.centre()
        d2 = (self.rows - row[:, None]) ** 2 + (self.cols - col[:, None]) ** 2
        g = torch.exp(-d2 / (2 * sigma[:, None] ** 2))
        return g / g.sum(1, keepdim=True)

    def weights(self) -> torch.Tensor:
        return (self.v[:, :, None] * self.mask()[:, None, :]).reshape(len(self.b), -1)

    def penalty(self) -> torch.Tensor:
        return L1 * self.v.abs().sum(1)

    def summary(self) -> dict:
        row, col, sigma = (t.detach().numpy().astype(float) for t in self.centre())
        return {"row": row, "col": col, "sigma": sigma}


def _train(readout, xn: torch.Tensor, yn: torch.Tensor, tr, va) -> np.ndarray:
    """Adam, full batch, early stopping per site on the validation part; each site's best
    parameters restored. Returns the step each site stopped at."""
    xt, yt = xn[tr].reshape(len(tr), -1), yn[tr]
    xv, yv = xn[va].reshape(len(va), -1), yn[va]
    opt = torch.optim.Adam(readout.params, lr=LR)
    n_sites = yn.shape[1]
    best = torch.full((n_sites,), float("inf"))
    best_step = np.zeros(n_sites, dtype=int)
    kept = [p.detach().clone() for p in readout.params]
    stale = 0
    for step in range(MAX_STEPS + 1):
        if step % EVERY == 0 or step == MAX_STEPS:
            with torch.no_grad():
                err = (xv @ readout.weights().T + readout.b - yv).pow(2).mean(0)
                better = err < best - 1e-5
                best = torch.where(better, err, best)
                best_step[better.numpy()] = step
                for k, p in zip(kept, readout.params):
                    k[better] = p.detach()[better]
            stale = 0 if better.any() else stale + 1
            if stale >= PATIENCE or step == MAX_STEPS:
                break
        opt.zero_grad()
        loss = (xt @ readout.weights().T + readout.b - yt).pow(2).mean(0) + readout.penalty()
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        for k, p in zip(kept, readout.params):
            p.copy_(k)
    return best_step


def fit_readout(
    method: str, x: torch.Tensor, y: torch.Tensor, shape: tuple[int, int, int]
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(W (units, sites), b (sites,), summary) of a ``method`` readout ("factorized" or
    "gaussian") of features ``x`` (stimuli, C*H*W in flat order) of a layer of ``shape``
    (C, H, W) to responses ``y`` (stimuli, sites). The summary holds each site's early
    stopping step ("steps") and, for the Gaussian, its centre ("row", "col") and width
    ("sigma") in feature-map pixels."""
    if method not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {method!r}")
    if shape is None:
        raise ValueError(f"method {method!r} needs the layer's (C, H, W) shape")
    check_images(method, len(x))
    shape = tuple(int(s) for s in shape)
    xn, yn, (xm, xs, ym, ys) = _standardise(x, y, shape)
    tr, va = _split(len(x))
    with torch.no_grad():
        best, v0 = _best_positions(xn, yn, tr, va)
    readout = (_Factorized if method == "factorized" else _Gaussian)(shape, best, v0)
    with torch.enable_grad():
        steps = _train(readout, xn, yn, tr, va)
    with torch.no_grad():
        wn = readout.weights().double().reshape(len(best), shape[0], -1)  # (S, C, P)
        w = wn * ys[:, None, None] / xs[None, :, None]
        b = ys * readout.b.double() + ym - (w * xm).sum((1, 2))
    summary = {"steps": steps, **readout.summary()}
    return w.reshape(len(best), -1).T.float().contiguous(), b.float(), summary
