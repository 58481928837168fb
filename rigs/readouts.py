"""Data-efficient readouts of a frozen layer: factorized (Klindt et al. 2017: a spatial mask
times channel weights) and Gaussian (Lurz et al. 2021: a learned 2-D Gaussian on the feature
map times channel weights), batched over sites and fitted on the CPU.

Both are linear in the layer's features, so each returns the same contract as ridge and PLS
(``rigs.regression.fit``): a dense weight matrix W (units, sites) in the layer's flat unit
order (``activation.reshape(n, -1)``), a bias (sites,) and a per-site summary. Fitting: the
features are centred per unit and scaled per channel, the responses standardised per site;
each site starts at the feature-map position whose channels (a ridge fit on the training
part) best predict it on the validation part (the last 20 % of a seeded permutation of the
training stimuli). Then block-coordinate descent, each half-step on the training part:

- channel weights given the spatial part: the features pooled by each site's mask
  (one matmul over positions) are (stimuli, channels) per site, solved in closed form by
  ridge, the penalty picked per site from ``ALPHAS`` on the validation part;
- factorized mask given the channel weights: the features contracted with each site's
  channel weights (one matmul over channels) are (stimuli, positions) per site, solved in
  closed form by ridge with a smoothness (squared Laplacian) penalty, picked likewise;
- Gaussian centre and width given the channel weights: ``INNER`` Adam steps on the
  contracted (stimuli, positions) features, which cost a fraction of a full step.

Each site keeps its parameters of lowest validation error and stops (is no longer computed)
after ``PATIENCE`` rounds without improving it by ``TOL``; the fit ends when every site has
stopped or after ``MAX_ROUNDS``. No (sites, channels, positions) tensor is formed per step.
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
#: ridge penalties tried per site and half-step, relative to the mean eigenvalue of the
#: half-step's Gram matrix
ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0)
#: squared Laplacian of the factorized mask, relative to its squared norm, in its penalty
SMOOTH = 0.5
MAX_ROUNDS = 30
PATIENCE = 2
#: smallest decrease of a site's validation error (standardised responses) that counts
TOL = 1e-3
#: Adam steps on the Gaussian's centre and width per round, and their step size (pixels)
INNER = 20
LR = 0.1
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


def member_part(n: int, member: tuple[int, int]) -> np.ndarray:
    """Mask (n,) of ensemble member k's own stimuli, ``member=(k, K)``: the k-th of K disjoint
    parts of a seeded permutation (together the parts cover every stimulus once)."""
    k, n_models = member
    perm = np.random.default_rng(0).permutation(n)
    mask = np.zeros(n, dtype=bool)
    mask[perm[np.arange(n) % n_models == k]] = True
    return mask


def _split(n: int, member: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation stimuli: the last 20 % of a seeded permutation validate; for
    ``member=(k, K)`` of an ensemble of K >= 2, the member's own part validates
    (``member_part``: each member is stopped early on different stimuli, together they
    train on all)."""
    if member is not None and member[1] >= 2:
        part = member_part(n, member)
        return np.flatnonzero(~part), np.flatnonzero(part)
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
    # Cholesky (the matrix is SPD): an LU solve (torch.linalg.solve) failed once in MKL's
    # pivoting (DLASWP) on 192-channel features, not reproduced; Cholesky needs no pivots
    chol, _ = torch.linalg.cholesky_ex(g + 0.1 * len(tr) * eye)
    w = torch.cholesky_solve(rhs, chol)  # (P, C, S)
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


def _smooth_penalty(h: int, w: int) -> torch.Tensor:
    """(P, P) penalty matrix of the factorized mask: identity plus ``SMOOTH`` times the squared
    Laplacian (replicate padding), scaled to a mean eigenvalue of 1."""
    eye = torch.eye(h * w, dtype=torch.float64).reshape(-1, 1, h, w)
    lap = F.conv2d(F.pad(eye, (1, 1, 1, 1), mode="replicate"), _LAPLACE.double())
    d = lap.reshape(h * w, h * w).T  # d @ m is the Laplacian of mask m
    r = torch.eye(h * w, dtype=torch.float64) + SMOOTH * d.T @ d
    return r / r.diagonal().mean()


def _ridge(at, yt, av, yv, prior, penalty=None):
    """Per site s, ridge of ``yt[:, s]`` on ``at[s]`` (sites, stimuli, D) with a bias,
    shrunk towards the current weights ``prior`` (S, D): the penalty is
    alpha * (mean eigenvalue of the Gram matrix) * (w - prior)' P (w - prior), P = ``penalty``
    (identity if None), alpha from ``ALPHAS`` by squared error on (``av``, ``yv``); a large
    alpha keeps the current weights. Returns w (S, D), b (S,) and the validation error (S,)."""
    n_sites, _, d = at.shape
    am, ym = at.mean(1), yt.mean(0)
    ac = at - am[:, None]
    act = ac.transpose(1, 2)
    g = (act @ ac).double()  # (S, D, D)
    r = (act @ (yt - ym).T[:, :, None]).double()  # (S, D, 1)
    scale = torch.diagonal(g, dim1=1, dim2=2).mean(1).clamp(min=1e-12)
    pen = torch.eye(d, dtype=torch.float64) if penalty is None else penalty
    lam = torch.tensor(ALPHAS, dtype=torch.float64)[:, None] * scale  # (L, S)
    chol, _ = torch.linalg.cholesky_ex(g + lam[:, :, None, None] * pen)
    rhs = r + lam[:, :, None, None] * (pen @ prior.double()[:, :, None])
    w = torch.cholesky_solve(rhs, chol)[..., 0].float()
    b = ym - (w * am).sum(-1)  # (L, S)
    pred = torch.einsum("snd,lsd->lsn", av, w) + b[:, :, None]  # (L, S, n_val)
    err = (pred - yv.T).pow(2).mean(2)  # (L, S)
    err = torch.nan_to_num(err, nan=float("inf"))
    k = err.argmin(0)
    sites = torch.arange(n_sites)
    return w[k, sites], b[k, sites], err[k, sites]


def _pool(x2: torch.Tensor, n: int, mask: torch.Tensor) -> torch.Tensor:
    """Features (n*C, P) pooled by each site's spatial mask (S, P): (S, n, C)."""
    return (x2 @ mask.T).T.reshape(len(mask), n, -1)


def _contract(xt2: torch.Tensor, n: int, v: torch.Tensor) -> torch.Tensor:
    """Features (n*P, C) contracted with each site's channel weights (S, C): (S, n, P)."""
    return (xt2 @ v.T).T.reshape(len(v), n, -1)


class _Data:
    """Training and validation parts of the standardised features in the two layouts the
    half-steps multiply: (stimuli * C, P) and (stimuli * P, C)."""

    def __init__(self, xn: torch.Tensor, yn: torch.Tensor, tr, va) -> None:
        self.nt, self.nv = len(tr), len(va)
        xt, xv = xn[tr], xn[va]
        self.xt, self.xv = xt.reshape(-1, xn.shape[2]), xv.reshape(-1, xn.shape[2])
        self.xtt = xt.transpose(1, 2).reshape(-1, xn.shape[1])
        self.xvt = xv.transpose(1, 2).reshape(-1, xn.shape[1])
        self.yt, self.yv = yn[tr], yn[va]

    def error(self, mask, v, idx):
        """Validation error (S,) of masks times channel weights, bias fitted on training."""
        pt = (_pool(self.xt, self.nt, mask) * v[:, None]).sum(2)
        pv = (_pool(self.xv, self.nv, mask) * v[:, None]).sum(2)
        return self.bias_and_error(pt, pv, idx)

    def bias_and_error(self, pt, pv, idx):
        """Given predictions without bias on the training (S, nt) and validation (S, nv)
        parts: the validation error (S,) and the bias (S,) fitted on training."""
        b = (self.yt[:, idx].T - pt).mean(1)
        return (pv + b[:, None] - self.yv[:, idx].T).pow(2).mean(1), b


class _Factorized:
    """mask m (S, P) times channel weights v (S, C)."""

    def __init__(self, shape, best, v0) -> None:
        _, h, w = shape
        rows, cols = _grid(h, w)
        d2 = (rows - rows[best][:, None]) ** 2 + (cols - cols[best][:, None]) ** 2
        self.m = torch.exp(-d2 / (2 * 0.5**2))
        self.v = v0.clone()
        self.b = torch.zeros(len(best))
        self.params = [self.m, self.v, self.b]
        self.penalty = _smooth_penalty(h, w)

    def mask(self, idx) -> torch.Tensor:
        return self.m[idx]

    def rounds(self, data: _Data, idx):
        """One round on sites ``idx``: the mask, then the channel weights; yields the
        validation error after each."""
        v = self.v[idx]
        ut, uv = _contract(data.xtt, data.nt, v), _contract(data.xvt, data.nv, v)
        m, b, err = _ridge(ut, data.yt[:, idx], uv, data.yv[:, idx], self.m[idx], self.penalty)
        norm = m.norm(dim=1, keepdim=True).clamp(min=1e-12)
        self.m[idx], self.v[idx], self.b[idx] = m / norm, v * norm, b
        yield err
        m, v = self.m[idx], self.v[idx]
        zt, zv = _pool(data.xt, data.nt, m), _pool(data.xv, data.nv, m)
        self.v[idx], self.b[idx], err = _ridge(zt, data.yt[:, idx], zv, data.yv[:, idx], v)
        yield err

    def summary(self) -> dict:
        return {}


class _Gaussian:
    """a normalised 2-D Gaussian g (S, P) at mu with width sigma times channel weights v."""

    def __init__(self, shape, best, v0) -> None:
        _, h, w = shape
        self.shape = shape
        self.rows, self.cols = _grid(h, w)
        self.mu = torch.stack([self.rows[best], self.cols[best]], 1)
        self.s = torch.full((len(best),), math.log(0.7 - MIN_SIGMA))
        self.v = v0.clone()
        self.b = torch.zeros(len(best))
        self.params = [self.mu, self.s, self.v, self.b]

    def _gauss(self, mu: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        sigma = MIN_SIGMA + s.exp()
        d2 = (self.rows - mu[:, :1]) ** 2 + (self.cols - mu[:, 1:]) ** 2
        g = torch.exp(-d2 / (2 * sigma[:, None] ** 2))
        return g / g.sum(1, keepdim=True)

    def mask(self, idx) -> torch.Tensor:
        return self._gauss(self.mu[idx], self.s[idx])

    def rounds(self, data: _Data, idx):
        """One round on sites ``idx``: the channel weights, then ``INNER`` Adam steps on
        centre and width; yields the validation error after each."""
        g = self.mask(idx)
        zt, zv = _pool(data.xt, data.nt, g), _pool(data.xv, data.nv, g)
        v, self.b[idx], err = _ridge(zt, data.yt[:, idx], zv, data.yv[:, idx], self.v[idx])
        self.v[idx] = v
        yield err
        ut, uv = _contract(data.xtt, data.nt, v), _contract(data.xvt, data.nv, v)
        # the training loss is quadratic in the mask g: g'Ag - 2c'g + const per site
        uc = ut - ut.mean(1, keepdim=True)
        yt = data.yt[:, idx].T
        a = uc.transpose(1, 2) @ uc / data.nt  # (S, P, P)
        c = (uc.transpose(1, 2) @ (yt - yt.mean(1, keepdim=True))[:, :, None]) / data.nt
        p = torch.cat([self.mu[idx], self.s[idx, None]], 1)  # (S, 3): row, col, log width
        m1, m2 = torch.zeros_like(p), torch.zeros_like(p)
        _, h, w = self.shape
        lim = torch.tensor([h - 1.0, w - 1.0])
        for t in range(1, INNER + 1):  # Adam (torch.optim's would import torch._dynamo)
            with torch.enable_grad():
                q = p.clone().requires_grad_()
                g = self._gauss(q[:, :2], q[:, 2])[:, :, None]
                dg = 2 * (a @ g.detach() - c)
                (grad,) = torch.autograd.grad(g, q, dg)
            m1.mul_(0.9).add_(grad, alpha=0.1)
            m2.mul_(0.999).addcmul_(grad, grad, value=0.001)
            p -= LR * (m1 / (1 - 0.9**t)) / ((m2 / (1 - 0.999**t)).sqrt() + 1e-8)
            p[:, :2] = torch.minimum(p[:, :2].clamp(min=0), lim)
        self.mu[idx], self.s[idx] = p[:, :2], p[:, 2]
        g = self._gauss(p[:, :2], p[:, 2])
        pt, pv = (ut @ g[:, :, None])[..., 0], (uv @ g[:, :, None])[..., 0]
        err, self.b[idx] = data.bias_and_error(pt, pv, idx)
        yield err

    def summary(self) -> dict:
        sigma = MIN_SIGMA + self.s.exp()
        row, col, sigma = (t.numpy().astype(float) for t in (self.mu[:, 0], self.mu[:, 1], sigma))
        return {"row": row, "col": col, "sigma": sigma}


def _train(readout, data: _Data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rounds of half-steps on the still-active sites; each site keeps its parameters of
    lowest validation error and stops after ``PATIENCE`` rounds without improving it by
    ``TOL``. Returns each site's best half-step (0: the start) and its validation error at
    the start and at the best."""
    n_sites = data.yt.shape[1]
    every = torch.arange(n_sites)
    start, readout.b[:] = data.error(readout.mask(every), readout.v, every)
    best = start.clone()
    best_step = np.zeros(n_sites, dtype=int)
    kept = [p.clone() for p in readout.params]
    stale = torch.zeros(n_sites, dtype=torch.long)
    active = every
    step = 0
    for _ in range(MAX_ROUNDS):
        improved = torch.zeros(len(active), dtype=torch.bool)
        for err in readout.rounds(data, active):
            step += 1
            better = err < best[active] - TOL
            idx = active[better]
            best[idx] = err[better]
            best_step[idx.numpy()] = step
            for k, p in zip(kept, readout.params):
                k[idx] = p[idx]
            improved |= better
        stale[active] = torch.where(improved, 0, stale[active] + 1)
        active = active[stale[active] < PATIENCE]
        if len(active) == 0:
            break
    for k, p in zip(kept, readout.params):
        p.copy_(k)
    return best_step, start.numpy(), best.numpy()


def fit_readout(
    method: str,
    x: torch.Tensor,
    y: torch.Tensor,
    shape: tuple[int, int, int],
    member: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(W (units, sites), b (sites,), summary) of a ``method`` readout ("factorized" or
    "gaussian") of features ``x`` (stimuli, C*H*W in flat order) of a layer of ``shape``
    (C, H, W) to responses ``y`` (stimuli, sites). The summary holds each site's early
    stopping half-step ("steps", 0 = the starting point), its validation error (standardised
    responses) at the start and at the kept parameters ("val_start", "val_best") and, for
    the Gaussian, its centre ("row", "col") and width ("sigma") in feature-map pixels.
    ``member=(k, K)``: member k of an ensemble of K, validated on its own part (``_split``)."""
    if method not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {method!r}")
    if shape is None:
        raise ValueError(f"method {method!r} needs the layer's (C, H, W) shape")
    check_images(method, len(x))
    shape = tuple(int(s) for s in shape)
    xn, yn, (xm, xs, ym, ys) = _standardise(x, y, shape)
    tr, va = _split(len(x), member)
    with torch.no_grad():
        best, v0 = _best_positions(xn, yn, tr, va)
        readout = (_Factorized if method == "factorized" else _Gaussian)(shape, best, v0)
        steps, start, kept = _train(readout, _Data(xn, yn, tr, va))
        m = readout.mask(torch.arange(len(best))).double()
        wn = readout.v.double()[:, :, None] * m[:, None, :]  # (S, C, P)
        w = wn * ys[:, None, None] / xs[None, :, None]
        b = ys * readout.b.double() + ym - (w * xm).sum((1, 2))
    summary = {"steps": steps, "val_start": start, "val_best": kept, **readout.summary()}
    return w.reshape(len(best), -1).T.float().contiguous(), b.float(), summary
