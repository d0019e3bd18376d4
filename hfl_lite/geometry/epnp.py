"""EPnP (Lepetit, Moreno-Noguer, Fua, IJCV 2009), batched torch, plus a batched RANSAC.

Given object points ``X_i`` (metres, object frame), their pixel observations ``x_i`` and the
intrinsics ``K``, find ``R, t`` with ``x_i ~ project(K (R X_i + t))``. EPnP writes every point
as a weighted sum of four virtual *control points* ``c_j`` (barycentric coordinates
``alpha_ij``), so the unknowns shrink to the twelve camera coordinates of the control points:

1. Control points: the weighted centroid and the centroid moved by one standard deviation
   along each principal direction of the points.
2. Barycentric coordinates ``alpha [N, 4]`` (they sum to one, so they hold in any frame).
3. Each correspondence gives two linear equations in the 12 unknowns, ``M [2N, 12]``;
   the solution lies (up to noise) in the span of the ``n = 1..4`` eigenvectors of
   ``M^T W M`` with the smallest eigenvalues: ``c^cam = sum_k beta_k v_k``. Rather than
   decomposing the 12 x 12 matrix, we use its structure: for given depth coordinates the
   best x and y coordinates follow linearly, which leaves a 4-dimensional subspace that
   holds the null space of ``M`` (exactly, for noise-free data); the Rayleigh-Ritz vectors of
   ``M^T W M`` in it (a 4 x 4 generalised eigenproblem) serve as the ``v_k``.
4. The betas come from the six control-point distances, which a rigid motion preserves:
   ``|c^cam_a - c^cam_b|^2 = |c^w_a - c^w_b|^2``. Four starting points (the paper's
   closed form for one kernel vector and its linearised systems for two and three; for four,
   only the products with ``beta_1`` are kept, instead of the paper's relinearisation) are
   each polished by Gauss-Newton on these six quadratic equations over all four betas
   (candidates that have converged stop iterating).
5. Depth sign fixed (points in front of the camera), camera-frame points from the alphas,
   then ``R, t`` by weighted rigid Procrustes of all points (computed from the second
   moments of the whitened points, so its cost does not grow with N; the rotation is the
   polar factor of the cross-covariance, by Newton's iteration); the candidate whose rigidly
   placed control points best satisfy the linear system (smallest ``|M x|^2``, the
   depth-weighted reprojection error) wins.
6. Optionally (``refine_iters > 0``) a few Gauss-Newton steps on the pose itself minimise
   the weighted reprojection error (the maximum-likelihood pose under Gaussian pixel noise).

All the small linear algebra runs in float64 (the results come back in the input dtype), on
tensors stored with the batch as the last dimension: thousands of 4 x 4 problems then cost a few
long element-wise operations each, instead of one BLAS/LAPACK call per matrix.
Correspondences with a zero weight or a non-finite value are ignored. A sample that cannot be
solved (fewer than ``min_points`` usable points, nearly collinear or planar object points,
nearly coincident or collinear image points, a bad ``K``) gets the reference code's fallback
``R = I, t = (0, 0, 1)`` and ``valid = False``; it is solved as a harmless dummy problem
internally so that it never disturbs the batch or its gradients.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .camera import project_points, transform_points
from .rotations import axis_angle_to_matrix

__all__ = ["PoseResult", "epnp", "epnp_ransac", "random_pnp_problems"]

# Object points count as degenerate (collinear / planar) when their smallest principal
# standard deviation is below this fraction of the largest; likewise image points (coincident /
# collinear).
MIN_SPREAD_RATIO = 1e-3

# Each principal direction of the object points is turned to lie on the positive side of this
# direction (irrational ratios: no axis-aligned or symmetric direction is orthogonal to it).
_SIGN_DIRECTION = torch.tensor([1.0, 2 ** 0.5 - 1, (2 ** 0.5 - 1) ** 2], dtype=torch.float64)

# The six pairs of control points whose distances fix the betas.
_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


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


def _mm(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Matrix product of stacks stored batch-last: ``A [n, m, *]``, ``B [m, k, *]`` -> ``[n, k, *]``.

    Small matrices with the batch as the innermost (contiguous) dimension turn every step into
    a few long vectorised element-wise operations; batched BLAS/LAPACK calls on thousands of
    4 x 4 matrices cost more in per-matrix overhead than in arithmetic.
    """
    return (A.unsqueeze(2) * B.unsqueeze(0)).sum(1)


def _ridge_solve(A: torch.Tensor, b: torch.Tensor, rel: float = 1e-12) -> torch.Tensor:
    """Least-squares ``A x = b`` for ``A [m, n, B]``, ``b [m, B]`` (batch-last) through lightly
    damped normal equations (always finite); returns ``x [n, B]``."""
    n = A.shape[1]
    AtA = _mm(A.transpose(0, 1), A).permute(2, 0, 1)  # [B, n, n]
    damp = rel * AtA.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1e-300)
    AtA = AtA + damp[:, None, None] * torch.eye(n, dtype=A.dtype, device=A.device)
    Atb = (A * b.unsqueeze(1)).sum(0).T.unsqueeze(-1)  # [B, n, 1]
    return torch.linalg.solve_ex(AtA, Atb)[0].squeeze(-1).T


def _initial_betas(G: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Four starting beta vectors from the Gram matrices ``G [6, 4, 4, B]`` of the kernel
    differences and the squared distances ``rho [6, B]``; returns ``[4 (beta_k), 4 candidates, B]``.

    The distance equations are ``beta^T G_p beta = rho_p``; the linearised systems treat the
    products ``beta_k beta_l`` as unknowns (only those of the first 2, 3 kernel vectors, or
    those involving beta_1 for the 4-vector case).
    """
    def column(k, l):  # coefficient of beta_k beta_l in the six equations
        return G[:, k, l] * (1.0 if k == l else 2.0)

    def root(v):
        return v.abs().sqrt()

    def sign(v):
        return torch.where(v < 0, -1.0, 1.0).to(v)

    # n = 1: closed form, beta_1 = sum sqrt(rho) |dv| / sum |dv|^2
    dv2 = G[:, 0, 0].clamp_min(0)
    b1 = (rho.clamp_min(0) * dv2).sqrt().sum(0) / dv2.sum(0).clamp_min(1e-300)
    z = torch.zeros_like(b1)
    # n = 2: unknowns (b11, b12, b22)
    s2 = _ridge_solve(torch.stack([column(0, 0), column(0, 1), column(1, 1)], 1), rho)
    # n = 3: unknowns (b11, b12, b13, b22, b23, b33): six equations, six unknowns
    s3 = _ridge_solve(torch.stack([column(k, l) for k, l in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))], 1), rho)
    # n = 4: unknowns (b11, b12, b13, b14), then beta_k = b1k / beta_1
    s4 = _ridge_solve(torch.stack([column(0, 0), column(0, 1), column(0, 2), column(0, 3)], 1), rho)
    b4 = root(s4[0])
    return torch.stack([
        torch.stack([b1, z, z, z]),
        torch.stack([root(s2[0]), root(s2[2]) * sign(s2[1]), z, z]),
        torch.stack([root(s3[0]), root(s3[3]) * sign(s3[1]), root(s3[5]) * sign(s3[2]), z]),
        torch.cat([b4.unsqueeze(0), s4[1:] / b4.clamp_min(1e-300)]),
    ], 1)


# Gauss-Newton steps after which converged candidates leave the batch.
_GN_PRUNE = (2, 5)
# The ten distinct entries (i <= j) of a symmetric 4 x 4 matrix, row by row.
_TRIU = tuple((i, j) for i in range(4) for j in range(i, 4))


def _spd4_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve ``A x = b`` for symmetric positive definite 4 x 4 ``A`` given by its ten distinct
    entries ``a [10, *]`` (order of ``_TRIU``) and ``b [4, *]`` (batch-last), by an unrolled
    LDL^T factorisation (no pivoting, stable for such matrices); returns ``x [4, *]``."""
    a00, a01, a02, a03, a11, a12, a13, a22, a23, a33 = a.unbind(0)
    b0, b1, b2, b3 = b.unbind(0)
    l10, l20, l30 = a01 / a00, a02 / a00, a03 / a00
    d1 = a11 - l10 * a01
    m21, m31 = a12 - l20 * a01, a13 - l30 * a01
    l21, l31 = m21 / d1, m31 / d1
    d2 = a22 - l20 * a02 - l21 * m21
    m32 = a23 - l30 * a02 - l31 * m21
    l32 = m32 / d2
    d3 = a33 - l30 * a03 - l31 * m31 - l32 * m32
    y1 = b1 - l10 * b0
    y2 = b2 - l20 * b0 - l21 * y1
    x3 = (b3 - l30 * b0 - l31 * y1 - l32 * y2) / d3
    x2 = y2 / d2 - l32 * x3
    x1 = y1 / d1 - l21 * x2 - l31 * x3
    x0 = b0 / a00 - l10 * x1 - l20 * x2 - l30 * x3
    return torch.stack([x0, x1, x2, x3])


def _gauss_newton_betas(beta: torch.Tensor, G: torch.Tensor, rho: torch.Tensor, iters: int) -> torch.Tensor:
    """Refine ``beta [4, C, B]`` so that ``beta^T G_p beta = rho_p`` (``G [6, 4, 4, B]``,
    ``rho [6, B]``) in the least-squares sense, by up to ``iters`` damped Gauss-Newton steps.

    Candidates whose step changed beta by less than 1e-10 (relative) have converged (the
    convergence is quadratic where the equations can be met) and leave the batch, so that the
    later steps only work on the slow ones.
    """
    C, B = beta.shape[1:]
    M = C * B
    dev = beta.device
    beta = beta.reshape(4, M)
    # G_p beta = sum_l G[:, :, l] beta_l: the four [24, M] slices G[:, :, l], one per candidate
    G = G.permute(2, 0, 1, 3).reshape(4, 24, 1, B).expand(4, 24, C, B).reshape(4, 24, M)
    rho = rho.unsqueeze(1).expand(6, C, B).reshape(6, M)
    iu, ju = (torch.tensor(ix, device=dev) for ix in zip(*_TRIU))
    diag = torch.tensor([float(i == j) for i, j in _TRIU], dtype=beta.dtype, device=dev).unsqueeze(-1)
    done, active = [], torch.arange(M, device=dev)  # converged (indices, values); indices still iterating
    for it in range(iters):
        Gb = G[0] * beta[0]
        for l in range(1, 4):
            Gb = torch.addcmul(Gb, G[l], beta[l])
        Gb = Gb.view(6, 4, -1)  # G_p beta; the Jacobian of the residuals is 2 G_p beta
        r = (Gb * beta).sum(1) - rho  # [6, M]
        JtJ = (Gb.index_select(1, iu) * Gb.index_select(1, ju)).sum(0)  # [10, M], a quarter of J^T J
        JtJ = JtJ + 1e-10 * (JtJ * diag).sum(0).clamp_min(1e-300) * diag
        step = 0.5 * _spd4_solve(JtJ, (Gb * r.unsqueeze(1)).sum(0))
        beta = beta - step
        if it in _GN_PRUNE and it < iters - 1:  # drop the converged candidates
            moving = step.abs().amax(0) > 1e-10 * beta.abs().amax(0)
            if not bool(moving.all()):
                keep, drop = moving.nonzero().squeeze(1), (~moving).nonzero().squeeze(1)
                done.append((active[drop], beta[:, drop]))
                active, beta, rho, G = active[keep], beta[:, keep], rho[:, keep], G.index_select(-1, keep)
    if done:
        done.append((active, beta))
        idx, values = (torch.cat(parts, -1) for parts in zip(*done))
        beta = values[:, torch.argsort(idx)]
    return beta.reshape(4, C, B)


def _nearest_rotation(A: torch.Tensor, iters: int = 6) -> torch.Tensor:
    """The rotation ``R [3, 3, *]`` (det +1) maximising ``trace(R^T A)`` for ``A [3, 3, *]``
    (batch-last).

    For ``det A > 0`` this is the orthogonal polar factor of ``A``, found by Newton's iteration
    ``X <- (z X + X^-T / z) / 2`` with determinant scaling ``z = |det X|^(-1/3)`` (Higham 1986;
    quadratic convergence, a few element-wise operations per step, the inverse-transpose from
    the cofactors). The matrices it leaves unconverged, nearly singular or with ``det A <= 0``
    go to the SVD solution ``U diag(1, 1, det(U V^T)) V^T``.
    """
    def cofactors(X):  # columns x1 x x2, x2 x x0, x0 x x1, i.e. det(X) X^-T; and det(X)
        cof = torch.linalg.cross(X.roll(-1, 1), X.roll(1, 1), dim=0)
        return cof, (X[:, 0] * cof[:, 0]).sum(0)

    eye = torch.eye(3, dtype=A.dtype, device=A.device).view(3, 3, *([1] * (A.dim() - 2)))
    _, det_A = cofactors(A)
    scale = A.abs().amax((0, 1))
    newton = torch.isfinite(det_A) & (det_A > 1e-12 * scale ** 3)
    X = torch.where(newton, A, eye)
    for _ in range(iters):
        cof, det = cofactors(X)
        z = det.pow(-1.0 / 3.0)
        X = 0.5 * (z * X + cof / (z * det))
    residual = (_mm(X.transpose(0, 1), X) - eye).abs().amax((0, 1))
    rest = ~(newton & (residual < 1e-10))
    if bool(rest.any()):
        U, _, Vh = torch.linalg.svd(A[:, :, rest].permute(2, 0, 1))
        d = torch.sign(torch.linalg.det(U @ Vh))
        d = torch.where(d == 0, torch.ones_like(d), d)
        fix = torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1).unsqueeze(-1)
        X = X.clone()
        X[:, :, rest] = (U @ (Vh * fix)).permute(1, 2, 0)
    return X


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
        step = -torch.linalg.solve(JtJ + damp[..., None, None] * eye6, (J.transpose(-1, -2) @ r.unsqueeze(-1))).squeeze(-1)
        R = axis_angle_to_matrix(step[:, :3]) @ R
        t = t + step[:, 3:]
    return R, t


# Metric of the control points in the basis d of the whitened coordinates: a camera point is
# sum_j alpha_j c_j = d_0 + sum_k a_k d_k with c_0 = d_0, c_k = d_0 + d_k, so that
# |c_0|^2 + ... + |c_3|^2 = d^T P d (per axis).
_METRIC = ((4.0, 1.0, 1.0, 1.0), (1.0, 1.0, 0.0, 0.0), (1.0, 0.0, 1.0, 0.0), (1.0, 0.0, 0.0, 1.0))
# Position in _TRIU of each entry of a symmetric 4 x 4 matrix.
_FROM_TRIU = tuple(_TRIU.index((min(i, j), max(i, j))) for i in range(4) for j in range(4))



def _place(ctrl, beta, Lw, c0, Q, S):
    """Rigid poses ``R [3,3,C,B], t [3,C,B]`` and algebraic errors ``[C,B]`` of the candidates."""
    cc = (ctrl.unsqueeze(3) * beta).sum(2)  # [3 xyz, 4 control point, C, B] camera frame
    # Points in front of the camera: the weighted mean of the camera points is c_0 (the
    # alphas average to (1, 0, 0, 0)); flip the candidates whose c_0 lies behind.
    cc = cc * torch.where(cc[2, 0] < 0, -1.0, 1.0).to(cc)
    # Rigid Procrustes of all points X -> (their camera estimates): with whitened coordinates
    # the weighted cross-covariance is sum_k (c_k - c_0)(c^w_k - c^w_0)^T.
    cross = ((cc[:, 1:] - cc[:, :1]).unsqueeze(1) * Lw[None, :, :, None]).sum(2)  # [3, 3, C, B]
    Rc = _nearest_rotation(cross)
    tc = cc[:, 0] - (Rc * c0.T[None, :, None]).sum(1)  # [3, C, B]
    # The algebraic error |M x|^2 (weighted) of the rigidly placed control points,
    # x = (d_x, d_y, d_z) with d_0 = c_0 and d_k = R (c^w_k - c^w_0).
    xh = torch.cat([cc[:, :1], (Rc.unsqueeze(2) * Lw[None, :, :, None]).sum(1)], 1)  # [3 xyz, 4 h, C, B]
    z = xh[2]
    res = xh[:2] - (Q[:2, :, :, None] * z).sum(2)
    err = (res * res).sum((0, 1)) + (z * (S.unsqueeze(2) * z).sum(1)).sum(0)  # [C, B]
    return Rc, tc, torch.where(torch.isfinite(err), err, torch.full_like(err, float("inf")))


def _epnp_core(X, xn, wn, c0, lam, V, gn_iters: int, refine_iters: int):
    """EPnP on clean, well-posed problems (float64). ``X [B,N,3]``; normalised observations
    ``xn [B,N,2]`` (``K^-1`` applied); weights ``wn [B,N]`` >= 0 summing to one; weighted
    centroid ``c0 [B,3]``, principal variances ``lam [B,3]`` and directions ``V [B,3,3]`` of
    the points. Returns ``R [B,3,3], t [B,3]``. Works batch-last inside (see :func:`_mm`)."""
    B, N = X.shape[:2]
    dt, dev = X.dtype, X.device
    sd = lam.clamp_min(1e-300).sqrt()
    Lw = (V * sd.unsqueeze(-2)).permute(1, 2, 0).contiguous()  # [3 xyz, 3 k, B]: control points c_k - c_0
    Xs = (X - c0.unsqueeze(-2)).permute(2, 1, 0).contiguous()  # [3, N, B]
    a = (Xs.unsqueeze(1) * (V / sd.unsqueeze(-2)).permute(1, 2, 0).unsqueeze(2)).sum(0)  # [3, N, B] whitened
    h = torch.cat([torch.ones_like(a[:1]), a])  # [4, N, B]: (1, a), weighted mean (1, 0, 0, 0), second moment I

    # M^T W M of the linear system M x = 0 (two rows per point: the u-row [alpha, 0, -u alpha],
    # the v-row [0, alpha, -v alpha] over the x, y, z coordinates of the control points),
    # written over d (c_0 = d_0, c_k = d_0 + d_k; alpha^T c = h^T d):
    # [[I, 0, -Qu], [0, I, -Qv], [-Qu, -Qv, Quv]] with Q_f = sum_i w_i f_i h_i h_i^T.
    u, v = xn.permute(2, 1, 0)
    w = wn.T
    f = torch.stack([w * u, w * v, w * (u * u + v * v)])  # [3, N, B]
    iu, ju = (torch.tensor(ix, device=dev) for ix in zip(*_TRIU))
    Q = (f.unsqueeze(1) * (h[iu] * h[ju]).unsqueeze(0)).sum(2)  # [3, 10, B]
    Q = Q[:, torch.tensor(_FROM_TRIU, device=dev)].view(3, 4, 4, B)
    Qu, Qv, Quv = Q.unbind(0)
    # For given z-coordinates d_z the x, y ones that minimise |M x|^2 are d_x = Qu d_z,
    # d_y = Qv d_z, leaving d_z^T S d_z with S = Quv - Qu^2 - Qv^2. This 4-dimensional
    # subspace holds the null space of M (exactly for noise-free data); its Rayleigh-Ritz
    # vectors, the generalised eigenvectors of (S, Nm) with Nm the metric of the full
    # 12-vector, stand in for the four smallest eigenvectors of the 12 x 12 M^T W M.
    P = torch.tensor(_METRIC, dtype=dt, device=dev).unsqueeze(-1)
    Qs = torch.stack([Qu, Qv], -1)  # [4, 4, B, 2]
    S = Quv - _mm(Qs, Qs).sum(-1)
    Nm = P + _mm(Qs, _mm(P.unsqueeze(-1), Qs)).sum(-1)
    Lm = torch.linalg.cholesky(Nm.permute(2, 0, 1))
    Sb = S.permute(2, 0, 1)
    E = torch.linalg.solve_triangular(Lm, torch.linalg.solve_triangular(Lm, Sb, upper=False).mT, upper=False)
    _, Y = torch.linalg.eigh(0.5 * (E + E.transpose(-1, -2)))
    dz = torch.linalg.solve_triangular(Lm.transpose(-1, -2), Y, upper=True).permute(1, 2, 0)  # [4 (h), 4 (kernel), B]
    d = torch.stack([_mm(Qu, dz), _mm(Qv, dz), dz])  # [3 xyz, 4 h, 4 kernel, B]
    ctrl = torch.cat([d[:, :1], d[:, 1:] + d[:, :1]], 1)  # [3 xyz, 4 control point, 4 kernel, B]

    ia, ib = (torch.tensor(ix, device=dev) for ix in zip(*_PAIRS))
    dv = ctrl[:, ia] - ctrl[:, ib]  # [3, 6, 4, B]
    G = (dv.unsqueeze(3) * dv.unsqueeze(2)).sum(0)  # [6, 4, 4, B]
    cw = torch.cat([torch.zeros_like(Lw[:, :1]), Lw], 1)  # [3, 4, B] world control points - c0
    dw = cw[:, ia] - cw[:, ib]
    rho = (dw * dw).sum(0)  # [6, B] squared control-point distances
    beta = _gauss_newton_betas(_initial_betas(G, rho), G, rho, gn_iters)  # [4, C, B]
    Rc, tc, err = _place(ctrl, beta, Lw, c0, Q, S)
    best = err.argmin(0)  # the candidate with the smallest algebraic error
    R = Rc.gather(2, best.view(1, 1, 1, B).expand(3, 3, 1, B)).squeeze(2).permute(2, 0, 1)
    t = tc.gather(1, best.view(1, 1, B).expand(3, 1, B)).squeeze(1).T
    if refine_iters > 0:
        R, t = _refine_pose(R, t, X, xn, wn, refine_iters)
    return R, t


def epnp(points_3d: torch.Tensor, points_2d: torch.Tensor, K: torch.Tensor, weights: torch.Tensor | None = None,
         *, return_valid: bool = False, min_points: int = 4, gauss_newton_iters: int = 10, refine_iters: int = 0):
    """Batched EPnP: object pose from 2D-3D correspondences (see the module docstring).

    Args:
        points_3d: ``[B, N, 3]`` object points (metres, object frame).
        points_2d: ``[B, N, 2]`` their observations (pixels).
        K: ``[B, 3, 3]`` intrinsics (pixels), ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``.
        weights: optional ``[B, N]`` per-correspondence weights (relative; 0 drops a point;
            negative values count as 0). Weighted means, covariances and equations use them.
        return_valid: also return the per-sample validity (a :class:`PoseResult`).
        min_points: a sample needs at least this many usable correspondences (at least 4).
        gauss_newton_iters: Gauss-Newton steps on the betas (the paper's refinement; OpenCV
            takes 5, which suffices from 5 points up; 4 points need about 10).
        refine_iters: extra Gauss-Newton steps on the pose over the reprojection error
            (0 = plain EPnP as in the paper and OpenCV's ``SOLVEPNP_EPNP``).

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
    wd = _work_dtype(device)
    X = points_3d.to(wd)
    x = points_2d.to(wd)
    Kd = K.to(wd)
    w = torch.ones(B, N, dtype=wd, device=device) if weights is None else weights.to(wd)

    # usable correspondences
    usable = torch.isfinite(X).all(-1) & torch.isfinite(x).all(-1) & torch.isfinite(w) & (w > 0)
    w = torch.where(usable, w, torch.zeros_like(w))
    X = torch.where(usable.unsqueeze(-1), X, torch.zeros_like(X))
    x = torch.where(usable.unsqueeze(-1), x, torch.zeros_like(x))
    # a usable camera: finite, upper triangular, non-zero focal lengths
    k_ok = torch.isfinite(Kd).all(-1).all(-1)
    Kd = torch.where(k_ok[:, None, None], Kd, torch.eye(3, dtype=wd, device=device))
    Kd = Kd / torch.where(Kd[:, 2:3, 2:3] == 0, torch.ones_like(Kd[:, 2:3, 2:3]), Kd[:, 2:3, 2:3])
    fx, s, cx, fy, cy = Kd[:, 0, 0], Kd[:, 0, 1], Kd[:, 0, 2], Kd[:, 1, 1], Kd[:, 1, 2]
    k_ok = k_ok & (fx.abs() > 1e-12) & (fy.abs() > 1e-12) & (Kd[:, 1, 0] == 0) & (Kd[:, 2, 0] == 0) & (Kd[:, 2, 1] == 0)
    fx = torch.where(k_ok, fx, torch.ones_like(fx)).unsqueeze(-1)
    fy = torch.where(k_ok, fy, torch.ones_like(fy)).unsqueeze(-1)
    vn = (x[..., 1] - cy.unsqueeze(-1)) / fy
    un = (x[..., 0] - cx.unsqueeze(-1) - s.unsqueeze(-1) * vn) / fx
    xn = torch.stack([un, vn], -1)

    # spread of the object points (collinear / planar / coincident sets are unsolvable)
    wn = w / w.sum(-1, keepdim=True).clamp_min(1e-300)
    c0 = (wn.unsqueeze(-1) * X).sum(-2)
    A = X - c0.unsqueeze(-2)
    lam, V = torch.linalg.eigh((wn.unsqueeze(-1) * A).transpose(-1, -2) @ A)
    # eigh's eigenvector signs are arbitrary (they differ between LAPACK builds, CPU and GPU), and
    # with noise EPnP's answer depends on which way each control point lies from the centroid: fix them
    V = V * torch.where((V * _SIGN_DIRECTION.to(V).view(3, 1)).sum(-2, keepdim=True) < 0, -1.0, 1.0).to(V)
    spread_ok = (lam[:, 2] > 1e-20) & (lam[:, 0] > (MIN_SPREAD_RATIO ** 2) * lam[:, 2])
    # ... and of the observations: coincident or collinear image points cannot come from a
    # non-planar object in front of the camera (a collapsed set of votes, for instance)
    d2 = xn - (wn.unsqueeze(-1) * xn).sum(-2, keepdim=True)
    a, b, c = ((wn * d2[..., 0] * d2[..., 0]).sum(-1), (wn * d2[..., 0] * d2[..., 1]).sum(-1),
               (wn * d2[..., 1] * d2[..., 1]).sum(-1))
    half_gap = (((a - c) / 2) ** 2 + b * b).sqrt()
    lam2_max, lam2_min = (a + c) / 2 + half_gap, (a + c) / 2 - half_gap
    spread_ok = spread_ok & (lam2_max > 1e-12) & (lam2_min > (MIN_SPREAD_RATIO ** 2) * lam2_max)
    ok = k_ok & (usable.sum(-1) >= min_points) & spread_ok

    # unsolvable samples become a harmless dummy problem, replaced by the fallback afterwards
    if not bool(ok.all()):
        DX, Dx = _dummy_problem(N, wd, device)
        Dc0 = DX.mean(0)
        Dlam, DV = torch.linalg.eigh((DX - Dc0).T @ (DX - Dc0) / N)
        okb = ok[:, None, None]
        X = torch.where(okb, X, DX)
        xn = torch.where(okb, xn, Dx)
        wn = torch.where(ok[:, None], wn, torch.full_like(wn, 1.0 / N))
        c0 = torch.where(ok[:, None], c0, Dc0)
        lam = torch.where(ok[:, None], lam, Dlam)
        V = torch.where(okb, V, DV)
    R, t = _epnp_core(X, xn, wn, c0, lam, V, gauss_newton_iters, refine_iters)

    ok = ok & torch.isfinite(R).all(-1).all(-1) & torch.isfinite(t).all(-1)
    R_fb, t_fb = _fallback(B, wd, device)
    R = torch.where(ok[:, None, None], R, R_fb).to(out_dtype)
    t = torch.where(ok[:, None], t, t_fb).to(out_dtype)
    return PoseResult(R, t, ok) if return_valid else (R, t)


def epnp_ransac(points_3d: torch.Tensor, points_2d: torch.Tensor, K: torch.Tensor, weights: torch.Tensor | None = None,
                iterations: int = 100, threshold_px: float = 8.0, min_inliers: int = 6, *, confidence: float = 0.99,
                sample_size: int = 5, chunk: int = 25, refit_rounds: int = 2, refine_iters: int = 0,
                generator: torch.Generator | None = None):
    """Batched RANSAC around :func:`epnp`: robust to wrong correspondences (outliers).

    Hypotheses are drawn ``chunk`` at a time for every sample still searching: each is an EPnP
    fit to ``sample_size`` usable correspondences drawn uniformly (all hypotheses of all
    samples are solved in one batched call), scored over all correspondences by the truncated
    squared reprojection error ``sum_i min(e_i^2, threshold_px^2)`` (MSAC; points behind the
    camera count as outliers). As in OpenCV, a sample stops searching once enough hypotheses
    were drawn to have found an outlier-free one with probability ``confidence`` given its best
    inlier ratio so far, or after ``iterations``. The best hypothesis' inliers
    (``e_i < threshold_px``) are then refitted with their weights, and the inlier set updated,
    ``refit_rounds`` times. Defaults follow OpenCV's ``solvePnPRansac`` (100 iterations, 8 px,
    0.99) and the reference code's rule of at least 6 points.

    Memory grows as ``B * chunk * N``.

    Args:
        points_3d ``[B, N, 3]`` (metres), points_2d ``[B, N, 2]`` (pixels), K ``[B, 3, 3]``,
        weights ``[B, N]`` as in :func:`epnp` (used in the refits).
        generator: random generator on the inputs' device (default: torch's global one).

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
    B, N = points_3d.shape[:2]
    device, dtype = points_3d.device, points_3d.dtype
    w = torch.ones(B, N, dtype=dtype, device=device) if weights is None else weights
    usable = (torch.isfinite(points_3d).all(-1) & torch.isfinite(points_2d).all(-1) & torch.isfinite(w) & (w > 0)
              & torch.isfinite(K).all(-1).all(-1).unsqueeze(-1))
    no_inliers = torch.zeros(B, N, dtype=torch.bool, device=device)
    R_fb, t_fb = _fallback(B, dtype, device)
    if N < sample_size:
        return R_fb, t_fb, no_inliers, torch.zeros(B, dtype=torch.bool, device=device)

    thr2 = float(threshold_px) ** 2
    Xs = torch.where(usable.unsqueeze(-1), points_3d, torch.zeros_like(points_3d))
    xs = torch.where(usable.unsqueeze(-1), points_2d, torch.zeros_like(points_2d))
    n_usable = usable.sum(-1)

    def sq_errors(R, t, X, x, Kb):
        Xc = transform_points(X, R, t)
        e2 = ((project_points(Xc, Kb) - x) ** 2).sum(-1)
        return torch.where((Xc[..., 2] > 0) & torch.isfinite(e2), e2, torch.full_like(e2, float("inf")))

    best_cost = torch.full((B,), float("inf"), dtype=dtype, device=device)
    best_inliers = no_inliers.clone()
    active = n_usable >= sample_size
    done = 0
    log_fail = torch.log(torch.tensor(1.0 - confidence, dtype=torch.float64)).item() if confidence < 1 else float("-inf")
    while done < iterations and bool(active.any()):
        ids = active.nonzero().squeeze(1)
        A, H = ids.numel(), min(chunk, iterations - done)
        # minimal sets: the sample_size usable points with the smallest random keys
        keys = torch.rand(A, H, N, generator=generator, device=device)
        keys = torch.where(usable[ids].unsqueeze(1), keys, torch.full_like(keys, 2.0))
        flat = keys.topk(sample_size, dim=-1, largest=False).indices.reshape(A, H * sample_size)
        Xh = torch.gather(Xs[ids], 1, flat.unsqueeze(-1).expand(-1, -1, 3)).reshape(A * H, sample_size, 3)
        xh = torch.gather(xs[ids], 1, flat.unsqueeze(-1).expand(-1, -1, 2)).reshape(A * H, sample_size, 2)
        Kh = K[ids].unsqueeze(1).expand(A, H, 3, 3).reshape(A * H, 3, 3)
        Rh, th, vh = epnp(Xh, xh, Kh, return_valid=True, gauss_newton_iters=5)
        e2 = sq_errors(Rh.reshape(A, H, 3, 3), th.reshape(A, H, 3), Xs[ids].unsqueeze(1), xs[ids].unsqueeze(1),
                       K[ids].unsqueeze(1))  # [A, H, N]
        cost = (e2.clamp_max(thr2) * usable[ids].unsqueeze(1)).sum(-1)
        cost = torch.where(vh.reshape(A, H), cost, torch.full_like(cost, float("inf")))
        chunk_cost, chunk_best = cost.min(-1)
        chunk_inliers = (e2[torch.arange(A, device=device), chunk_best] < thr2) & usable[ids]
        better = chunk_cost < best_cost[ids]
        best_cost[ids] = torch.where(better, chunk_cost, best_cost[ids])
        best_inliers[ids] = torch.where(better.unsqueeze(-1), chunk_inliers, best_inliers[ids])
        done += H
        # adaptive stop: iterations needed for an all-inlier minimal set with the given confidence
        ratio = (best_inliers.sum(-1) / n_usable.clamp_min(1)).double()
        p_clean = ratio.pow(sample_size).clamp(1e-12, 1 - 1e-12)
        needed = log_fail / torch.log1p(-p_clean)
        active = active & (needed > done)

    inliers = best_inliers
    valid = torch.zeros(B, dtype=torch.bool, device=device)
    R, t = R_fb, t_fb
    for _ in range(max(refit_rounds, 1)):
        wi = torch.where(inliers, w, torch.zeros_like(w))
        R, t, valid = epnp(points_3d, points_2d, K, wi, return_valid=True, min_points=max(4, min(min_inliers, N)),
                           refine_iters=refine_iters)
        inliers = (sq_errors(R, t, Xs, xs, K) < thr2) & usable & valid.unsqueeze(-1)
    valid = valid & (inliers.sum(-1) >= min_inliers)
    R = torch.where(valid[:, None, None], R, R_fb)
    t = torch.where(valid[:, None], t, t_fb)
    return R, t, inliers, valid


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
