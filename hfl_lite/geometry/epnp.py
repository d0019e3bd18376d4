"""EPnP (Lepetit, Moreno-Noguer, Fua, IJCV 2009), batched torch, plus a batched RANSAC.

Given object points ``X_i`` (metres, object frame), their pixel observations ``x_i`` and the
intrinsics ``K``, find ``R, t`` with ``x_i ~ project(K (R X_i + t))``. EPnP writes every point
as a weighted sum of four virtual *control points* ``c_j``, so the unknowns shrink to the twelve
camera coordinates of the control points:

1. Control points: the weighted centroid ``c_0`` and ``c_k = c_0 + L e_k``, with ``L`` the
   Cholesky factor of the points' weighted covariance. In the whitened coordinates
   ``a_i = L^-1 (X_i - c_0)`` a camera point is ``c_0 + sum_k a_ik (c_k - c_0)``.
2. The data enter only through weighted moments: the sums over the points of ``w_i f_i p_i``
   for ``f = (1, u, v, u^2 + v^2)`` (normalised image coordinates) and the products ``p`` of
   the centred point coordinates (one batched matrix product); whitening is then a 3 x 3
   congruence per problem, and nothing after this step grows with N.
3. Each correspondence gives two linear equations in the 12 unknowns (``M x = 0``). For given
   depth coordinates the best x and y coordinates follow linearly, which leaves a
   4-dimensional subspace holding the null space of ``M`` and the 4 x 4 matrix ``S`` of the
   remaining algebraic error. Its generalised eigenvectors (metric of the control points),
   from the smallest eigenvalue up, are approximated by one shift-and-invert step and a
   Cholesky QR factorisation: they only seed the starting points of step 4.
4. The betas come from the six control-point distances, which a rigid motion preserves:
   ``|c^cam_a - c^cam_b|^2 = |c^w_a - c^w_b|^2``. Four starting points (the paper's closed
   form for one kernel vector and its linearised systems for two and three; for four, only
   the products with ``beta_1`` are kept) each take two Gauss-Newton steps on the six quadratic
   equations over all four betas (ten for N = 4), are placed rigidly (the rotation nearest
   their whitened camera displacements, by Newton-Schulz steps, with the object's thinnest
   axis flipped where they are a mirror image, which noise can make of a thin point set) and
   scored by the algebraic error ``|M x|^2`` of their control points (the depth-weighted
   reprojection error); the best one takes ``gauss_newton_iters`` more steps.
5. Depth sign fixed (points in front of the camera), then ``R, t`` by weighted rigid
   Procrustes of all points, from the second moments again: the rotation is the polar factor
   of the 3 x 3 cross-covariance, by scaled Newton steps, with the reflection case solved
   exactly (the SVD solution ``U diag(1, 1, -1) V^T``, without an SVD).
6. Optionally (``refine_iters > 0``) a few Gauss-Newton steps on the pose itself minimise
   the weighted reprojection error (the maximum-likelihood pose under Gaussian pixel noise).

Speed: the cost of a batched solver on a CPU is the number of tensor operations, each of
which costs microseconds however small it is, not the arithmetic. Every step here is a
fixed, small number of operations over the whole batch: element-wise products and sums of
small matrices stored with the batch as the last (contiguous) dimension, one batched LAPACK
call for each linear solve, no Python loop over problems or iterations of unknown count, no
eigen- or singular-value decomposition (iterative per matrix in LAPACK). For batches of
ordinary size the solver runs on one CPU thread: more threads only add synchronisation to
such short operations, and on a busy machine each of them can wait for a time slice.
:func:`epnp_ransac` counts, for each chunk of its search, the correspondences it scores at once
(samples x hypotheses x points): the chunks above the same limit run on the caller's threads
(compiled, at batch 1024 and 210 votes, two threads took 11 ms a chunk where one took 18, and
the whole search kept that lead under a competing load). The solver has no data-dependent
branch and never copies a value to the host, so a GPU can replay it as one CUDA graph
(``epnp(..., cuda_graph=True)``, :mod:`hfl_lite.geometry.graphs`), and ``torch.compile`` can
fuse its operations into a few loops of generated code (``epnp(..., compiled=True)``,
:mod:`hfl_lite.geometry.compiled`), compiled once per process.
Compiled, the small symmetric positive definite systems are solved by Cholesky factorisations
written out element by element instead of LAPACK calls, so that nothing interrupts the
generated loops; sums over a matrix's few entries are written out as additions and the
per-problem choices (the best starting point, the adjugate's longest column) as selects
(TorchInductor made each such reduction a loop and a stored buffer of its own, and loaded a
gather's values lane by lane in every consumer); unsolvable problems keep their own values
until the fallback replaces them (the dummy problem is there for gradients, which a compiled call
has none of); the per-point data lie points first and batch last, so that each moment is a
sum over the points in loops that run over the batch in vectors (no matrix product); and
:func:`epnp_ransac` compiles each chunk of its search whole (drawing, fitting and scoring the
hypotheses, each score a sum of errors that are never stored) and the reprojection errors after
each refit (boolean masks stay out of the generated code, which read and wrote them one value at
a time). The compiled solver's inputs are laid out and cleaned of unusable points by a few
eager operations first (:func:`_rows`): inside the graph, TorchInductor would read every
problem's points and intrinsics with strided loads and test each value again in every loop over
the points (with the moments, a third of the generated code's time at batch 1024); inputs with
nothing to clean, the usual case, skip the cleaning. The
generated code allocates its buffers on every call: see :mod:`hfl_lite.geometry.compiled` for
the allocator setting that keeps them from being faulted in afresh each time.

All the arithmetic runs in float64 (the results come back in the input dtype).
Correspondences with a zero weight or a non-finite value are ignored. A sample that cannot be
solved (fewer than ``min_points`` usable points, nearly collinear or planar object points,
nearly coincident or collinear image points, a bad ``K``) gets the reference code's fallback
``R = I, t = (0, 0, 1)`` and ``valid = False``; it is solved as a harmless dummy problem
internally so that it never disturbs the batch or its gradients.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from hfl_lite.threads import cpu_threads

from .camera import project_points, transform_points
from .compiled import call_compiled
from .graphs import cached_replay
from .rotations import axis_angle_to_matrix

__all__ = ["PoseResult", "epnp", "epnp_ransac", "random_pnp_problems"]

# Object points count as degenerate (collinear / planar) when their smallest principal
# variance, estimated as det(C) / (sum of the 2 x 2 principal minors of C) (between a third of
# it and all of it), is below this ratio squared times the total variance trace(C); image
# points likewise (coincident / collinear), with their exact 2 x 2 eigenvalues.
MIN_SPREAD_RATIO = 1e-3

# Up to this many correspondences (batch x points; for a RANSAC chunk, samples x hypotheses x
# points) the solver runs on one CPU thread.
SINGLE_THREAD_POINTS = 1 << 20

# Rotation fits: Newton-Schulz steps to the rotation nearest the whitened camera displacements
# of the control points, enough to rank candidates; Newton steps to the polar factor of the
# weighted cross-covariance (the Procrustes rotation) for the final pose, enough for point sets
# whose principal spreads differ by the largest factor the spread test lets through.
_SCORE_POLAR_STEPS = 2
_POLAR_STEPS = 9
# Gauss-Newton steps every candidate takes before they are compared: two, enough to tell the
# right basin from a mirror image; ten in the minimal case N = 4, whose null space is
# four-dimensional and whose starting points are far from the solution.
_SHARED_STEPS = 2
_SHARED_STEPS_MINIMAL = 10
# Gauss-Newton steps the chosen candidate takes after them (epnp's default).
_GAUSS_NEWTON_ITERS = 3

# Metric of the control points over (d_0, d_1, d_2, d_3), a camera point being
# d_0 + sum_k a_k d_k (c_0 = d_0, c_k = d_0 + d_k): |c_0|^2 + ... + |c_3|^2 = d^T P d per axis.
_METRIC = ((4.0, 1.0, 1.0, 1.0), (1.0, 1.0, 0.0, 0.0), (1.0, 0.0, 1.0, 0.0), (1.0, 0.0, 0.0, 1.0))
# Entries (row-major positions in a 4 x 4 matrix) whose products beta_k beta_l the linearised
# distance equations treat as unknowns: b11, b12, b13, b14, b22, b23, b33; and the unknowns of
# the systems for two and three kernel vectors and of the one for four (products with beta_1).
_PRODUCTS = (0, 1, 2, 3, 5, 6, 10)
_SYSTEMS = ((0, 1, 4), (0, 1, 2, 4, 5, 6), (0, 1, 2, 3))


class PoseResult(NamedTuple):
    """Object-to-camera pose per sample: ``X_cam = R X_obj + t``.

    ``R [B, 3, 3]``, ``t [B, 3]`` (metres), ``valid [B]`` bool (False: fallback pose).
    """

    R: torch.Tensor
    t: torch.Tensor
    valid: torch.Tensor


def _check_inputs(points_3d, points_2d, K, weights, name):
    if points_3d.ndim != 3 or points_3d.shape[-1] != 3:
        raise ValueError(f"{name}: points_3d must be [B, N, 3], got {tuple(points_3d.shape)}")
    B, N = points_3d.shape[:2]
    if points_2d.shape != (B, N, 2):
        raise ValueError(f"{name}: points_2d must be [B, N, 2] = {(B, N, 2)}, got {tuple(points_2d.shape)}")
    if K.shape != (B, 3, 3):
        raise ValueError(f"{name}: K must be [B, 3, 3] = {(B, 3, 3)}, got {tuple(K.shape)}")
    if weights is not None and weights.shape != (B, N):
        raise ValueError(f"{name}: weights must be [B, N] = {(B, N)}, got {tuple(weights.shape)}")


def _work_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _fallback(B: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    R = torch.eye(3, dtype=dtype, device=device).expand(B, 3, 3).clone()
    t = torch.zeros(B, 3, dtype=dtype, device=device)
    t[:, 2] = 1
    return R, t


def _dummy_problem(N: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed well-posed problem (points ``[N, 3]``, normalised observations ``[N, 2]``)
    that stands in for unsolvable samples: a spiral of points 1 m in front of the camera."""
    i = torch.arange(N, dtype=dtype, device=device)
    X = torch.stack([0.05 * torch.cos(2.4 * i), 0.05 * torch.sin(2.4 * i), 0.1 * (i / max(N - 1, 1)) - 0.05], -1)
    xn = X[:, :2] / (X[:, 2:] + 1.0)
    return X, xn


def _threads_for(device: torch.device, points: int) -> int | None:
    """One CPU thread for problems of ordinary size (see the module docstring); None elsewhere."""
    return 1 if device.type == "cpu" and points <= SINGLE_THREAD_POINTS else None


def _eager_cache(fn):
    """``functools.lru_cache`` for eager calls; under ``torch.compile`` ``fn`` is traced afresh
    (its tensors become constants of the compiled graph; Dynamo would warn about the cache)."""
    cached = functools.lru_cache(maxsize=16)(fn)

    @functools.wraps(fn)
    def call(*args):
        return fn(*args) if torch.compiler.is_compiling() else cached(*args)
    return call


@_eager_cache
def _constants(dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """The solver's constant tensors on a device (made once per dtype and device)."""
    def tensor(values, dt=dtype):
        return torch.tensor(values, dtype=dt, device=device)

    return {"metric": tensor(_METRIC).unsqueeze(-1), "eye3": torch.eye(3, dtype=dtype, device=device),
            "t_fallback": tensor([[0.0], [0.0], [1.0]]), "distinct": torch.diag(tensor([1.0, 2.0, 3.0])).unsqueeze(-1),
            "products": tensor(_PRODUCTS, torch.long),
            "product_scale": tensor([1.0 if i in (0, 5, 10, 15) else 2.0 for i in _PRODUCTS]).view(1, -1, 1)}


@functools.lru_cache(maxsize=16)  # called eagerly only: a compiled call uses no dummy problem
def _dummy_moments(N: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Moments (see :func:`_moments`) of :func:`_dummy_problem` with unit weights."""
    X, xn = _dummy_problem(N, dtype, device)
    return _moments(X.T.unsqueeze(-1), xn.T.unsqueeze(-1), torch.ones(N, 1, dtype=dtype, device=device), False)


def _moments(X: torch.Tensor, xn: torch.Tensor, w: torch.Tensor, by_sums: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted moments of the correspondences about the weighted centroid of the points.

    ``X [3, N, B]`` (metres), ``xn [2, N, B]`` (normalised image coordinates), ``w [N, B]``
    (>= 0; all zero gives zero moments), coordinates first and batch last. Returns
    ``Mt [4, 15, B]`` and the centroids ``c0 [3, B]``: ``Mt[f, p] = sum_i w_i f_i p_i / sum_i w_i`` for
    ``f = (1, u, v, u^2 + v^2)`` and ``p = (1, x, y, z, xx, xy, xz, yx, yy, yz, zx, zy, zz, u, v)``
    (points relative to ``c0``, normalised observations): one batched matrix product, or, with
    ``by_sums`` (for ``torch.compile``), each distinct moment as a sum over the points of a
    product of per-point expressions that are never stored: TorchInductor computes them all in
    one pass over the points, in loops that run over the batch (the contiguous dimension) in
    vectors (stacked first, the 15 products and 4 factors were stored and read back for each
    moment, which took twice as long).
    """
    wn = w / _weight_sums(w)
    c0 = (X * wn).sum(1)
    x, y, z = X - c0.unsqueeze(1)
    u, v = xn
    xy, xz, yz = x * y, x * z, y * z
    f = [wn, wn * u, wn * v, wn * torch.addcmul(u * u, v, v)]
    if by_sums:
        p = [None, x, y, z, x * x, xy, xz, None, y * y, yz, None, None, z * z, u, v]
        rows = []
        for fk in f:
            sums = [fk.sum(0) if q is None else (fk * q).sum(0) for q in p]
            sums[7], sums[10], sums[11] = sums[5], sums[6], sums[9]  # the symmetric products
            rows.append(torch.stack(sums))
        return torch.stack(rows), c0
    p = torch.stack([torch.ones_like(x), x, y, z, x * x, xy, xz, xy, y * y, yz, xz, yz, z * z, u, v])  # [15, N, B]
    return torch.bmm(torch.stack(f).permute(2, 0, 1), p.permute(2, 1, 0)).permute(1, 2, 0).contiguous(), c0


def _weight_sums(w: torch.Tensor) -> torch.Tensor:
    """Sums ``[B]`` of the weights ``w [N, B]`` (>= 0), kept positive: a sample without a usable
    point (all weights zero, solved as a dummy problem) gets zero weights after normalisation
    rather than NaN, in its values and its gradients."""
    return w.sum(0).clamp_min(torch.finfo(w.dtype).tiny)


def _spread_ok(Mt: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: object points neither collinear nor planar, image points neither
    coincident nor collinear (see ``MIN_SPREAD_RATIO``), from the moments ``Mt [4, 15, B]``."""
    c00, c01, c02, _, c11, c12, _, _, c22 = Mt[0, 4:13]
    minor0, minor1, minor2 = c11 * c22 - c12 * c12, c00 * c22 - c02 * c02, c00 * c11 - c01 * c01
    det = c00 * minor0 - c01 * (c01 * c22 - c12 * c02) + c02 * (c01 * c12 - c11 * c02)
    trace = c00 + c11 + c22
    minors = minor0 + minor1 + minor2
    r2 = MIN_SPREAD_RATIO ** 2
    # det / minors estimates the smallest principal variance (to a factor of 3); the test on the
    # minors only guards that estimate against rounding, for points on a line
    spread = (trace > 1e-20) & (minors > r2 * trace * trace) & (det > r2 * trace * minors)
    mu, mv = Mt[0, 13], Mt[0, 14]
    a, b, c = Mt[1, 13] - mu * mu, Mt[1, 14] - mu * mv, Mt[2, 14] - mv * mv
    half_gap = (0.25 * (a - c) ** 2 + b * b).sqrt()
    lam_max, lam_min = 0.5 * (a + c) + half_gap, 0.5 * (a + c) - half_gap
    return spread & (lam_max > 1e-12) & (lam_min > r2 * lam_max)


def _sum(t: torch.Tensor, dims: int | tuple[int, ...]) -> torch.Tensor:
    """``t.sum(dims)`` over a few entries (the small dimensions of the solver's matrices, not
    the points): under ``torch.compile`` written out as additions, which TorchInductor fuses
    into their producers and consumers (a reduction is a loop and a stored buffer of its own)."""
    if not torch.compiler.is_compiling():
        return t.sum(dims)
    for d in sorted((d % t.ndim for d in (dims if isinstance(dims, tuple) else (dims,))), reverse=True):
        parts = t.unbind(d)
        t = parts[0]
        for part in parts[1:]:
            t = t + part
    return t


def _pick(t: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """The entries of ``t`` at ``index [B]`` (one per problem; batch last) along its small
    dimension ``dim``, kept with size one: a cascade of selects, which TorchInductor computes in
    vectors (a gather there loads every lane on its own, again in each consumer)."""
    t = t.movedim(dim, 0)
    out = t[-1:]
    for i in reversed(range(t.shape[0] - 1)):
        out = torch.where(index == i, t[i:i + 1], out)
    return out.movedim(0, dim)


def _mm(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Products of stacks of small matrices stored batch last: ``A [..., n, m, B]`` times
    ``B [..., m, k, B]`` -> ``[..., n, k, B]`` (leading dimensions broadcast). An element-wise
    product and a sum over the whole stack: two vectorised operations serve every problem,
    where a batched BLAS call would pay per matrix."""
    return _sum(A.unsqueeze(-2) * B.unsqueeze(-4), -3)


def _solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``A^-1 b`` for stacks stored batch last (``A [..., n, n, B]`` symmetric positive definite,
    as every system of the solver is, ``b [..., n, m, B]``). Eagerly one batched LAPACK solve
    (without the error check, so without host synchronisation); under ``torch.compile`` the
    Cholesky factorisation and substitutions written out element by element, which TorchInductor
    fuses into the surrounding loops (a LAPACK call there costs a call per matrix and splits the
    generated code)."""
    if not torch.compiler.is_compiling():
        return torch.linalg.solve_ex(A.movedim(-1, 0), b.movedim(-1, 0))[0].movedim(0, -1)
    L, inv_diag = _cholesky_rows(A)
    y = _lower_solve_rows(L, inv_diag, list(b.unbind(-3)))
    return torch.stack(_lower_transposed_solve_rows(L, inv_diag, y), -3)


def _cholesky_and_inverse_apply(A: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The lower Cholesky factor ``L [..., n, n, B]`` of symmetric positive definite
    ``A [..., n, n, B]`` and ``L^-1 b`` for ``b [..., n, m, B]`` (batch last): eagerly by LAPACK,
    under ``torch.compile`` written out (see :func:`_solve`), the factor's rows serving both."""
    if not torch.compiler.is_compiling():
        L = torch.linalg.cholesky_ex(A.movedim(-1, 0))[0]
        return L.movedim(0, -1), torch.linalg.solve_triangular(L, b.movedim(-1, 0), upper=False).movedim(0, -1)
    rows, inv_diag = _cholesky_rows(A)
    n = len(rows)
    zero = torch.zeros_like(rows[0][0])
    L = torch.stack([torch.stack([rows[i][j] if j <= i else zero for j in range(n)], -2) for i in range(n)], -3)
    return L, torch.stack(_lower_solve_rows(rows, inv_diag, list(b.unbind(-3))), -3)


def _cholesky_rows(A: torch.Tensor) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
    """The Cholesky factor of ``A [..., n, n, B]`` as rows of ``[..., B]`` tensors (``L[i][j]``,
    ``j <= i``) and the reciprocals of its diagonal, element by element (small ``n``)."""
    n = A.shape[-3]
    L: list[list[torch.Tensor]] = [[] for _ in range(n)]
    inv_diag = []
    for j in range(n):
        pivot = A[..., j, j, :]
        for k in range(j):
            pivot = pivot - L[j][k] * L[j][k]
        # a pivot that rounding made non-positive: LAPACK would stop there (cholesky_ex's info)
        diag = pivot.clamp_min(torch.finfo(A.dtype).tiny).sqrt()
        L[j].append(diag)
        inv_diag.append(1 / diag)
        for i in range(j + 1, n):
            acc = A[..., i, j, :]
            for k in range(j):
                acc = acc - L[i][k] * L[j][k]
            L[i].append(acc * inv_diag[j])
    return L, inv_diag


def _lower_solve_rows(L: list[list[torch.Tensor]], inv_diag: list[torch.Tensor],
                      b: list[torch.Tensor]) -> list[torch.Tensor]:
    """Forward substitution ``L y = b`` with ``L`` as rows of ``[..., B]`` tensors (and the
    reciprocals of its diagonal) and ``b`` as rows of ``[..., m, B]`` tensors."""
    y = []
    for i in range(len(b)):
        acc = b[i]
        for k in range(i):
            acc = acc - L[i][k].unsqueeze(-2) * y[k]
        y.append(acc * inv_diag[i].unsqueeze(-2))
    return y


def _lower_transposed_solve_rows(L: list[list[torch.Tensor]], inv_diag: list[torch.Tensor],
                                 y: list[torch.Tensor]) -> list[torch.Tensor]:
    """Back substitution ``L^T x = y``, with ``L``, its diagonal's reciprocals and ``y`` as in
    :func:`_lower_solve_rows`."""
    x: list[torch.Tensor] = [None] * len(y)
    for i in reversed(range(len(y))):
        acc = y[i]
        for k in range(i + 1, len(y)):
            acc = acc - L[k][i].unsqueeze(-2) * x[k]
        x[i] = acc * inv_diag[i].unsqueeze(-2)
    return x


def _kernel_basis(S: torch.Tensor, Q_scale: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """``[4, 4 (vector), B]``: a P-orthonormal basis ordered, approximately, like the
    generalised eigenvectors of ``(S, P)`` from the smallest eigenvalue up: one shift-and-invert
    step ``Y = (S + sigma P)^-1 P`` (sigma a small fraction of the scale of ``S [4, 4, B]``,
    with a floor relative to ``Q_scale [B]`` for an ``S`` that vanishes, as with four points)
    and a Cholesky QR factorisation in the P inner product (``Y^T P Y = L L^T``, basis
    ``Y L^-T``), which keeps the order of the columns. ``P [4, 4, 1]``."""
    sigma = 1e-6 * (S[0, 0] + S[1, 1] + S[2, 2] + S[3, 3]) + 1e-12 * Q_scale
    Y = _solve(torch.addcmul(S, sigma, P), P.expand_as(S))
    _, basis_t = _cholesky_and_inverse_apply(_mm(Y.transpose(0, 1), _mm(P, Y)), Y.transpose(0, 1))
    return basis_t.transpose(0, 1)


def _initial_betas(G: torch.Tensor, rho: torch.Tensor, c: dict, candidates: tuple[int, ...]) -> torch.Tensor:
    """Starting beta vectors ``[C, 4 (beta_k), B]`` from the Gram matrices ``G [6, 4, 4, B]`` of
    the kernel vectors' control-point differences and the squared distances ``rho [6, B]``, for
    ``candidates`` (a subset of 1, 2, 3, 4 kernel vectors).

    The distance equations are ``beta^T G_p beta = rho_p``; the linearised systems treat the
    products ``beta_k beta_l`` as unknowns (those of the first 2, 3 kernel vectors, or those
    involving beta_1 for the 4-vector case) and are solved by lightly damped normal equations.
    """
    def root(v):
        return v.abs().sqrt()

    # coefficients of b11, b12, b13, b14, b22, b23, b33 in the six equations, then rho
    Z = torch.cat([G.view(6, 16, -1).index_select(1, c["products"]) * c["product_scale"], rho.unsqueeze(1)], 1)
    gram = _sum(Z.unsqueeze(2) * Z.unsqueeze(1), 0)  # [8, 8, B]: the normal equations of every system
    z = torch.zeros_like(rho[0])
    betas = []
    for n in candidates:
        if n == 1:  # closed form, beta_1 = sum sqrt(rho) |dv| / sum |dv|^2
            dv2 = G[:, 0, 0]
            betas.append(torch.stack([_sum((rho * dv2).clamp_min(0).sqrt(), 0) / _sum(dv2, 0).clamp_min(1e-300), z, z, z]))
            continue
        idx = _SYSTEMS[n - 2]
        b = _solve(_damped(gram[idx, :][:, idx]), gram[idx, 7:]).squeeze(1)
        if n == 2:
            betas.append(torch.stack([root(b[0]), root(b[2]).copysign(b[1]), z, z]))
        elif n == 3:
            betas.append(torch.stack([root(b[0]), root(b[3]).copysign(b[1]), root(b[5]).copysign(b[2]), z]))
        else:
            b1 = root(b[0])
            betas.append(torch.cat([b1.unsqueeze(0), b[1:] / b1.clamp_min(1e-300)]))
    return torch.stack(betas)


def _damped(A: torch.Tensor) -> torch.Tensor:
    """``A [..., n, n, B]`` with its diagonal scaled by 1 + 1e-10 (light damping), as a new
    tensor: written into ``A`` in place, under ``torch.compile`` the whole matrix would be
    stored and copied rather than fused into the factorisation that reads it."""
    return A * (1 + 1e-10 * torch.eye(A.shape[-2], dtype=A.dtype, device=A.device).unsqueeze(-1))


def _gauss_newton_betas(beta: torch.Tensor, G: torch.Tensor, rho: torch.Tensor, iters: int) -> torch.Tensor:
    """Refine ``beta [C, 4, B]`` so that ``beta^T G_p beta = rho_p`` (``G [6, 4, 4, B]``,
    ``rho [6, B]``) in the least-squares sense, by ``iters`` lightly damped Gauss-Newton steps
    (each candidate on its own)."""
    for _ in range(iters):
        g = _sum(G * beta[:, None, None], -2)  # [C, 6, 4, B]: G_p beta, half the Jacobian
        r = _sum(g * beta.unsqueeze(1), 2) - rho  # [C, 6, B]
        JtJ = _sum(g.unsqueeze(3) * g.unsqueeze(2), 1)  # [C, 4, 4, B], a quarter of J^T J
        beta = beta - 0.5 * _solve(_damped(JtJ), _sum(g * r.unsqueeze(2), 1).unsqueeze(2)).squeeze(2)
    return beta


def _nearest_rotation(X: torch.Tensor, steps: int) -> torch.Tensor:
    """The orthogonal polar factor of ``X [..., 3, 3, B]`` (batch last; ``X`` close to a
    multiple of an orthogonal matrix) by ``steps`` Newton-Schulz iterations
    ``X <- X (3 I - X^T X) / 2`` (products only), after scaling ``X`` to a Frobenius norm of
    sqrt(3), which keeps every singular value below sqrt(3), where the iteration converges."""
    X = X * (3.0 / _sum(X * X, (-3, -2)).clamp_min(1e-300)).sqrt().unsqueeze(-2).unsqueeze(-2)
    for _ in range(steps):
        X = torch.add(1.5 * X, _mm(X, _mm(X.transpose(-3, -2), X)), alpha=-0.5)
    return X


def _unreflect(X: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """``X [..., 3, 3, B]`` (whitened camera displacements of the control points, close to
    orthogonal) times ``I - 2 n n^T`` where ``det X < 0``, ``n [3, 1, B]`` the object's thinnest
    principal axis: a point set placed as its mirror image is mirrored across that axis, along
    which noise flips a thin set most easily."""
    return torch.where(_cofactors(X)[1].unsqueeze(-2).unsqueeze(-2) < 0, X - 2 * _mm(_mm(X, n), n.transpose(0, 1)), X)


def _cofactors(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cofactor matrices (``det(X) X^-T``: columns ``x1 x x2, x2 x x0, x0 x x1``) and
    determinants of ``X [..., 3, 3, B]`` (batch last)."""
    cof = torch.linalg.cross(X.roll(-1, -2), X.roll(1, -2), dim=-3)
    return cof, _sum(X[..., 0, :] * cof[..., 0, :], -2)


def _smallest_eigenvector(H: torch.Tensor) -> torch.Tensor:
    """``[3, 1, B]``: unit eigenvectors of the smallest eigenvalues of symmetric ``H [3, 3, B]``,
    in closed form: the eigenvalue by the trigonometric formula (Smith 1961), the vector as the
    longest column of the adjugate of ``H - lambda I`` (cross products of its rows)."""
    q = (H[0, 0] + H[1, 1] + H[2, 2]) / 3
    eye = torch.eye(3, dtype=H.dtype, device=H.device).unsqueeze(-1)
    shifted = H - q * eye
    p = (_sum(shifted * shifted, (0, 1)) / 6).sqrt().clamp_min(1e-300)
    half_det = 0.5 * _cofactors(shifted / p)[1]
    lam = q + 2 * p * torch.cos(torch.acos(half_det.clamp(-1, 1)) / 3 + 2 * torch.pi / 3)
    adj = _cofactors(H - lam * eye)[0]
    norms = _sum(adj * adj, 0)  # [3 columns, B]
    v = _pick(adj, norms.argmax(0), 1)
    return v * _sum(v * v, 0).clamp_min(1e-300).rsqrt()


def _polar_rotation(A: torch.Tensor, steps: int) -> torch.Tensor:
    """The rotation ``R [3, 3, B]`` (det +1) maximising ``trace(R^T A)`` for ``A [3, 3, B]`` of
    full rank (batch last): the orthogonal polar factor ``Q`` of ``A`` by Newton's iteration
    ``X <- (z X + X^-T / z) / 2`` with determinant scaling ``z = |det X|^(-1/3)`` (Higham 1986;
    the inverse-transpose from the cofactors), ``steps`` times, which converges for condition
    numbers up to 1e6 in nine. Where ``det A < 0``, ``Q`` is a reflection and the answer is
    ``U diag(1, 1, -1) V^T`` (SVD ``A = U S V^T``) = ``Q (I - 2 v v^T)``, ``v`` the eigenvector of
    the smallest eigenvalue of the symmetric factor ``Q^T A``."""
    X = A
    for _ in range(steps):
        cof, det = _cofactors(X)
        # |det|^(-1/3) through exp and log: a vectorised pow costs several times their sum
        z = torch.exp(torch.log(det.abs().clamp_min(1e-300)) * (-1.0 / 3.0))
        X = torch.addcmul(0.5 * z * X, cof, 0.5 / (z * det))
    reflection = _cofactors(A)[1] < 0
    # elsewhere the eigenvector is not needed: a fixed matrix with distinct eigenvalues keeps its
    # (unused) gradient finite
    H = torch.where(reflection, _mm(X.transpose(0, 1), A), _constants(A.dtype, A.device)["distinct"])
    v = _smallest_eigenvector(H)
    return torch.where(reflection, X - 2 * _mm(_mm(X, v), v.transpose(0, 1)), X)


def _place(d: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Camera-frame control geometry of candidates ``beta [C, 4, B]``: ``d [3, 4, 4, B]``
    (axis, control point, kernel vector) holds the kernel vectors' centroid (index 0) and
    control-point displacements. Returns ``[C, 3, 4, B]`` with the centroid (index 0) flipped
    in front of the camera."""
    cc = _mm(d, beta[:, None, :, None])[..., 0, :]
    return cc * cc[:, 2:3, :1].sign()


def _pose(Mt: torch.Tensor, c0: torch.Tensor, gn_iters: int, shared_iters: int,
          candidates: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """EPnP on clean, well-posed problems from their moments ``Mt [4, 15, B]`` (rows ``f``,
    batch last; see :func:`_moments`) and centroids ``c0 [3, B]``, with no data-dependent
    branch: the starting points of ``candidates`` (numbers of kernel vectors) take
    ``shared_iters`` Gauss-Newton steps, the best of them ``gn_iters`` more. Returns
    ``R [3, 3, B]`` and ``t [3, B]``."""
    c = _constants(Mt.dtype, Mt.device)
    B = Mt.shape[-1]
    # control points c_0 + L e_k, L the Cholesky factor of the covariance: in the whitened
    # coordinates a = L^-1 (x - c_0) the weighted second moment is the identity
    L, L_inv = _cholesky_and_inverse_apply(Mt[0, 4:13].view(3, 3, B), c["eye3"].unsqueeze(-1).expand(3, 3, B))
    # moments of h = (1, a) for f = u, v, u^2 + v^2
    m1 = _mm(L_inv, Mt[1:, 1:4].unsqueeze(2))  # [3 f, 3, 1, B]
    m2 = _mm(_mm(L_inv, Mt[1:, 4:13].view(3, 3, 3, B)), L_inv.transpose(0, 1))
    Q = torch.cat([torch.cat([Mt[1:, :1].unsqueeze(1), m1.transpose(1, 2)], 2), torch.cat([m1, m2], 2)], 1)
    # |M x|^2 over d (c_0 = d_0, c_k = d_0 + d_k; alpha^T c = h^T d) is
    # |d_x - Qu d_z|^2 + |d_y - Qv d_z|^2 + d_z^T S d_z with S = Quv - Qu^2 - Qv^2: for given
    # d_z the best d_x = Qu d_z, d_y = Qv d_z leave d_z^T S d_z.
    Qxy = Q[:2]
    S = Q[2] - _sum(_mm(Qxy, Qxy), 0)
    dz = _kernel_basis(S, Q[2, 0, 0], c["metric"])  # [4 (h), 4 (kernel), B]
    d = torch.cat([_mm(Qxy, dz), dz.unsqueeze(0)])  # [3 xyz, 4 h, 4 kernel, B]
    # the six control-point differences c_a - c_b (d_1, d_2, d_3, d_1 - d_2, d_1 - d_3, d_2 - d_3)
    # over the kernel and their Gram matrices; the same differences in the world (columns of L)
    dv = torch.cat([d[:, 1:], d[:, (1, 1, 2), ] - d[:, (2, 3, 3), ]], 1)  # [3, 6, 4, B]
    G = _sum(dv.unsqueeze(3) * dv.unsqueeze(2), 0)  # [6, 4, 4, B]
    dw = torch.cat([L, L[:, (0, 0, 1), ] - L[:, (1, 2, 2), ]], 1)
    rho = _sum(dw * dw, 0)  # [6, B]
    beta = _gauss_newton_betas(_initial_betas(G, rho, c, candidates), G, rho, shared_iters)  # [C, 4, B]
    if len(candidates) > 1:
        # Score the candidates placed rigidly (the nearest rotation of their whitened
        # displacements: close enough to rank them) by the algebraic error of their control
        # points; keep the best.
        cc = _place(d, beta)  # [C, 3, 4, B]
        thin_axis = _smallest_eigenvector(_mm(L, L.transpose(0, 1)))
        R = _nearest_rotation(_unreflect(_mm(cc[:, :, 1:], L_inv), thin_axis), _SCORE_POLAR_STEPS)
        xh = torch.cat([cc[:, :, :1], _mm(R, L)], 2)  # rigid control geometry [C, 3, 4, B]
        z = xh[:, 2].unsqueeze(-2)  # [C, 4, 1, B]
        e = xh[:, :2].unsqueeze(-2) - _mm(Qxy, z.unsqueeze(1))  # [C, 2, 4, 1, B]
        err = _sum(e * e, (1, 2, 3)) + _sum(z * _mm(S, z), (1, 2))  # [C, B]
        best = torch.where(torch.isfinite(err), err, torch.full_like(err, float("inf"))).T.argmin(1)
        beta = _pick(beta, best, 0)
    beta = _gauss_newton_betas(beta, G, rho, gn_iters)
    # weighted Procrustes of all points: their cross-covariance is D L^T, D the camera
    # displacements of the control points
    cc = _place(d, beta)[0]  # [3, 4, B]
    R = _polar_rotation(_mm(cc[:, 1:], L.transpose(0, 1)), _POLAR_STEPS)
    return R, cc[:, 0] - _sum(R * c0.unsqueeze(0), 1)


def _refine_pose(R, t, X, xn, w, iters):
    """Gauss-Newton on the pose minimising the weighted squared reprojection error in
    normalised image coordinates. ``R [B,3,3]``, ``t [B,3]``, ``X [B,N,3]``, ``xn [B,N,2]``,
    ``w [B,N]``. Rotation updates are left-multiplied: ``R <- exp([omega]_x) R``."""
    eye6 = torch.eye(6, dtype=X.dtype, device=X.device)
    for _ in range(iters):
        RX = X @ R.transpose(-1, -2)
        Xc = RX + t.unsqueeze(-2)
        z = Xc[..., 2]
        front = z > 1e-9
        inv_z = 1 / torch.where(front, z, torch.ones_like(z))
        sw = (w * front).sqrt()
        proj = Xc[..., :2] * inv_z.unsqueeze(-1)
        r = (proj - xn) * sw.unsqueeze(-1)  # [B, N, 2]
        # Jacobians of the projection w.r.t. (omega, dt), where d Xc = omega x RX + dt
        px, py = proj.unbind(-1)
        x_, y_, z_ = RX.unbind(-1)
        ju = torch.stack([-px * y_, z_ + px * x_, -y_, torch.ones_like(z), torch.zeros_like(z), -px], -1)
        jv = torch.stack([-z_ - py * y_, py * x_, x_, torch.zeros_like(z), torch.ones_like(z), -py], -1)
        J = torch.stack([ju, jv], -2) * (inv_z * sw)[..., None, None]  # [B, N, 2, 6]
        J = J.reshape(J.shape[0], -1, 6)
        r = r.reshape(r.shape[0], -1)
        JtJ = J.transpose(-1, -2) @ J
        damp = 1e-9 * JtJ.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1e-300)
        step = -torch.linalg.solve_ex(JtJ + damp[..., None, None] * eye6, J.transpose(-1, -2) @ r.unsqueeze(-1))[0].squeeze(-1)
        R = axis_angle_to_matrix(step[:, :3]) @ R
        t = t + step[:, 3:]
    return R, t


def epnp(points_3d: torch.Tensor, points_2d: torch.Tensor, K: torch.Tensor, weights: torch.Tensor | None = None,
         *, return_valid: bool = False, min_points: int = 4, gauss_newton_iters: int = _GAUSS_NEWTON_ITERS,
         refine_iters: int = 0, cuda_graph: bool = False, compiled: bool = False):
    """Batched EPnP: object pose from 2D-3D correspondences (see the module docstring).

    Args:
        points_3d: ``[B, N, 3]`` object points (metres, object frame).
        points_2d: ``[B, N, 2]`` their observations (pixels).
        K: ``[B, 3, 3]`` intrinsics (pixels), ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``.
        weights: optional ``[B, N]`` per-correspondence weights (relative; 0 drops a point;
            negative values count as 0). Weighted means, covariances and equations use them.
        return_valid: also return the per-sample validity (a :class:`PoseResult`).
        min_points: a sample needs at least this many usable correspondences (at least 4).
        gauss_newton_iters: Gauss-Newton steps on the betas of the chosen candidate, after
            the two (ten for N = 4) every candidate takes (the paper's refinement; OpenCV
            takes five in all).
        refine_iters: extra Gauss-Newton steps on the pose over the reprojection error
            (0 = plain EPnP as in the paper and OpenCV's ``SOLVEPNP_EPNP``).
        cuda_graph: on a GPU, replay the solver as one CUDA graph (recorded on the first call
            for these shapes and settings, kept for the next ones; see
            :mod:`hfl_lite.geometry.graphs`): a small batch then costs one launch instead of a
            few hundred. Needs CUDA inputs and no gradient.
        compiled: run the solver compiled by ``torch.compile`` (see
            :mod:`hfl_lite.geometry.compiled`): the first call in a process compiles it (two or
            three minutes on a small CPU, seconds from TorchInductor's on-disk cache), later calls
            of any batch size and number of points reuse it (four points take a compilation of
            their own). Needs no gradient. Where compiling is unusable (no C++ compiler, a failed
            compilation) it warns once and runs eagerly. On glibc the first compiled call sets
            the process's allocator to keep freed memory (see :mod:`hfl_lite.geometry.compiled`).

    Returns:
        ``(R [B, 3, 3], t [B, 3])`` with ``X_cam = R X + t`` (``t`` in metres), in the dtype and
        device of ``points_3d``; with ``return_valid=True`` a :class:`PoseResult` ``(R, t, valid)``.
        Unsolvable samples (see module docstring) get ``R = I, t = (0, 0, 1)`` and
        ``valid = False``. Differentiable with respect to the inputs of well-posed samples.
    """
    _check_inputs(points_3d, points_2d, K, weights, "epnp")
    if min_points < 4:
        raise ValueError(f"epnp: min_points must be >= 4, got {min_points}")
    out_dtype, device = points_3d.dtype, points_3d.device
    B, N = points_3d.shape[:2]
    if B == 0 or N < min_points:
        R, t = _fallback(B, out_dtype, device)
        valid = torch.zeros(B, dtype=torch.bool, device=device)
        return PoseResult(R, t, valid) if return_valid else (R, t)
    inputs = (points_3d, points_2d, K) + (() if weights is None else (weights,))
    if cuda_graph and compiled:
        raise ValueError("epnp: cuda_graph=True and compiled=True exclude each other")
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"epnp: cuda_graph=True needs CUDA tensors, got them on {device}")
    if cuda_graph or compiled:
        _check_no_gradients(inputs, "epnp", "cuda_graph" if cuda_graph else "compiled")
    if cuda_graph:
        def solve(X, x, K_, w=None):
            return _epnp(X, x, K_, w, min_points, gauss_newton_iters, refine_iters)

        key = ("epnp", tuple((t.shape, t.dtype) for t in inputs), device, min_points, gauss_newton_iters, refine_iters)
        R, t, ok = cached_replay(key, solve, inputs, graph=True)(*inputs)
    else:
        with cpu_threads(_threads_for(device, B * N)):
            R, t, ok = _solver(compiled)(*_rows(points_3d, points_2d, K, weights), min_points, gauss_newton_iters,
                                         refine_iters)
    R, t = R.to(out_dtype), t.to(out_dtype)
    return PoseResult(R, t, ok) if return_valid else (R, t)


def _check_no_gradients(inputs, name, option):
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        raise ValueError(f"{name}: {option}=True gives no gradients; call it under torch.no_grad() or without "
                         "inputs that require them")


def _solver(compiled: bool):
    """:func:`_epnp_rows`, or :func:`_epnp_rows_compiled` when ``compiled``: the solver of inputs
    laid out by :func:`_rows`."""
    return _epnp_rows_compiled if compiled else _epnp_rows


def _epnp_rows_compiled(data, k, min_points, *args, **kwargs):
    """:func:`_epnp_rows` through ``torch.compile`` (:func:`call_compiled`): the inputs laid out
    and cleaned by :func:`_rows` before the compiled graph (at batch 1024 and 21 points, 0.1 ms
    eagerly for inputs with nothing to clean, 0.3 ms with the cleaning; inside the graph the same
    steps and the moments took 1.1 ms, against 0.4 ms for the moments of clean rows), and
    ``min_points`` as a per-sample tensor (an integer would be compiled in as a constant): calls
    with either input dtype, with and without weights, and with any ``min_points`` (RANSAC's
    refits use 6, ``epnp`` 4 by default) share one compilation."""
    needed = torch.full(data.shape[2:], min_points, dtype=torch.long, device=data.device)
    return call_compiled(_epnp_rows, (data, k, needed), ((1, 2), (1,), (0,)), *args, batch_dims=(2, 1, 0), **kwargs)


def _rows(points_3d, points_2d, K, weights) -> tuple[torch.Tensor, torch.Tensor]:
    """The solver's inputs in the work dtype, coordinates first and batch last: ``data [6, N, B]``
    (the points' three coordinates, the two pixel coordinates, the weights: unit ones for None)
    and the intrinsics ``k [9, B]`` (row-major entries of ``K``). A correspondence is usable when
    its six values are finite (their sum is finite exactly when they are, short of overflow) and
    its weight positive; from here on a zero weight marks the others, whose values are finite
    (zeroed where they were not, or where the weight was negative)."""
    B, N = points_3d.shape[:2]
    data = torch.empty(6, N, B, dtype=_work_dtype(points_3d.device), device=points_3d.device)
    data[:3].copy_(points_3d.permute(2, 1, 0))
    data[3:5].copy_(points_2d.permute(2, 1, 0))
    if weights is None:
        data[5].fill_(1.0)
    else:
        data[5].copy_(weights.T)
    k = K.to(data.dtype).reshape(B, 9).T
    # called eagerly on a CPU, inputs with nothing to clean (the usual case) skip the cleaning:
    # one sum over them costs a twentieth of it (on a GPU the test would wait for the device, and
    # a compiled graph, such as RANSAC's search, cannot branch on it); finite values of zero weight
    # add nothing to any sum the solver takes, and can stay (as in RANSAC's refits)
    if data.device.type == "cpu" and not torch.compiler.is_compiling() and data.sum().isfinite() \
            and (weights is None or (data[5] >= 0).all()):
        return data, k
    # a few eager operations: cleaned inside a compiled graph, every loop over the points would
    # test and select each value again
    unusable = data.sum(0).isfinite().logical_not_().logical_or_(data[5] <= 0)
    return data.masked_fill_(unusable, 0.0), k


def _epnp(points_3d, points_2d, K, weights, min_points, gauss_newton_iters, refine_iters, candidates=(1, 2, 3, 4)):
    """:func:`epnp` after the argument checks: ``(R [B, 3, 3], t [B, 3], valid [B])`` in the
    work dtype, with no data-dependent branch (a CUDA graph can hold it). ``min_points``: an
    integer, or a ``[B]`` integer tensor (one minimum per sample). ``candidates``: the
    numbers of kernel vectors whose starting points are compared (see :func:`_pose`)."""
    return _epnp_rows(*_rows(points_3d, points_2d, K, weights), min_points, gauss_newton_iters, refine_iters,
                      candidates)


def _epnp_rows(data, k, min_points, gauss_newton_iters, refine_iters, candidates=(1, 2, 3, 4)):
    """:func:`_epnp` on its inputs laid out and cleaned by :func:`_rows` (``data [6, N, B]``,
    ``k [9, B]``): coordinates first and batch last, so that every sum runs over whole rows of
    the batch rather than over the last few values of each point."""
    device, dtype = data.device, data.dtype
    N = data.shape[1]
    X, (u, v), w = data[:3], data[3:5], data[5]
    n_usable = (w > 0).sum(0)
    # a usable camera: finite, upper triangular, non-zero focal lengths; normalised observations
    k_ok = torch.isfinite(k).all(0) & (k[0].abs() > 1e-12) & (k[4].abs() > 1e-12) & (k[3] == 0) & (k[6] == 0) \
        & (k[7] == 0) & (k[8] != 0)
    k = torch.where(k_ok, k, _constants(dtype, device)["eye3"].view(9, 1)) / torch.where(k_ok, k[8], 1.0)
    fx, skew, cx, _, fy, cy = k[:6]
    vn = (v - cy) / fy
    xn = torch.stack([(u - cx - skew * vn) / fx, vn])
    # compiled, the moments as sums over the points; not for four points, whose graph of its
    # own (see `shared`) g++ 12 then fails to compile (an internal compiler error): their sums
    # are written out term by term and fused with the rest of the solver into one function
    by_sums = torch.compiler.is_compiling() and N != 4
    Mt, c0 = _moments(X, xn, w, by_sums)
    ok = k_ok & (n_usable >= min_points) & _spread_ok(Mt)
    if not torch.compiler.is_compiling():
        # unsolvable samples become a harmless dummy problem (their gradients stay finite),
        # replaced by the fallback afterwards; compiled calls carry no gradients, and each
        # problem's arithmetic stays in its own lanes of the generated loops
        DM, Dc0 = _dummy_moments(N, dtype, device)
        Mt, c0 = torch.where(ok, Mt, DM), torch.where(ok, c0, Dc0)
    shared = 0 if len(candidates) == 1 else _SHARED_STEPS_MINIMAL if N == 4 else _SHARED_STEPS
    R, t = _pose(Mt, c0, gauss_newton_iters, shared, candidates)
    if refine_iters > 0:
        DX, Dx = _dummy_problem(N, dtype, device)
        R, t = _refine_pose(R.permute(2, 0, 1), t.T, torch.where(ok[:, None, None], X.permute(2, 1, 0), DX),
                            torch.where(ok[:, None, None], xn.permute(2, 1, 0), Dx),
                            torch.where(ok[:, None], (w / _weight_sums(w)).T, 1.0 / N), refine_iters)
        R, t = R.permute(1, 2, 0), t.T
    ok = ok & torch.isfinite(R).all(0).all(0) & torch.isfinite(t).all(0)
    R = torch.where(ok, R, _constants(dtype, device)["eye3"].unsqueeze(-1))
    t = torch.where(ok, t, _constants(dtype, device)["t_fallback"])
    return R.permute(2, 0, 1).contiguous(), t.T.contiguous(), ok


# dimensions of _hypotheses' tensors that change from call to call: samples still searching,
# hypotheses in the chunk (the last chunk can be shorter), correspondences
_HYPOTHESES_DYNAMIC = ((0, 1), (0, 2), (0, 2), (0,), (0, 1), (0, 1), (0,))

# and of _pose_sq_errors': samples, correspondences
_POSE_ERRORS_DYNAMIC = ((0, 2), (0, 2), (0,), (0,), (0,))


def _draw_minimal_sets(draws: torch.Tensor, order: torch.Tensor, n_usable: torch.Tensor) -> torch.Tensor:
    """Indices ``[A, H, S]`` of ``S`` distinct usable points for each of ``H`` hypotheses, drawn
    uniformly: ``draws [A, H, S]`` uniform numbers in [0, 1), ``order [A, N]`` each sample's usable
    points first (in increasing index), ``n_usable [A]`` their number (>= S). The k-th point is the
    ``floor(draw * (n - k))``-th of the ``n - k`` usable points not taken yet: its rank is moved
    past every rank already taken, in increasing order (which the taken ranks are kept in).
    Element-wise work on ``[A, H]`` only: a random key per point and a search for the smallest
    ones cost ``N / S`` times more."""
    A, H, S = draws.shape
    n = n_usable.view(A, 1)
    taken, ranks = [], []  # taken: the ranks drawn so far, in increasing order
    for k in range(S):
        rank = torch.minimum((draws[..., k].double() * (n - k)).floor().long(), n - k - 1)
        for previous in taken:
            rank = rank + (rank >= previous).long()
        ranks.append(rank)
        sorted_taken = []
        for previous in taken:  # insert the new rank
            sorted_taken.append(torch.minimum(previous, rank))
            rank = torch.maximum(previous, rank)
        taken = sorted_taken + [rank]
    return order.gather(1, torch.stack(ranks, -1).view(A, H * S)).view(A, H, S)


def _hypotheses(draws: torch.Tensor, X: torch.Tensor, x: torch.Tensor, K: torch.Tensor, usable: torch.Tensor,
                order: torch.Tensor, n_usable: torch.Tensor, thr2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of the RANSAC search for ``A`` samples, ``H`` hypotheses each, with no
    data-dependent branch (``torch.compile`` fuses it whole).

    ``draws [A, H, S]`` uniform random numbers, ``order [A, N]`` and ``n_usable [A]``: each
    hypothesis' minimal set of ``S`` usable points (:func:`_draw_minimal_sets`). ``X [A, 3, N]``,
    ``x [A, 2, N]`` (coordinates first), ``K [A, 3, 3]``; ``usable [A, N]`` 1 for a usable point, 0
    for the others, in the points' dtype (compiled, a boolean mask was read and written one value
    at a time: a sixth of a chunk's time); ``thr2`` the squared inlier threshold (px^2). Each set
    is fitted by EPnP from the two-kernel-vector start with one Gauss-Newton step and scored by
    the truncated squared reprojection error over the usable points (MSAC; an invalid fit costs
    ``inf``). Returns the best hypothesis' cost ``[A]`` and its squared errors ``[A, N]`` (px^2):
    they are computed again rather than kept for every hypothesis (compiled, the scores are sums
    whose terms are never stored)."""
    A, H, S = draws.shape
    pick = _draw_minimal_sets(draws, order, n_usable).view(A, 1, H * S)

    def minimal_sets(points):  # [A, C, N] -> [A * H, S, C]
        return points.gather(2, pick.expand(-1, points.shape[1], -1)).view(A, -1, H, S).permute(0, 2, 3, 1) \
            .reshape(A * H, S, -1)

    R, t, valid = _epnp(minimal_sets(X), minimal_sets(x), K.unsqueeze(1).expand(A, H, 3, 3).reshape(A * H, 3, 3),
                        None, 4, 1, 0, candidates=(2,))
    R, t = R.view(A, H, 3, 3), t.view(A, H, 3)
    # the truncated errors are finite (inf for a point behind the camera becomes thr2): a product
    # with the mask keeps or drops each of them exactly
    cost = (_sq_reprojection_errors(X, x, _projections(K, R, t)).clamp_max(thr2) * usable.unsqueeze(1)).sum(-1)
    cost = torch.where(valid.view(A, H), cost, torch.full_like(cost, float("inf")))
    best_cost, best = cost.min(-1)
    R_best = R.gather(1, best.view(A, 1, 1, 1).expand(A, 1, 3, 3)).squeeze(1)
    return best_cost, _pose_sq_errors(X, x, K, R_best, t.gather(1, best.view(A, 1, 1).expand(A, 1, 3)).squeeze(1))


def _pose_sq_errors(X: torch.Tensor, x: torch.Tensor, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Squared pixel reprojection errors ``[B, N]`` of the poses ``R [B, 3, 3]``, ``t [B, 3]``
    (``inf`` behind the camera): ``X [B, 3, N]``, ``x [B, 2, N]`` (coordinates first), ``K [B, 3, 3]``.
    Compiled, it returns the errors and lets the caller compare them: a boolean result was
    written one value at a time, three quarters of the call's time."""
    return _sq_reprojection_errors(X, x, _projections(K, R.unsqueeze(1), t.unsqueeze(1)))[:, 0]


def _projections(K: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Projection matrices ``K [R | t]`` ``[B, H, 3, 4]`` of ``H`` poses per sample: ``K [B, 3, 3]``,
    ``R [B, H, 3, 3]``, ``t [B, H, 3]``."""
    Rt = torch.cat([R, t.unsqueeze(-1)], -1)
    k = K.unsqueeze(1).unsqueeze(-1)  # [B, 1, 3, 3, 1]; compiled, three products per entry, not a matrix call each
    return k[..., 0, :] * Rt[..., :1, :] + k[..., 1, :] * Rt[..., 1:2, :] + k[..., 2, :] * Rt[..., 2:, :]


def _sq_reprojection_errors(X: torch.Tensor, x: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """Squared pixel reprojection errors ``[B, H, N]`` of ``H`` poses per sample:
    ``X [B, 3, N]`` object points and ``x [B, 2, N]`` pixels (coordinates first), ``P [B, H, 3, 4]``
    their projection matrices (:func:`_projections`); points behind the camera (or not finite) get
    ``inf``. Written as products of the matrices' entries with rows of the points, so that,
    compiled, each error is computed where it is used, in loops along the points."""
    X0, X1, X2 = (c.unsqueeze(1) for c in X.unbind(1))  # [B, 1, N]
    p = P.unsqueeze(-1)  # [B, H, 3, 4, 1]
    u, v, w = (torch.addcmul(torch.addcmul(torch.addcmul(p[:, :, r, 3], p[:, :, r, 0], X0), p[:, :, r, 1], X1),
                             p[:, :, r, 2], X2) for r in range(3))
    du = torch.addcmul(u, x[:, None, 0], w, value=-1.0)
    dv = torch.addcmul(v, x[:, None, 1], w, value=-1.0)
    e2 = torch.addcmul(du * du, dv, dv) / (w * w)
    return torch.where((w > 0) & torch.isfinite(e2), e2, torch.full_like(e2, float("inf")))


def epnp_ransac(points_3d: torch.Tensor, points_2d: torch.Tensor, K: torch.Tensor, weights: torch.Tensor | None = None,
                iterations: int = 100, threshold_px: float = 8.0, min_inliers: int = 6, *, confidence: float = 0.99,
                sample_size: int = 5, chunk: int = 8, refit_rounds: int = 2, refine_iters: int = 0,
                generator: torch.Generator | None = None, compiled: bool = False):
    """Batched RANSAC around :func:`epnp`: robust to wrong correspondences (outliers).

    Hypotheses are drawn ``chunk`` at a time for every sample still searching: each is an EPnP
    fit to ``sample_size`` usable correspondences drawn uniformly (all hypotheses of all
    samples are solved in one batched call, from the linearised two-kernel-vector start and one
    Gauss-Newton step: a minimal set of five points has a two-dimensional null space, and a
    hypothesis only has to tell inliers from outliers), scored over all correspondences by the
    truncated squared reprojection error ``sum_i min(e_i^2, threshold_px^2)`` (MSAC; points
    behind the camera count as outliers). As in OpenCV, a sample stops searching once enough
    hypotheses were drawn to have found an outlier-free one with probability ``confidence``
    given its best inlier ratio so far, or after ``iterations``. The best hypothesis' inliers
    (``e_i < threshold_px``) are then refitted by :func:`epnp` with their weights, and the
    inlier set updated, ``refit_rounds`` times. Defaults follow OpenCV's ``solvePnPRansac``
    (100 iterations, 8 px, 0.99) and the reference code's rule of at least 6 points.
    The random draws (``sample_size`` uniform numbers per hypothesis: the k-th picks one of the
    usable correspondences not yet taken) come only from ``generator``: the result repeats
    exactly for a seed.

    Memory grows as ``B * chunk * N``.

    Args:
        points_3d ``[B, N, 3]`` (metres), points_2d ``[B, N, 2]`` (pixels), K ``[B, 3, 3]``,
        weights ``[B, N]`` as in :func:`epnp` (used in the refits).
        generator: random generator on the inputs' device (default: torch's global one).
        compiled: run through ``torch.compile`` each chunk of the search (drawing the minimal
            sets, fitting and scoring them: :func:`_hypotheses`), the refits (:func:`epnp`'s
            compiled solver, shared with ``epnp(..., compiled=True)``) and their reprojection
            errors (:func:`_pose_sq_errors`): three compilations; the loop around them stays eager.

    Returns:
        ``(R [B, 3, 3], t [B, 3], inliers [B, N] bool, valid [B] bool)``. ``valid`` needs a
        solvable sample and at least ``min_inliers`` inliers; invalid samples get
        ``R = I, t = (0, 0, 1)``.
    """
    _check_inputs(points_3d, points_2d, K, weights, "epnp_ransac")
    if sample_size < 4:
        raise ValueError(f"epnp_ransac: sample_size must be >= 4, got {sample_size}")
    if iterations < 1 or chunk < 1:
        raise ValueError(f"epnp_ransac: iterations and chunk must be >= 1, got {iterations} and {chunk}")
    if compiled:
        _check_no_gradients((points_3d, points_2d, K) + (() if weights is None else (weights,)), "epnp_ransac",
                            "compiled")
    B, N = points_3d.shape[:2]
    threads = torch.get_num_threads()
    with cpu_threads(_threads_for(points_3d.device, B * N)):
        R, t, inliers, valid = _ransac(points_3d, points_2d, K, weights, iterations, float(threshold_px) ** 2,
                                       min_inliers, confidence, sample_size, chunk, refit_rounds, refine_iters, generator,
                                       compiled, threads)
    return R.to(points_3d.dtype), t.to(points_3d.dtype), inliers, valid


def _usable_first(usable: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` indices: each sample's usable points (``usable [B, N]`` bool) in increasing
    index, then the others, also in increasing index. Each point's place comes from a count of the
    usable points up to it (a stable sort of the mask took twice as long)."""
    B, N = usable.shape
    index = torch.arange(N, device=usable.device).expand(B, N)
    up_to = usable.long().cumsum(1)  # usable points up to and including each one
    place = torch.where(usable, up_to - 1, up_to[:, -1:] + index - up_to)
    return torch.empty_like(place).scatter_(1, place, index)


def _ransac(points_3d, points_2d, K, weights, iterations, thr2, min_inliers, confidence, sample_size, chunk,
            refit_rounds, refine_iters, generator, compiled, search_threads):
    """:func:`epnp_ransac` after the argument checks, in the work dtype; ``compiled``: the
    hypotheses (:func:`_hypotheses`), the refits and their errors (:func:`_pose_sq_errors`) run
    through ``torch.compile``; ``search_threads``: the caller's CPU threads, for the search's
    large chunks."""
    B, N = points_3d.shape[:2]
    device = points_3d.device
    wd = _work_dtype(device)
    Kd = K.to(wd)
    # laid out and cleaned once: the refits' inputs (from one refit to the next only the weights
    # change), and a zero weight marks every unusable correspondence
    data, k = _rows(points_3d, points_2d, K, weights)
    w = data[5].T.clone()
    usable = (w > 0) & torch.isfinite(k).all(0).unsqueeze(-1)
    no_inliers = torch.zeros(B, N, dtype=torch.bool, device=device)
    R_fb, t_fb = _fallback(B, wd, device)
    if N < sample_size:
        return R_fb, t_fb, no_inliers, torch.zeros(B, dtype=torch.bool, device=device)
    # batch first, coordinates then points: the scores run along the points. From the inputs
    # (transposing the refits' layout took four times as long); the scores need no cleaning: an
    # unusable point's error, inf where it is not finite, is truncated and multiplied by zero
    Xt, xt = (p.transpose(1, 2).to(wd, memory_format=torch.contiguous_format) for p in (points_3d, points_2d))
    n_usable = usable.sum(-1)
    order = _usable_first(usable)
    usable_mask = usable.to(wd)

    best_cost = torch.full((B,), float("inf"), dtype=wd, device=device)
    best_inliers = no_inliers
    active = n_usable >= sample_size
    done = 0
    log_fail = torch.log(torch.tensor(1.0 - confidence, dtype=torch.float64)).item() if confidence < 1 else float("-inf")
    while done < iterations and bool(active.any()):
        ids = active.nonzero().squeeze(1)
        A, H = ids.numel(), min(chunk, iterations - done)
        draws = torch.rand(A, H, sample_size, generator=generator, device=device)
        searching = (lambda t: t) if A == B else (lambda t: t[ids])  # the rows of the samples still searching
        hypothesis_args = (draws,) + tuple(map(searching, (Xt, xt, Kd, usable_mask, order, n_usable)))
        # A * H * N correspondences scored at once: see SINGLE_THREAD_POINTS
        with cpu_threads(_threads_for(device, A * H * N) or search_threads):
            chunk_cost, chunk_e2 = call_compiled(_hypotheses, hypothesis_args, _HYPOTHESES_DYNAMIC, thr2) \
                if compiled else _hypotheses(*hypothesis_args, thr2)
        chunk_inliers = (chunk_e2 < thr2) & searching(usable)
        better = chunk_cost < best_cost[ids]
        best_cost = best_cost.index_put((ids,), torch.where(better, chunk_cost, best_cost[ids]))
        best_inliers = best_inliers.index_put((ids,), torch.where(better.unsqueeze(-1), chunk_inliers, best_inliers[ids]))
        done += H
        # adaptive stop: iterations needed for an all-inlier minimal set with the given confidence
        ratio = (best_inliers.sum(-1) / n_usable.clamp_min(1)).double()
        p_clean = ratio.pow(sample_size).clamp(1e-12, 1 - 1e-12)
        active = active & (log_fail / torch.log1p(-p_clean) > done)

    inliers = best_inliers
    valid = torch.zeros(B, dtype=torch.bool, device=device)
    R, t = R_fb, t_fb
    for _ in range(max(refit_rounds, 1)):
        data[5] = torch.where(inliers, w, torch.zeros_like(w)).T
        R, t, valid = _solver(compiled)(data, k, max(4, min(min_inliers, N)), _GAUSS_NEWTON_ITERS, refine_iters)
        error_args = (Xt, xt, Kd, R, t)
        e2 = call_compiled(_pose_sq_errors, error_args, _POSE_ERRORS_DYNAMIC) if compiled \
            else _pose_sq_errors(*error_args)
        inliers = (e2 < thr2) & usable & valid.unsqueeze(-1)
    valid = valid & (inliers.sum(-1) >= min_inliers)
    return torch.where(valid[:, None, None], R, R_fb), torch.where(valid[:, None], t, t_fb), inliers, valid


def random_pnp_problems(batch: int, num_points: int, noise_px: float = 0.0, outlier_ratio: float = 0.0,
                        depth: tuple[float, float] = (0.3, 1.0), extent: float = 0.15, focal: float = 600.0,
                        image_size: tuple[int, int] = (640, 480), generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float64, device=None) -> dict[str, torch.Tensor]:
    """Synthetic PnP problems for tests, benchmarks and the book.

    Object points uniform in a cube of side ``extent`` metres; uniformly random rotations;
    depths uniform in ``depth`` (metres) with the object centre inside the middle of the image;
    intrinsics with focal length ``focal`` px and the principal point at the image centre;
    Gaussian pixel noise of ``noise_px`` (standard deviation); a share ``outlier_ratio`` of the
    observations replaced by uniformly random pixels.

    Returns a dict: ``points_3d [B,N,3]``, ``points_2d [B,N,2]``, ``K [B,3,3]``, ``R [B,3,3]``,
    ``t [B,3]``, ``inlier [B,N]`` bool.
    """
    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=dtype, device=device)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype, device=device)

    B, N = batch, num_points
    W, H = image_size
    q = torch.nn.functional.normalize(randn(B, 4), dim=-1)
    vec_norm = q[:, 1:].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    R = axis_angle_to_matrix(q[:, 1:] / vec_norm * 2 * torch.atan2(vec_norm, q[:, :1]))
    z = depth[0] + (depth[1] - depth[0]) * rand(B)
    centre_px = (rand(B, 2) - 0.5) * torch.tensor([0.4 * W, 0.4 * H], dtype=dtype, device=device)
    t = torch.cat([centre_px * z.unsqueeze(-1) / focal, z.unsqueeze(-1)], -1)
    X = (rand(B, N, 3) - 0.5) * extent
    K = torch.tensor([[focal, 0, W / 2], [0, focal, H / 2], [0, 0, 1]], dtype=dtype, device=device).expand(B, 3, 3).clone()
    x = project_points(transform_points(X, R, t), K) + noise_px * randn(B, N, 2)
    inlier = rand(B, N) >= outlier_ratio
    junk = rand(B, N, 2) * torch.tensor([W, H], dtype=dtype, device=device)
    x = torch.where(inlier.unsqueeze(-1), x, junk)
    return dict(points_3d=X, points_2d=x, K=K, R=R, t=t, inlier=inlier)
