"""LipSDP-Neuron: a semidefinite upper bound on the L2 Lipschitz constant of an MLP (Fazlyab et al., 2019).

For ``f(x) = W_l phi(W_{l-1} ... phi(W_0 x + b_0) ...) + b_l`` with elementwise activations whose slopes lie
in ``[alpha, beta]``, Theorem 2 of Fazlyab et al. ("Efficient and Accurate Estimation of Lipschitz Constants for
Deep Neural Networks", NeurIPS 2019) states: if for some ``rho >= 0`` and a diagonal ``T >= 0`` (one multiplier per
hidden neuron, the "LipSDP-Neuron" variant)

    M(rho, T) = [A; B]^T [[-2 alpha beta T, (alpha + beta) T], [(alpha + beta) T, -2 T]] [A; B]
                + diag(-rho I_{n_0}, 0, ..., 0, W_l^T W_l)  <=  0,

with ``A = [blkdiag(W_0, ..., W_{l-1}), 0]`` and ``B = [0, I_N]`` (``N`` hidden neurons), then ``sqrt(rho)`` is
an L2 Lipschitz constant of ``f``. Biases do not enter. ``M`` has size ``n_0 + N`` (912 for 784-64-64-10).

In the block variables ``(x_0, z_1, ..., z_l)`` (input, hidden layers), ``M`` is block tridiagonal:

* ``(0, 0)``: ``-rho I - 2 W_0^T diag(alpha_1 beta_1 t_1) W_0``
* ``(k, k)``, ``1 <= k < l``: ``-2 diag(t_k) - 2 W_k^T diag(alpha_{k+1} beta_{k+1} t_{k+1}) W_k``
* ``(l, l)``: ``-2 diag(t_l) + W_l^T W_l``
* ``(k, k-1)``: ``diag((alpha_k + beta_k) t_k) W_{k-1}`` and its transpose at ``(k-1, k)``.

Input reduction (exact): the input enters ``M`` only through ``W_0``. With the thin SVD ``W_0 = U S V^T`` (rank
``r <= n_1``) and the orthogonal change of input basis ``[V, V_perp]``, ``M`` splits into the same matrix with
``W_0`` replaced by ``U S`` (``n_1 x r``) and a block ``-rho I_{n_0 - r}``, which is ``<= 0`` for any ``rho >= 0``.
So the SDP is solved on size ``r + N`` (192 instead of 912 for the MNIST MLP) with the same optimum.

Verification: the solver's ``(rho, T)`` is approximate. We clip ``T`` at 0, rebuild the full ``M`` in float64,
compute the smallest feasible ``rho`` for that ``T`` exactly by a Schur complement on the input block
(``rho_min = lambda_max(K + C^T (-H)^{-1} C)``, ``H`` the hidden block, which must be negative definite), add a
relative margin, and check ``lambda_max(M) <= 0`` by a float64 eigen-decomposition of the full matrix (raising
``rho`` until it holds). The reported ``bound`` is ``sqrt`` of that verified ``rho``; if no verification is possible
``bound`` is ``inf`` (safe for certificates) and ``solver_bound`` keeps the solver's value.

Cost (MNIST MLP 784-64-64-10, 2 shared CPU cores, one thread): the reduced LMI (192) solves in ~8 s / 60 MiB
with CVXOPT and ~20-60 s / 12 MiB with SCS; the full LMI (912) took 500 s / 1 GiB with CVXOPT (same bound
to 1e-9); Clarabel on the reduced LMI passed 7 GB and 10 min (its KKT system holds a dense block of side
n(n+1)/2 per PSD cone). Convolutional networks are out of scope: the Fashion CNN has 25088 + 12544 + 1024
ReLU neurons (and max-pooling, which is not an elementwise slope-restricted map), so its LMI would have size
784 + 38656 = 39440: one dense float64 copy of ``M`` alone is 12.4 GB.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .models import eval_mode

#: Slope intervals ``(alpha, beta)`` of the supported activations: ``alpha <= phi'(s) <= beta``.
ACTIVATION_SLOPES: dict[type, tuple[float, float]] = {
    nn.Sigmoid: (0.0, 0.25), nn.ReLU: (0.0, 1.0), nn.Tanh: (0.0, 1.0),
}

#: Relative margin added to the exact ``rho`` for the solver's ``T`` before the final eigenvalue check.
RHO_MARGIN = 1e-9


@dataclass
class MLPSpec:
    """An MLP as LipSDP sees it: ``weights[k]`` is ``W_k`` ``[n_{k+1}, n_k]`` (float64), ``k = 0..l``;
    ``alphas[k], betas[k]`` are the slope bounds of hidden layer ``k+1`` (``[n_{k+1}]``), ``k = 0..l-1``."""
    weights: list[np.ndarray]
    alphas: list[np.ndarray]
    betas: list[np.ndarray]

    @property
    def hidden_sizes(self) -> list[int]:
        return [w.shape[0] for w in self.weights[:-1]]

    @property
    def lmi_size(self) -> int:
        """Size of the full LMI: ``n_0 + N``."""
        return self.weights[0].shape[1] + sum(self.hidden_sizes)


@dataclass
class LipSDPResult:
    """Result of :func:`lipsdp_bound`.

    ``bound``: the verified upper bound ``L = sqrt(rho)`` on the L2 Lipschitz constant (``inf`` when the
    solver's answer could not be verified); ``solver``: the cvxpy solver used; ``solve_time_s``: wall time of the
    solver call [s]; ``peak_memory_mb``: peak resident memory added during problem construction and solve [MiB];
    ``lmi_size``: size of the full LMI ``n_0 + N``; ``solved_lmi_size``: size actually given to the solver
    (after the input reduction); ``verified``: whether ``lambda_max(M) <= 0`` was checked in float64 for the
    reported ``bound``; ``solver_bound``: ``sqrt`` of the solver's ``rho`` (not verified); ``multipliers``:
    the multipliers ``T`` used for the verified bound ``[N]``; ``status``: the solver's status.
    """
    bound: float
    solver: str
    solve_time_s: float
    peak_memory_mb: float
    lmi_size: int
    verified: bool
    solved_lmi_size: int = 0
    solver_bound: float = math.nan
    multipliers: np.ndarray | None = None
    status: str = ""


# ---------------------------------------------------------------- the network

def _read_weight(layer: nn.Linear) -> np.ndarray:
    """``layer.weight`` as float64 numpy; parametrizations (e.g. spectral norm) are read in eval mode so that
    reading does not run a power-iteration update."""
    with eval_mode(layer):
        with torch.no_grad():
            return layer.weight.detach().cpu().double().numpy().copy()


def mlp_spec(model: nn.Module) -> MLPSpec:
    """Read an ``nn.Sequential`` of ``Flatten`` (ignored), ``Linear`` and :data:`ACTIVATION_SLOPES` activations,
    alternating ``Linear, act, Linear, act, ..., Linear``. Raises ``ValueError`` naming any other layer."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"lipsdp: expected an nn.Sequential MLP, got {type(model).__name__}")
    weights: list[np.ndarray] = []
    alphas: list[np.ndarray] = []
    betas: list[np.ndarray] = []
    expect_linear = True
    for name, layer in model.named_children():
        if isinstance(layer, nn.Flatten):
            continue
        if isinstance(layer, nn.Linear):
            if not expect_linear:
                raise ValueError(f"lipsdp: layer {name!r} (Linear) follows a Linear layer without an activation")
            weights.append(_read_weight(layer))
            expect_linear = False
        elif type(layer) in ACTIVATION_SLOPES:
            if expect_linear:
                raise ValueError(f"lipsdp: activation {name!r} ({type(layer).__name__}) does not follow a Linear layer")
            a, b = ACTIVATION_SLOPES[type(layer)]
            n = weights[-1].shape[0]
            alphas.append(np.full(n, a))
            betas.append(np.full(n, b))
            expect_linear = True
        else:
            raise ValueError(f"lipsdp: unsupported layer {name!r} ({type(layer).__name__}); LipSDP here handles "
                             f"Flatten, Linear and {', '.join(t.__name__ for t in ACTIVATION_SLOPES)}")
    if not weights or expect_linear:
        raise ValueError("lipsdp: the network must start and end with a Linear layer")
    return MLPSpec(weights, alphas, betas)


def reduce_input(spec: MLPSpec) -> MLPSpec:
    """The exact input reduction: ``W_0 = U S V^T`` replaced by ``U S`` ``[n_1, r]`` (``r`` = numerical rank).
    The LMI of the result is feasible for ``(rho, T)`` iff the original one is (for ``rho >= 0``)."""
    u, s, _ = np.linalg.svd(spec.weights[0], full_matrices=False)
    r = max(1, int((s > s[0] * 1e-13).sum())) if s.size and s[0] > 0 else 1
    return MLPSpec([u[:, :r] * s[:r]] + spec.weights[1:], spec.alphas, spec.betas)


# ---------------------------------------------------------------- the LMI in float64

def _split(t: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(t, np.cumsum(sizes)[:-1]) if sizes else []


def lmi_matrix(spec: MLPSpec, rho: float, t: np.ndarray) -> np.ndarray:
    """``M(rho, T)`` of the module docstring in float64, ``T = diag(t)``; shape ``[n_0 + N, n_0 + N]``."""
    w = spec.weights
    ts = _split(np.asarray(t, dtype=np.float64), spec.hidden_sizes)
    sizes = [w[0].shape[1]] + spec.hidden_sizes
    offs = np.concatenate([[0], np.cumsum(sizes)])
    m = np.zeros((offs[-1], offs[-1]))

    def blk(i: int, j: int) -> np.ndarray:
        return m[offs[i]:offs[i + 1], offs[j]:offs[j + 1]]

    blk(0, 0)[...] -= rho * np.eye(sizes[0])
    for k in range(1, len(sizes)):  # hidden layer k has multipliers ts[k-1], input weight w[k-1]
        tk, ak, bk, wk = ts[k - 1], spec.alphas[k - 1], spec.betas[k - 1], w[k - 1]
        blk(k - 1, k - 1)[...] -= 2 * wk.T @ ((ak * bk * tk)[:, None] * wk)
        off = ((ak + bk) * tk)[:, None] * wk
        blk(k, k - 1)[...] += off
        blk(k - 1, k)[...] += off.T
        blk(k, k)[...] -= 2 * np.diag(tk)
    blk(len(sizes) - 1, len(sizes) - 1)[...] += w[-1].T @ w[-1]
    return m


def min_feasible_rho(spec: MLPSpec, t: np.ndarray) -> float:
    """The smallest ``rho`` with ``M(rho, diag(t)) <= 0`` for the given ``t`` (Schur complement on the input
    block): ``lambda_max(K + C^T (-H)^{-1} C)`` where ``M(0, T) = [[K, C^T], [C, H]]``. Returns ``inf`` when
    the hidden block ``H`` is not negative definite (no ``rho`` works)."""
    m = lmi_matrix(spec, 0.0, t)
    n0 = spec.weights[0].shape[1]
    k, c, h = m[:n0, :n0], m[n0:, :n0], m[n0:, n0:]
    if h.size == 0:
        return max(0.0, float(np.linalg.eigvalsh(k)[-1]))
    try:
        chol = np.linalg.cholesky(-h)
    except np.linalg.LinAlgError:
        return math.inf
    y = np.linalg.solve(chol, c)  # L^{-1} C, so C^T (-H)^{-1} C = Y^T Y
    return max(0.0, float(np.linalg.eigvalsh(k + y.T @ y)[-1]))


def verify_bound(spec: MLPSpec, t: np.ndarray, max_tries: int = 60) -> tuple[float, bool]:
    """A ``rho`` for which ``M(rho, diag(t)) <= 0`` is checked in float64: the exact :func:`min_feasible_rho`
    plus a relative margin :data:`RHO_MARGIN`, raised until the float64 ``lambda_max`` of the full ``M`` is
    ``<= 0``. Returns ``(rho, True)``, or ``(inf, False)`` when no ``rho`` works for this ``t``.

    Any ``t >= 0`` gives a valid bound this way; the solver's ``t`` only makes it (nearly) the smallest one,
    and the solver's ``rho`` is not used at all."""
    rho_v = min_feasible_rho(spec, t)
    if not math.isfinite(rho_v):
        return math.inf, False
    rho_v = max(rho_v * (1 + RHO_MARGIN), np.finfo(float).tiny)
    for _ in range(max_tries):
        lam = float(np.linalg.eigvalsh(lmi_matrix(spec, rho_v, t))[-1])
        if lam <= 0:
            return rho_v, True
        rho_v += max(2 * lam, rho_v * RHO_MARGIN)
    return math.inf, False


def _verify_solver_multipliers(spec: MLPSpec, t: np.ndarray) -> tuple[float, bool, np.ndarray]:
    """:func:`verify_bound` on the solver's ``t`` clipped at 0; if that fails (a multiplier at ~0 leaves the
    hidden block singular), once more with every multiplier raised to at least ``1e-8 max(t)``."""
    t = np.clip(t, 0.0, None)
    rho, ok = verify_bound(spec, t)
    if not ok and t.size and t.max() > 0:
        t = np.maximum(t, 1e-8 * t.max())
        rho, ok = verify_bound(spec, t)
    return rho, ok, t


# ---------------------------------------------------------------- the SDP

def _build_problem(spec: MLPSpec):
    """cvxpy problem ``min rho s.t. M(rho, T) <= 0, T >= 0``; returns ``(problem, rho, t)``."""
    import cvxpy as cp

    w = spec.weights
    hs = spec.hidden_sizes
    rho = cp.Variable(nonneg=True)
    t = cp.Variable(sum(hs), nonneg=True) if hs else None
    ts = [t[int(a):int(a) + n] for a, n in zip(np.concatenate([[0], np.cumsum(hs)[:-1]]), hs)] if hs else []
    sizes = [w[0].shape[1]] + hs
    nb = len(sizes)
    blocks: list[list] = [[np.zeros((sizes[i], sizes[j])) for j in range(nb)] for i in range(nb)]
    blocks[0][0] = -rho * np.eye(sizes[0])
    for k in range(1, nb):
        tk, ak, bk, wk = ts[k - 1], spec.alphas[k - 1], spec.betas[k - 1], w[k - 1]
        if np.any(ak * bk != 0):
            blocks[k - 1][k - 1] = blocks[k - 1][k - 1] - 2 * wk.T @ cp.diag(cp.multiply(ak * bk, tk)) @ wk
        off = cp.diag(cp.multiply(ak + bk, tk)) @ wk
        blocks[k][k - 1] = off
        blocks[k - 1][k] = off.T
        blocks[k][k] = -2 * cp.diag(tk)
    blocks[-1][-1] = blocks[-1][-1] + w[-1].T @ w[-1]
    m = cp.bmat(blocks)
    constraints = [(m + m.T) / 2 << 0]
    return cp.Problem(cp.Minimize(rho), constraints), rho, t


#: Largest solved LMI size for which ``solver="auto"`` uses Clarabel. Clarabel's KKT system holds a dense
#: block of side n(n+1)/2 per PSD cone (n^4 memory): at n = 192 it grew past 7 GB and ran > 10 min.
CLARABEL_MAX_SIZE = 64


def _pick_solver(solver: str, size: int = 0) -> str:
    """``"auto"``: Clarabel (interior point) for LMIs of size <= :data:`CLARABEL_MAX_SIZE`; above, CVXOPT
    (interior point on the m x m Schur complement, m = number of multipliers) if installed, else SCS."""
    import cvxpy as cp

    installed = cp.installed_solvers()
    if solver == "auto":
        order = ("CLARABEL", "CVXOPT", "SCS") if size <= CLARABEL_MAX_SIZE else ("CVXOPT", "SCS", "CLARABEL")
        for s in order:
            if s in installed:
                return s
        raise RuntimeError(f"lipsdp: no SDP solver installed (have {installed}); pip install cvxopt, scs or clarabel")
    if solver.upper() not in installed:
        raise ValueError(f"lipsdp: solver {solver!r} not installed; installed: {installed}")
    return solver.upper()


def _rss_mb() -> tuple[float, bool]:
    """Current resident memory [MiB] after resetting the peak counter (Linux); ``(value, reset_ok)``."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM (peak RSS) to the current RSS
        ok = True
    except OSError:
        ok = False
    return _status_kb("VmRSS") / 1024, ok


def _status_kb(field: str) -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    import resource
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def lipsdp_bound(model: nn.Module, solver: str = "auto", reduce: bool = True, **solver_kwargs) -> LipSDPResult:
    """LipSDP-Neuron upper bound on the L2 Lipschitz constant of an MLP (see the module docstring).

    ``model``: ``nn.Sequential`` of ``Flatten``/``Linear``/``Sigmoid``/``ReLU``/``Tanh`` (``ValueError`` otherwise).
    ``solver``: ``"auto"`` (see :func:`_pick_solver`) or a cvxpy solver name (``"CLARABEL"``, ``"SCS"``,
    ``"CVXOPT"``). ``reduce``: solve the exactly reduced LMI (input block of size ``rank(W_0)``) instead of the
    full one. ``solver_kwargs`` go to ``problem.solve``. The returned ``bound`` is verified in float64 on the
    full LMI; it is ``inf`` (with ``verified=False``) when the solver fails or its answer cannot be verified.
    """
    import cvxpy as cp

    spec = mlp_spec(model)
    solved = reduce_input(spec) if reduce else spec
    name = _pick_solver(solver, solved.lmi_size)
    rss0, peak_ok = _rss_mb()
    problem, rho, t = _build_problem(solved)
    start = time.perf_counter()
    try:
        problem.solve(solver=name, **solver_kwargs)
        status = str(problem.status)
    except cp.error.SolverError as err:
        status = f"solver error: {err}"
    elapsed = time.perf_counter() - start
    peak = (_status_kb("VmHWM") / 1024 - rss0) if peak_ok else math.nan
    rho_s = float(rho.value) if rho.value is not None and status != "infeasible" else math.nan
    n_t = sum(spec.hidden_sizes)
    t_raw = np.zeros(n_t) if t is None or t.value is None else np.asarray(t.value, dtype=np.float64).reshape(n_t)
    if math.isfinite(rho_s):
        rho_v, ok, t_val = _verify_solver_multipliers(spec, t_raw)
    else:
        rho_v, ok, t_val = math.inf, False, t_raw
    return LipSDPResult(bound=math.sqrt(rho_v), solver=name, solve_time_s=elapsed, peak_memory_mb=peak,
                        lmi_size=spec.lmi_size, verified=ok, solved_lmi_size=solved.lmi_size,
                        solver_bound=math.sqrt(max(rho_s, 0.0)) if math.isfinite(rho_s) else math.nan,
                        multipliers=t_val, status=status)


# ---------------------------------------------------------------- without an SDP solver

def _schur_rho(ws: list[torch.Tensor], spec: MLPSpec, t: torch.Tensor) -> torch.Tensor | None:
    """:func:`min_feasible_rho` in torch float64, differentiable in ``t``; ``None`` when the hidden block is
    not negative definite. ``ws``: the spec's weights as tensors."""
    n0, hs = ws[0].shape[1], spec.hidden_sizes
    ts = torch.split(t, hs)
    sizes = [n0] + hs
    offs = [0] + list(np.cumsum(sizes))
    blocks = [[torch.zeros(sizes[i], sizes[j], dtype=t.dtype) for j in range(len(sizes))] for i in range(len(sizes))]
    for k in range(1, len(sizes)):
        ab = torch.as_tensor(spec.alphas[k - 1] * spec.betas[k - 1])
        apb = torch.as_tensor(spec.alphas[k - 1] + spec.betas[k - 1])
        wk, tk = ws[k - 1], ts[k - 1]
        blocks[k - 1][k - 1] = blocks[k - 1][k - 1] - 2 * wk.T @ ((ab * tk)[:, None] * wk)
        blocks[k][k - 1] = (apb * tk)[:, None] * wk
        blocks[k - 1][k] = blocks[k][k - 1].T
        blocks[k][k] = blocks[k][k] - 2 * torch.diag(tk)
    blocks[-1][-1] = blocks[-1][-1] + ws[-1].T @ ws[-1]
    m = torch.cat([torch.cat(r, dim=1) for r in blocks], dim=0)  # M(0, T)
    k_, c, h = m[:n0, :n0], m[n0:, :n0], m[n0:, n0:]
    chol, info = torch.linalg.cholesky_ex(-h)
    if int(info) != 0:
        return None
    y = torch.linalg.solve_triangular(chol, c, upper=False)
    return torch.linalg.eigvalsh(k_ + y.T @ y)[-1].clamp_min(0.0)


def _feasible_layer_multipliers(spec: MLPSpec) -> np.ndarray:
    """One multiplier per hidden layer (repeated over its neurons) for which the hidden block of ``M`` is
    negative definite, from norms alone: eliminating the layers from the last one back, layer ``l`` needs
    ``2 t_l > ||W_l||^2`` and layer ``k`` needs ``2 t_k > ((alpha + beta) t_{k+1} ||W_k||)^2 / e_{k+1}`` where
    ``e`` is what the layer after it kept; each is met with a factor 2, so ``e_k = t_k``. ``[N]``."""
    w, hs = spec.weights, spec.hidden_sizes
    ts = [0.0] * len(hs)
    ts[-1] = max(float(np.linalg.norm(w[-1], 2)) ** 2, 1e-12)
    for k in range(len(hs) - 2, -1, -1):  # hidden layer k+1 feeds layer k+2 through w[k+1]
        g = float(np.max(np.abs(spec.alphas[k + 1] + spec.betas[k + 1])))
        ts[k] = max((g * ts[k + 1] * float(np.linalg.norm(w[k + 1], 2))) ** 2 / ts[k + 1], 1e-12)
    return np.concatenate([np.full(n, t) for n, t in zip(hs, ts)])


def lipsdp_first_order(model: nn.Module, steps: int = 300, lr: float = 0.05) -> LipSDPResult:
    """LipSDP-Neuron's bound without an SDP solver, for networks too large for one (e.g. a CNN's fully
    connected tail, 3136-1024-10: an LMI of size 4160).

    For fixed multipliers ``T = diag(t)`` the smallest feasible ``rho`` is exact (:func:`min_feasible_rho`), and
    *any* ``t >= 0`` gives a valid bound; the SDP only finds the best ``t``. Here ``t`` is found by first-order
    descent instead: a feasible start (:func:`_feasible_layer_multipliers`) scaled by the best factor on a grid,
    then Adam on ``log t``
    (``steps`` steps, learning rate ``lr``; a step that leaves the hidden block indefinite is undone and the
    rate halved), keeping the best ``t`` seen. The result is verified in float64 on the full LMI exactly as
    :func:`lipsdp_bound`'s is (:func:`verify_bound`), so it is sound; it is at least the SDP's optimum, and
    equal to it only if descent reaches the optimal ``t``. Needs no cvxpy. ``solve_time_s``: the descent's
    wall time [s]; ``status``: the steps taken and the best ``rho`` (before verification) after every quarter
    of them, which shows whether more steps would still gain."""
    spec = mlp_spec(model)
    solved = reduce_input(spec)
    ws = [torch.from_numpy(w) for w in solved.weights]
    start = time.perf_counter()
    n_t = sum(spec.hidden_sizes)
    rho_of = lambda t: _schur_rho(ws, solved, t)
    with torch.no_grad():
        t0 = torch.from_numpy(_feasible_layer_multipliers(solved))
        vals = [(r.item(), f) for f in (2.0 ** (i / 2) for i in range(-20, 21))
                if (r := rho_of(f * t0)) is not None]
        if not vals:
            raise ValueError("lipsdp_first_order: found no feasible multipliers (weights not finite?)")
        best_rho, f = min(vals)
    best_t = f * t0
    s = best_t.log().requires_grad_(True)
    opt = torch.optim.Adam([s], lr=lr)
    taken, trace = 0, {0: best_rho}  # the best rho after so many steps: does the descent still gain?
    for i in range(steps):
        if i and i % max(1, steps // 4) == 0:
            trace[i] = best_rho
        prev = s.detach().clone()
        rho = rho_of(s.exp())
        if rho is None:  # the last step left the feasible region: undo it, smaller steps
            with torch.no_grad():
                s.copy_(best_t.log())
            for g in opt.param_groups:
                g["lr"] /= 2
            continue
        if rho.item() < best_rho:
            best_rho, best_t = rho.item(), prev.exp()
        opt.zero_grad()
        rho.backward()
        opt.step()
        taken += 1
    trace[steps] = best_rho
    elapsed = time.perf_counter() - start
    t_val = best_t.numpy()
    rho_v, ok = verify_bound(spec, t_val)
    return LipSDPResult(bound=math.sqrt(rho_v), solver="first-order (Adam on log T)", solve_time_s=elapsed,
                        peak_memory_mb=math.nan, lmi_size=spec.lmi_size, verified=ok,
                        solved_lmi_size=solved.lmi_size, solver_bound=math.sqrt(best_rho), multipliers=t_val,
                        status=f"{taken} of {steps} steps; best rho after " + ", ".join(
                            f"{k}: {v:.6g}" for k, v in trace.items()))
