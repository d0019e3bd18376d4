// HFL-Net's steps around the ONNX graph, for the browser: the JavaScript port of hfl_lite's Python.
//
// The graph (hfl_lite/export.py) maps a crop and two boxes to 2D joints, root-relative vertices and
// joints, and every cell's vote for the object's control points. What comes before and after it is
// here, each function following the Python function it names, with the same numbers:
//
//   checkRequest        hfl_lite.inference.check_request (refuse input before the network runs)
//   defaultIntrinsics   hfl_lite.inference.default_intrinsics
//   cropRequest         hfl_lite.inference.crop_request (the crop of hfl_lite.data.crop, its boxes)
//   warpCrop            CropTransform.warp_image + apply_photometric (bilinear, zeros outside, /255)
//   estimateHandTranslation   hfl_lite.inference.estimate_hand_translation
//   decodeVotes         hfl_lite.geometry.voting.decode_votes
//   voteTopk            hfl_lite.geometry.voting.vote_topk
//   epnp, epnpRansac    hfl_lite.geometry.epnp.epnp / epnp_ransac (one problem, float64)
//   solvePoseFromVotes  hfl_lite.geometry.voting.solve_pose_from_votes (top-k, RANSAC, weighted)
//   implausible         hfl_lite.inference.implausible
//   predictImage        hfl_lite.inference.predict_image, with the network as a function argument
//
// The numbers these functions need (box limits, RANSAC settings, crop factor) come from Python
// through the page's config.json (hfl_lite.web.page_config), so they are written once.
// tests/test_web_pipeline.py runs each function under Node on the inputs of the Python one and
// compares. Matrices are arrays of rows; points arrays of [x, y] or [x, y, z]; all float64.
// RANSAC draws its samples as the Python does (sample_size uniform numbers per hypothesis, each
// picking one of the usable points not taken yet), from a seeded generator of its own (mulberry32)
// unless given the numbers torch drew: with torch's draws both take the same hypotheses, which is how
// the tests compare them on votes that leave the pose ambiguous.

// ------------------------------------------------------------------ small linear algebra
const dot = (a, b) => a.reduce((s, v, i) => s + v * b[i], 0);
const matVec = (M, v) => M.map((row) => dot(row, v));
const matMul = (A, B) => A.map((row) => B[0].map((_, j) => row.reduce((s, v, k) => s + v * B[k][j], 0)));
const transpose = (A) => A[0].map((_, j) => A.map((row) => row[j]));
const eye = (n) => Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

/** Solve A x = b (A n x n) by Gaussian elimination with partial pivoting (torch.linalg.solve). */
export function solve(A, b) {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = c + 1; r < n; r++) {
      const f = M[r][c] / M[c][c];
      for (let k = c; k <= n; k++) M[r][k] -= f * M[c][k];
    }
  }
  const x = new Array(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let k = r + 1; k < n; k++) s -= M[r][k] * x[k];
    x[r] = s / M[r][r];
  }
  return x;
}

/** Inverse of a 3 x 3 matrix (cofactors). */
export function inverse3(M) {
  const [a, b, c] = M;
  const cof = [cross(b, c), cross(c, a), cross(a, b)]; // rows of det * inverse^T
  const det = dot(a, cof[0]);
  return transpose(cof).map((row) => row.map((v) => v / det));
}

/** Lower Cholesky factor of a symmetric positive definite matrix. */
function cholesky(A) {
  const n = A.length;
  const L = A.map(() => new Array(n).fill(0));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i][j];
      for (let k = 0; k < j; k++) s -= L[i][k] * L[j][k];
      L[i][j] = i === j ? Math.sqrt(s) : s / L[j][j];
    }
  }
  return L;
}

/** L^-1 B for lower-triangular L (column by column). */
function solveLower(L, B) {
  const n = L.length;
  const X = B.map((row) => row.slice());
  for (let c = 0; c < B[0].length; c++) {
    for (let i = 0; i < n; i++) {
      let s = X[i][c];
      for (let k = 0; k < i; k++) s -= L[i][k] * X[k][c];
      X[i][c] = s / L[i][i];
    }
  }
  return X;
}

// ------------------------------------------------------------------ cameras and the crop
/** Pixels [N][2] of camera-frame points [N][3] (hfl_lite.geometry.camera.project_points). */
export function projectPoints(points, K, eps = 1e-9) {
  return points.map((p) => {
    const u = matVec(K, p);
    const z = Math.abs(u[2]) < eps ? (u[2] < 0 ? -eps : eps) : u[2];
    return [u[0] / z, u[1] / z];
  });
}

/** R X + t for points [N][3]. */
export function transformPoints(points, R, t) {
  return points.map((p) => matVec(R, p).map((v, i) => v + t[i]));
}

/** A guess at an unknown camera (hfl_lite.inference.default_intrinsics): f = max(width, height)
 * pixels, principal point at the image centre ((W - 1) / 2, (H - 1) / 2). */
export function defaultIntrinsics(width, height) {
  const f = Math.max(width, height);
  return [[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]];
}

function enlargeBox(box, factor) {
  const cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2;
  const hw = ((box[2] - box[0]) / 2) * factor, hh = ((box[3] - box[1]) / 2) * factor;
  return [cx - hw, cy - hh, cx + hw, cy + hh];
}

/** Image pixels [N][2] through the homogeneous affine map A [3][3]. */
export function affinePoints(A, points) {
  return points.map(([x, y]) => [A[0][0] * x + A[0][1] * y + A[0][2], A[1][0] * x + A[1][1] * y + A[1][2]]);
}

/**
 * The network's crop of one image (hfl_lite.inference.crop_request): the union of the hand and
 * object boxes, each enlarged `enlarge` times about its centre, made square about the union's centre,
 * mapped onto size x size pixels without rotation:
 *   A(x) = s (x - c) + ((S - 1) / 2, (S - 1) / 2),  s = S / side   (full-image -> crop pixels)
 *   K_crop = A K (upper-left block s K, principal point mapped by A)
 * and both boxes in crop pixels (the tight box of their mapped corners).
 * handBox, objBox: [x1, y1, x2, y2] image pixels; K [3][3]. Returns {centre, side, A, Ainv, K, handBox, objBox}.
 */
export function cropRequest(K, handBox, objBox, size, enlarge) {
  const h = enlargeBox(handBox, enlarge), o = enlargeBox(objBox, enlarge);
  const box = [Math.min(h[0], o[0]), Math.min(h[1], o[1]), Math.max(h[2], o[2]), Math.max(h[3], o[3])];
  const centre = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2];
  const side = Math.max(box[2] - box[0], box[3] - box[1]);
  const s = size / side;
  // s Kl Kl^-1 (x - c): the same product as the Python, which also rotates, here by the identity
  const Kl = [[K[0][0], K[0][1]], [K[1][0], K[1][1]]];
  const det = Kl[0][0] * Kl[1][1] - Kl[0][1] * Kl[1][0];
  const KlInv = [[Kl[1][1] / det, -Kl[0][1] / det], [-Kl[1][0] / det, Kl[0][0] / det]];
  const lin = matMul(Kl, KlInv).map((row) => row.map((v) => s * v));
  const half = (size - 1) / 2;
  const A = [
    [lin[0][0], lin[0][1], half - (lin[0][0] * centre[0] + lin[0][1] * centre[1])],
    [lin[1][0], lin[1][1], half - (lin[1][0] * centre[0] + lin[1][1] * centre[1])],
    [0, 0, 1],
  ];
  const AK = matMul(A, K);
  const Kc = [[s * K[0][0], s * K[0][1], AK[0][2]], [s * K[1][0], s * K[1][1], AK[1][2]], [0, 0, 1]];
  const boxOf = (b) => {
    const p = affinePoints(A, [[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]]);
    const xs = p.map((q) => q[0]), ys = p.map((q) => q[1]);
    return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
  };
  return { centre, side, A, Ainv: inverse3(A), K: Kc, handBox: boxOf(handBox), objBox: boxOf(objBox) };
}

/**
 * The crop as the network reads it (CropTransform.warp_image, then apply_photometric without
 * augmentation): each crop pixel samples the image at A^-1 (x, y) bilinearly, with zeros outside the
 * image, is rounded to 0..255 as OpenCV's warpAffine rounds, and is divided by 255.
 * image: {rgba (ImageData.data: RGBA bytes), width, height}. Returns Float32Array [3 * size * size]
 * (channels first, RGB).
 */
export function warpCrop(image, Ainv, size) {
  const { rgba, width, height } = image;
  const out = new Float32Array(3 * size * size);
  const plane = size * size;
  const pixel = (x, y, c) => (x >= 0 && x < width && y >= 0 && y < height ? rgba[4 * (y * width + x) + c] : 0);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const sx = Ainv[0][0] * x + Ainv[0][1] * y + Ainv[0][2];
      const sy = Ainv[1][0] * x + Ainv[1][1] * y + Ainv[1][2];
      const x0 = Math.floor(sx), y0 = Math.floor(sy);
      const fx = sx - x0, fy = sy - y0;
      for (let c = 0; c < 3; c++) {
        const v = (pixel(x0, y0, c) * (1 - fx) + pixel(x0 + 1, y0, c) * fx) * (1 - fy)
          + (pixel(x0, y0 + 1, c) * (1 - fx) + pixel(x0 + 1, y0 + 1, c) * fx) * fy;
        out[c * plane + y * size + x] = Math.min(255, Math.floor(v + 0.5)) / 255;
      }
    }
  }
  return out;
}

/**
 * Refuse input that cannot give a pose (hfl_lite.inference.check_request). Returns null when the
 * request is fine, else {argument, message} naming the argument at fault ("image", "hand box",
 * "object box" or "K"). limits: config.limits (min_image_side_px, min_box_side_px, min_box_inside,
 * focal_range).
 */
export function checkRequest(width, height, handBox, objBox, K, limits) {
  if (Math.min(width, height) < limits.min_image_side_px) {
    return { argument: "image", message: `the image is ${width} x ${height} px: at least ${limits.min_image_side_px} px on each side are needed` };
  }
  for (const [name, box] of [["hand box", handBox], ["object box", objBox]]) {
    const [x1, y1, x2, y2] = box;
    if (box.length !== 4 || !box.every(Number.isFinite) || !(x2 > x1) || !(y2 > y1)) {
      return { argument: name, message: `the ${name} must be four numbers x1 y1 x2 y2 with x2 > x1 and y2 > y1` };
    }
    if (Math.min(x2 - x1, y2 - y1) < limits.min_box_side_px) {
      return { argument: name, message: `the ${name} is ${(x2 - x1).toFixed(1)} x ${(y2 - y1).toFixed(1)} px: a box needs at least ${limits.min_box_side_px} px on each side` };
    }
    const inside = Math.max(0, Math.min(x2, width) - Math.max(x1, 0)) * Math.max(0, Math.min(y2, height) - Math.max(y1, 0));
    if (inside < limits.min_box_inside * (x2 - x1) * (y2 - y1)) {
      return { argument: name, message: `the ${name} lies ${inside === 0 ? "entirely" : "mostly"} outside the ${width} x ${height} image` };
    }
  }
  if (K) {
    const [fx, fy, cx, cy] = [K[0][0], K[1][1], K[0][2], K[1][2]];
    const side = Math.max(width, height);
    const [lo, hi] = limits.focal_range;
    if (![fx, fy, cx, cy].every(Number.isFinite) || !(lo * side <= fx && fx <= hi * side && lo * side <= fy && fy <= hi * side)) {
      return { argument: "K", message: `the focal lengths must lie between ${lo * side} and ${hi * side} px for a ${width} x ${height} image` };
    }
    if (!(cx >= 0 && cx <= width && cy >= 0 && cy <= height)) {
      return { argument: "K", message: `the principal point must lie inside the ${width} x ${height} image` };
    }
  }
  return null;
}

// ------------------------------------------------------------------ the hand's translation
/**
 * Camera-frame translation of a root-relative hand from its 2D joints
 * (hfl_lite.inference.estimate_hand_translation): two linear equations per joint,
 * (p_r k_2 - k_r) . (X + t) = 0, solved by least squares, then `refineIters` Gauss-Newton steps on
 * the pixel error. joints2d [N][2] pixels, joints3d [N][3] metres, K [3][3]. Returns t [3] metres.
 */
export function estimateHandTranslation(joints2d, joints3d, K, refineIters = 3) {
  const normal = (rows, rhs) => { // (A^T A) t = A^T b
    const AtA = [0, 1, 2].map((i) => [0, 1, 2].map((j) => rows.reduce((s, r) => s + r[i] * r[j], 0)));
    const Atb = [0, 1, 2].map((i) => rows.reduce((s, r, k) => s + r[i] * rhs[k], 0));
    return solve(AtA, Atb);
  };
  const rows = [], rhs = [];
  joints2d.forEach((p, i) => {
    for (let r = 0; r < 2; r++) {
      const row = [0, 1, 2].map((c) => p[r] * K[2][c] - K[r][c]);
      rows.push(row);
      rhs.push(-dot(row, joints3d[i]));
    }
  });
  let t = normal(rows, rhs);
  for (let it = 0; it < refineIters; it++) {
    const J = [], res = [];
    joints2d.forEach((p, i) => {
      const proj = matVec(K, joints3d[i].map((v, c) => v + t[c]));
      const z = Math.max(proj[2], 1e-6);
      for (let r = 0; r < 2; r++) {
        res.push(proj[r] / z - p[r]);
        J.push([0, 1, 2].map((c) => K[r][c] / z - (proj[r] / (z * z)) * K[2][c]));
      }
    });
    const step = normal(J, res);
    t = t.map((v, c) => v - step[c]);
  }
  return t;
}

// ------------------------------------------------------------------ votes
/**
 * Every cell's vote for every control point (hfl_lite.geometry.voting.decode_votes): cell (i, j) of
 * the R x R grid over the object box votes for ((j + 0.5) / R, (i + 0.5) / R) + offset / offsetScale
 * in box-normalised units, with confidence sigmoid(logit). logits: [21 * R * R], offsets:
 * [21 * 2 * R * R] (the graph's obj_conf_logits and obj_offset); objBox [4] crop pixels. Returns
 * {points: Float64Array [21 * R * R * 2] crop pixels, conf: Float64Array [21 * R * R]} (float64).
 */
export function decodeVotes(logits, offsets, objBox, R, offsetScale) {
  const cells = R * R, K = logits.length / cells;
  const w = Math.max(objBox[2] - objBox[0], 1e-6), h = Math.max(objBox[3] - objBox[1], 1e-6);
  const points = new Float64Array(K * cells * 2), conf = new Float64Array(K * cells);
  for (let k = 0; k < K; k++) {
    for (let c = 0; c < cells; c++) {
      const i = Math.floor(c / R), j = c % R;
      const u = (j + 0.5) / R + offsets[(2 * k) * cells + c] / offsetScale;
      const v = (i + 0.5) / R + offsets[(2 * k + 1) * cells + c] / offsetScale;
      points[2 * (k * cells + c)] = objBox[0] + u * w;
      points[2 * (k * cells + c) + 1] = objBox[1] + v * h;
      conf[k * cells + c] = 1 / (1 + Math.exp(-logits[k * cells + c]));
    }
  }
  return { points, conf };
}

/**
 * The reference's test-time voting (hfl_lite.geometry.voting.vote_topk) on decoded votes: per control
 * point its `rounds` most confident cells; entries not above `threshold` get weight 0.
 * points: [21 * cells * 2] (crop pixels), conf: [21 * cells] (decodeVotes).
 * Returns {points [M][2], weights [M], index [M]} with M = 21 rounds, round-major (entry r * 21 + k
 * is round r of control point k).
 */
export function voteTopk(points, conf, numPoints, cells, rounds, threshold) {
  const picked = [];
  for (let k = 0; k < numPoints; k++) {
    const order = Array.from({ length: cells }, (_, c) => c)
      .sort((a, b) => conf[k * cells + b] - conf[k * cells + a] || a - b);
    picked.push(order.slice(0, rounds));
  }
  const out = { points: [], weights: [], index: [] };
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < numPoints; k++) {
      const c = picked[k][r];
      const value = conf[k * cells + c];
      out.points.push([points[2 * (k * cells + c)], points[2 * (k * cells + c) + 1]]);
      out.weights.push(value > threshold ? value : 0);
      out.index.push(k);
    }
  }
  return out;
}

// ------------------------------------------------------------------ EPnP (one problem)
// hfl_lite.geometry.epnp's constants: MIN_SPREAD_RATIO, _SCORE_POLAR_STEPS, _POLAR_STEPS, _SHARED_STEPS,
// _SHARED_STEPS_MINIMAL, _GAUSS_NEWTON_ITERS, _METRIC, _PRODUCTS, _SYSTEMS (tests/test_web_pipeline.py
// compares them with the Python's)
export const EPNP_CONSTANTS = {
  minSpreadRatio: 1e-3, scorePolarSteps: 2, polarSteps: 9, sharedSteps: 2, sharedStepsMinimal: 10, gaussNewtonIters: 3,
  // the metric of the control points; the products beta_k beta_l (entries 4 k + l of a 4 x 4 matrix) the
  // linearised distance equations solve for, and the unknowns of the systems for 2, 3 and 4 kernel vectors
  metric: [[4, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]],
  products: [0, 1, 2, 3, 5, 6, 10],
  systems: [[0, 1, 4], [0, 1, 2, 4, 5, 6], [0, 1, 2, 3]],
};
const { metric: METRIC, systems: SYSTEMS } = EPNP_CONSTANTS;
const PRODUCTS = EPNP_CONSTANTS.products.map((e) => [e >> 2, e & 3]); // as (k, l)
const FALLBACK = () => ({ R: eye(3), t: [0, 0, 1], valid: false });
const plus = (A, B, s = 1) => A.map((row, i) => row.map((v, j) => v + s * B[i][j]));
const sumSquares = (A) => A.flat().reduce((s, v) => s + v * v, 0);
const column = (A, j) => A.map((row) => row[j]);
const copysign = (a, b) => (b < 0 || Object.is(b, -0) ? -a : a);

/** Cofactor matrix det(X) X^-T (its columns x1 x x2, x2 x x0, x0 x x1 for the columns x_j of X) and
 * determinant of a 3 x 3 matrix (epnp._cofactors). */
function cofactors(X) {
  const c = [cross(column(X, 1), column(X, 2)), cross(column(X, 2), column(X, 0)), cross(column(X, 0), column(X, 1))];
  return { cof: transpose(c), det: dot(column(X, 0), c[0]) };
}

/** A^-1 B for A n x n and B n x m, column by column (torch.linalg.solve). */
const solveColumns = (A, B) => transpose(transpose(B).map((b) => solve(A, b)));

/** Unit eigenvector of the smallest eigenvalue of a symmetric 3 x 3 matrix (epnp._smallest_eigenvector):
 * the eigenvalue by the trigonometric formula, the vector as the longest column of adj(H - lambda I). */
export function smallestEigenvector(H) {
  const q = (H[0][0] + H[1][1] + H[2][2]) / 3;
  const shifted = H.map((row, i) => row.map((v, j) => (i === j ? v - q : v)));
  const p = Math.max(Math.sqrt(sumSquares(shifted) / 6), 1e-300);
  const halfDet = 0.5 * cofactors(shifted.map((row) => row.map((v) => v / p))).det;
  const lam = q + 2 * p * Math.cos(Math.acos(Math.min(Math.max(halfDet, -1), 1)) / 3 + (2 * Math.PI) / 3);
  const { cof } = cofactors(H.map((row, i) => row.map((v, j) => (i === j ? v - lam : v))));
  const norms = [0, 1, 2].map((j) => cof[0][j] * cof[0][j] + cof[1][j] * cof[1][j] + cof[2][j] * cof[2][j]);
  const longest = norms.reduce((best, n, j) => (n > norms[best] ? j : best), 0);
  const v = column(cof, longest);
  const scale = 1 / Math.sqrt(Math.max(dot(v, v), 1e-300));
  return v.map((value) => value * scale);
}

/** X (I - 2 n n^T) for a 3 x 3 X and a unit vector n: X mirrored across the plane normal to n. */
function mirror(X, n) {
  const Xn = matVec(X, n);
  return X.map((row, i) => row.map((v, j) => v - 2 * Xn[i] * n[j]));
}

/** The orthogonal polar factor of X, close to a multiple of a rotation, by `steps` Newton-Schulz
 * iterations X <- 1.5 X - 0.5 X X^T X after scaling X to a Frobenius norm of sqrt(3)
 * (epnp._nearest_rotation). */
function newtonSchulz(X, steps) {
  const s = Math.sqrt(3 / Math.max(sumSquares(X), 1e-300));
  let Y = X.map((row) => row.map((v) => v * s));
  for (let k = 0; k < steps; k++) {
    Y = plus(Y.map((row) => row.map((v) => 1.5 * v)), matMul(Y, matMul(transpose(Y), Y)), -0.5);
  }
  return Y;
}

/** The rotation (det +1) maximising trace(R^T A) for a 3 x 3 A of full rank (epnp._polar_rotation):
 * the polar factor by `steps` scaled Newton iterations X <- (z X + X^-T / z) / 2, z = |det X|^(-1/3);
 * where det A < 0 that factor is a reflection, and the answer is it times I - 2 v v^T, v the eigenvector
 * of the smallest eigenvalue of X^T A (the SVD solution U diag(1, 1, -1) V^T). */
export function polarRotation(A, steps = EPNP_CONSTANTS.polarSteps) {
  let X = A;
  for (let k = 0; k < steps; k++) {
    const { cof, det } = cofactors(X);
    const z = Math.pow(Math.max(Math.abs(det), 1e-300), -1 / 3);
    const a = 0.5 * z, b = 0.5 / (z * det);
    X = X.map((row, i) => row.map((v, j) => a * v + cof[i][j] * b));
  }
  return cofactors(A).det < 0 ? mirror(X, smallestEigenvector(matMul(transpose(X), A))) : X;
}

/** Weighted moments of the correspondences (epnp._moments): X [N][3], normalised observations xn [N][2],
 * weights w [N] (>= 0, positive sum). Returns Mt [4 f][15 p] = sum_i w_i f_i p_i / sum_i w_i for
 * f = (1, u, v, u^2 + v^2), p = (1, x, y, z, xx, xy, xz, yx, yy, yz, zx, zy, zz, u, v) (points relative
 * to the weighted centroid c0 [3]), and c0. */
function moments(X, xn, w) {
  const total = w.reduce((s, v) => s + v, 0);
  const wn = w.map((v) => v / total);
  const c0 = [0, 1, 2].map((i) => X.reduce((s, p, n) => s + p[i] * wn[n], 0));
  const Mt = [0, 1, 2, 3].map(() => new Array(15).fill(0));
  X.forEach((point, n) => {
    const [x, y, z] = point.map((v, i) => v - c0[i]);
    const [u, v] = xn[n];
    const p = [1, x, y, z, x * x, x * y, x * z, x * y, y * y, y * z, x * z, y * z, z * z, u, v];
    const f = [wn[n], wn[n] * u, wn[n] * v, wn[n] * (u * u + v * v)];
    for (let a = 0; a < 4; a++) for (let b = 0; b < 15; b++) Mt[a][b] += f[a] * p[b];
  });
  return { Mt, c0 };
}

/** Object points neither collinear nor planar, image points neither coincident nor collinear
 * (epnp._spread_ok), from the moments. */
function spreadOk(Mt) {
  const [c00, c01, c02, , c11, c12, , , c22] = Mt[0].slice(4, 13);
  const minor0 = c11 * c22 - c12 * c12, minor1 = c00 * c22 - c02 * c02, minor2 = c00 * c11 - c01 * c01;
  const det = c00 * minor0 - c01 * (c01 * c22 - c12 * c02) + c02 * (c01 * c12 - c11 * c02);
  const trace = c00 + c11 + c22;
  const minors = minor0 + minor1 + minor2;
  const r2 = EPNP_CONSTANTS.minSpreadRatio ** 2;
  const spread = trace > 1e-20 && minors > r2 * trace * trace && det > r2 * trace * minors;
  const mu = Mt[0][13], mv = Mt[0][14];
  const a = Mt[1][13] - mu * mu, b = Mt[1][14] - mu * mv, c = Mt[2][14] - mv * mv;
  const halfGap = Math.sqrt(0.25 * (a - c) ** 2 + b * b);
  const lamMax = 0.5 * (a + c) + halfGap, lamMin = 0.5 * (a + c) - halfGap;
  return spread && lamMax > 1e-12 && lamMin > r2 * lamMax;
}

/** A P-orthonormal basis [4 h][4 kernel] ordered roughly like the generalised eigenvectors of (S, P)
 * from the smallest eigenvalue up (epnp._kernel_basis): one shift-and-invert step Y = (S + sigma P)^-1 P
 * and a Cholesky QR factorisation in the P inner product. */
function kernelBasis(S, qScale) {
  const sigma = 1e-6 * (S[0][0] + S[1][1] + S[2][2] + S[3][3]) + 1e-12 * qScale;
  const Y = solveColumns(plus(S, METRIC, sigma), METRIC);
  const L = cholesky(matMul(transpose(Y), matMul(METRIC, Y)));
  return transpose(solveLower(L, transpose(Y)));
}

/** Starting beta vectors, one per entry of `candidates` (numbers of kernel vectors), from the Gram
 * matrices G [6][4][4] and the squared distances rho [6] (epnp._initial_betas). */
function initialBetas(G, rho, candidates) {
  const root = (v) => Math.sqrt(Math.abs(v));
  const Z = G.map((g, p) => [...PRODUCTS.map(([k, l]) => g[k][l] * (k === l ? 1 : 2)), rho[p]]);
  const gram = Z[0].map((_, i) => Z[0].map((__, j) => Z.reduce((s, row) => s + row[i] * row[j], 0)));
  return candidates.map((n) => {
    if (n === 1) { // closed form, beta_1 = sum sqrt(rho) |dv| / sum |dv|^2
      const dv2 = G.map((g) => g[0][0]);
      const num = rho.reduce((s, r, p) => s + Math.sqrt(Math.max(r * dv2[p], 0)), 0);
      return [num / Math.max(dv2.reduce((s, v) => s + v, 0), 1e-300), 0, 0, 0];
    }
    const idx = SYSTEMS[n - 2];
    const AtA = idx.map((i) => idx.map((j) => (i === j ? gram[i][j] * (1 + 1e-10) : gram[i][j]))); // light damping
    const b = solve(AtA, idx.map((i) => gram[i][7]));
    if (n === 2) return [root(b[0]), copysign(root(b[2]), b[1]), 0, 0];
    if (n === 3) return [root(b[0]), copysign(root(b[3]), b[1]), copysign(root(b[5]), b[2]), 0];
    const b1 = root(b[0]);
    return [b1, ...b.slice(1).map((v) => v / Math.max(b1, 1e-300))];
  });
}

/** `iters` lightly damped Gauss-Newton steps on beta^T G_p beta = rho_p (epnp._gauss_newton_betas). */
function gaussNewtonBetas(beta, G, rho, iters) {
  for (let it = 0; it < iters; it++) {
    const g = G.map((Gp) => Gp.map((row) => dot(row, beta))); // [6][4]: G_p beta, half the Jacobian
    const r = g.map((gp, p) => dot(gp, beta) - rho[p]);
    const JtJ = [0, 1, 2, 3].map((k) => [0, 1, 2, 3].map((l) => {
      const s = g.reduce((acc, gp) => acc + gp[k] * gp[l], 0);
      return k === l ? s * (1 + 1e-10) : s; // light damping
    }));
    const step = solve(JtJ, [0, 1, 2, 3].map((k) => g.reduce((acc, gp, p) => acc + gp[k] * r[p], 0)));
    beta = beta.map((v, k) => v - 0.5 * step[k]);
  }
  return beta;
}

/** Camera-frame control geometry [3 xyz][4] of a beta vector (epnp._place): the centroid (column 0)
 * and the displacements, flipped so that the centroid lies in front of the camera. d [3][4 h][4 kernel]. */
function place(d, beta) {
  const cc = d.map((rowsOfAxis) => rowsOfAxis.map((row) => dot(row, beta)));
  const sign = Math.sign(cc[2][0]);
  return cc.map((row) => row.map((v) => v * sign));
}

/** EPnP on a clean, well-posed problem from its moments (epnp._pose): the starting points of
 * `candidates` take `sharedIters` Gauss-Newton steps, the best of them (by the algebraic error of its
 * rigidly placed control points) `gnIters` more; R by the polar rotation of the weighted
 * cross-covariance. Returns {R, t}. */
function poseFromMoments(Mt, c0, gnIters, sharedIters, candidates) {
  const C = [0, 1, 2].map((i) => Mt[0].slice(4 + 3 * i, 7 + 3 * i));
  const L = cholesky(C);
  const Linv = solveLower(L, eye(3));
  // moments of h = (1, a), a = L^-1 (X - c0) the whitened points, for f = u, v, u^2 + v^2
  const [Qu, Qv, Quv] = [1, 2, 3].map((f) => {
    const m1 = matVec(Linv, Mt[f].slice(1, 4));
    const m2 = matMul(matMul(Linv, [0, 1, 2].map((i) => Mt[f].slice(4 + 3 * i, 7 + 3 * i))), transpose(Linv));
    return [[Mt[f][0], ...m1], ...m2.map((row, i) => [m1[i], ...row])];
  });
  const S = plus(Quv, plus(matMul(Qu, Qu), matMul(Qv, Qv)), -1);
  const dz = kernelBasis(S, Quv[0][0]); // [4 h][4 kernel]
  const d = [matMul(Qu, dz), matMul(Qv, dz), dz]; // [3 xyz][4 h][4 kernel]
  // control-point differences d_1, d_2, d_3, d_1 - d_2, d_1 - d_3, d_2 - d_3 over the kernel, their Gram
  // matrices, and the same differences in the world (columns of L)
  const sub = (a, b) => a.map((v, k) => v - b[k]);
  const dv = d.map((dx) => [dx[1], dx[2], dx[3], sub(dx[1], dx[2]), sub(dx[1], dx[3]), sub(dx[2], dx[3])]); // [3][6][4]
  const G = [0, 1, 2, 3, 4, 5].map((p) => [0, 1, 2, 3].map((k) => [0, 1, 2, 3].map(
    (l) => dv.reduce((s, a) => s + a[p][k] * a[p][l], 0))));
  const dw = L.map((row) => [row[0], row[1], row[2], row[0] - row[1], row[0] - row[2], row[1] - row[2]]);
  const rho = [0, 1, 2, 3, 4, 5].map((p) => dw.reduce((s, row) => s + row[p] * row[p], 0));
  let betas = initialBetas(G, rho, candidates).map((beta) => gaussNewtonBetas(beta, G, rho, sharedIters));
  if (candidates.length > 1) {
    const thinAxis = smallestEigenvector(matMul(L, transpose(L)));
    const errors = betas.map((beta) => {
      const cc = place(d, beta);
      let M = matMul(cc.map((row) => row.slice(1)), Linv);
      if (cofactors(M).det < 0) M = mirror(M, thinAxis); // a mirror image: flipped across the thinnest axis
      const RL = matMul(newtonSchulz(M, EPNP_CONSTANTS.scorePolarSteps), L);
      const xh = cc.map((row, i) => [row[0], ...RL[i]]); // rigid control geometry
      const z = xh[2];
      const eu = matVec(Qu, z).map((v, h) => xh[0][h] - v), ev = matVec(Qv, z).map((v, h) => xh[1][h] - v);
      const err = dot(eu, eu) + dot(ev, ev) + dot(z, matVec(S, z));
      return Number.isFinite(err) ? err : Infinity;
    });
    const best = errors.reduce((b, e, i) => (e < errors[b] ? i : b), 0);
    betas = [betas[best]];
  }
  const cc = place(d, gaussNewtonBetas(betas[0], G, rho, gnIters));
  const R = polarRotation(matMul(cc.map((row) => row.slice(1)), transpose(L)), EPNP_CONSTANTS.polarSteps);
  return { R, t: [0, 1, 2].map((i) => cc[i][0] - dot(R[i], c0)) };
}

/**
 * EPnP for one problem (hfl_lite.geometry.epnp.epnp with refine_iters = 0, step for step): X [N][3]
 * object points (metres), x [N][2] pixels, K [3][3], w [N] weights (null: all 1; 0 drops a point).
 * options: minPoints, gaussNewtonIters, candidates (the numbers of kernel vectors whose starting points
 * are compared, as epnp._epnp's). Returns {R, t, valid}; an unsolvable problem (too few usable points,
 * degenerate points or observations, a bad K) gets R = I, t = (0, 0, 1), valid = false.
 */
export function epnp(X, x, K, w = null, {
  minPoints = 4, gaussNewtonIters = EPNP_CONSTANTS.gaussNewtonIters, candidates = [1, 2, 3, 4] } = {}) {
  const N = X.length;
  if (N < minPoints) return FALLBACK();
  const weight = w || new Array(N).fill(1);
  // usable: the sum of a point's six values finite (as the Python tests it) and a positive weight
  const usable = X.map((p, i) => Number.isFinite(p[0] + p[1] + p[2] + x[i][0] + x[i][1] + weight[i]) && weight[i] > 0);
  const nUsable = usable.filter(Boolean).length;
  const k = K.flat();
  const kOk = k.every(Number.isFinite) && Math.abs(k[0]) > 1e-12 && Math.abs(k[4]) > 1e-12 && k[3] === 0
    && k[6] === 0 && k[7] === 0 && k[8] !== 0;
  if (!kOk || nUsable < minPoints) return FALLBACK();
  const [fx, skew, cx, , fy, cy] = k.map((v) => v / k[8]);
  const Xu = X.map((p, i) => (usable[i] ? p : [0, 0, 0]));
  const xn = x.map(([u, v], i) => {
    const vn = ((usable[i] ? v : 0) - cy) / fy;
    return [((usable[i] ? u : 0) - cx - skew * vn) / fx, vn];
  });
  const { Mt, c0 } = moments(Xu, xn, usable.map((u, i) => (u ? weight[i] : 0)));
  if (!spreadOk(Mt)) return FALLBACK();
  const shared = candidates.length === 1 ? 0 : N === 4 ? EPNP_CONSTANTS.sharedStepsMinimal : EPNP_CONSTANTS.sharedSteps;
  const { R, t } = poseFromMoments(Mt, c0, gaussNewtonIters, shared, candidates);
  if (!R.flat().every(Number.isFinite) || !t.every(Number.isFinite)) return FALLBACK();
  return { R, t, valid: true };
}

/** A seeded generator of uniform numbers in [0, 1) (mulberry32). */
export function randomSource(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * sampleSize distinct points of usableIndex, drawn uniformly (epnp._draw_minimal_sets): the k-th is
 * the floor(u (n - k))-th of the n - k not taken yet, its rank moved past the taken ranks in
 * increasing order.
 */
function drawMinimalSet(usableIndex, sampleSize, random) {
  const n = usableIndex.length;
  const taken = [];
  const pick = [];
  for (let k = 0; k < sampleSize; k++) {
    let rank = Math.min(Math.floor(random() * (n - k)), n - k - 1);
    for (const previous of taken) if (rank >= previous) rank += 1;
    pick.push(usableIndex[rank]);
    taken.push(rank);
    taken.sort((a, b) => a - b);
  }
  return pick;
}

/**
 * RANSAC around EPnP for one problem (hfl_lite.geometry.epnp.epnp_ransac, step for step): each
 * hypothesis is EPnP on `sampleSize` usable points drawn uniformly, from the two-kernel-vector start
 * with one Gauss-Newton step, `chunk` at a time; scored by the truncated squared reprojection error
 * (MSAC; points behind the camera are outliers), the first best of a chunk kept when it beats the best
 * so far; the search stops when an outlier-free draw was found with probability `confidence` or after
 * `iterations`; the best hypothesis' inliers are refitted by epnp with their weights `refitRounds`
 * times. opts: config.ransac (iterations, threshold_px, confidence, sample_size, chunk, refit_rounds)
 * plus min_inliers and random (a function giving uniform numbers in [0, 1); default randomSource(0)).
 * Each hypothesis takes sample_size numbers (drawMinimalSet), in the order of
 * torch.rand(1, chunk, sample_size) in the Python. Returns {R, t, inliers [N] bool, valid}.
 */
export function epnpRansac(X, x, K, w, opts) {
  const { iterations, threshold_px: thresholdPx, confidence, sample_size: sampleSize, chunk,
    refit_rounds: refitRounds, min_inliers: minInliers, random = randomSource(0) } = opts;
  const N = X.length;
  const weight = w || new Array(N).fill(1);
  const kFinite = K.flat().every(Number.isFinite);
  const usable = X.map((p, i) => Number.isFinite(p[0] + p[1] + p[2] + x[i][0] + x[i][1] + weight[i])
    && weight[i] > 0 && kFinite);
  const noInliers = new Array(N).fill(false);
  if (N < sampleSize) return { ...FALLBACK(), inliers: noInliers };
  const Xu = X.map((p, i) => (usable[i] ? p : [0, 0, 0]));
  const xu = x.map((p, i) => (usable[i] ? p : [0, 0]));
  const thr2 = thresholdPx ** 2;
  const usableIndex = X.map((_, i) => i).filter((i) => usable[i]);
  const nUsable = usableIndex.length;
  // squared pixel errors of every point under K [R | t] (epnp._sq_reprojection_errors): behind the
  // camera or not finite -> Infinity
  const sqErrors = (R, t) => {
    const P = matMul(K, R.map((row, i) => [...row, t[i]]));
    return Xu.map((p, i) => {
      const [u, v, depth] = matVec(P, [...p, 1]);
      const du = u - xu[i][0] * depth, dv = v - xu[i][1] * depth;
      const e2 = (du * du + dv * dv) / (depth * depth);
      return depth > 0 && Number.isFinite(e2) ? e2 : Infinity;
    });
  };
  let bestCost = Infinity;
  let bestInliers = noInliers;
  let active = nUsable >= sampleSize;
  let done = 0;
  const logFail = confidence < 1 ? Math.log(1 - confidence) : -Infinity;
  while (done < iterations && active) {
    const H = Math.min(chunk, iterations - done);
    let chunkCost = Infinity, chunkErrors = null;
    for (let hyp = 0; hyp < H; hyp++) {
      const pick = drawMinimalSet(usableIndex, sampleSize, random);
      const fit = epnp(pick.map((i) => Xu[i]), pick.map((i) => xu[i]), K, null,
        { gaussNewtonIters: 1, candidates: [2] });
      const e2 = sqErrors(fit.R, fit.t);
      const cost = fit.valid ? e2.reduce((acc, e, i) => acc + Math.min(e, thr2) * (usable[i] ? 1 : 0), 0) : Infinity;
      if (chunkErrors === null || cost < chunkCost) { chunkCost = cost; chunkErrors = e2; }
    }
    if (chunkCost < bestCost) {
      bestCost = chunkCost;
      bestInliers = chunkErrors.map((e, i) => e < thr2 && usable[i]);
    }
    done += H;
    const ratio = bestInliers.filter(Boolean).length / Math.max(nUsable, 1);
    const pClean = Math.min(Math.max(ratio ** sampleSize, 1e-12), 1 - 1e-12);
    active = active && logFail / Math.log1p(-pClean) > done;
  }
  let inliers = bestInliers;
  let fit = FALLBACK();
  for (let round = 0; round < Math.max(refitRounds, 1); round++) {
    fit = epnp(Xu, xu, K, weight.map((v, i) => (inliers[i] ? v : 0)),
      { minPoints: Math.max(4, Math.min(minInliers, N)) });
    const e2 = sqErrors(fit.R, fit.t);
    inliers = e2.map((e, i) => e < thr2 && usable[i] && fit.valid);
  }
  const valid = fit.valid && inliers.filter(Boolean).length >= minInliers;
  return valid ? { R: fit.R, t: fit.t, inliers, valid } : { ...FALLBACK(), inliers };
}

/**
 * Object pose from the graph's votes (hfl_lite.geometry.voting.solve_pose_from_votes with the
 * defaults predict uses: top-k votes, RANSAC EPnP, confidence weights). logits, offsets: the graph's
 * obj_conf_logits and obj_offset of one image; objBox [4] the object box (crop pixels); ctrl3d [21][3];
 * K the crop's intrinsics; config: page config (roi_size, votes, ransac); random: RANSAC's random
 * numbers (see epnpRansac). Returns {R, t, valid, inliers, votes}.
 */
export function solvePoseFromVotes(logits, offsets, objBox, ctrl3d, K, config, random = randomSource(0)) {
  const numPoints = ctrl3d.length;
  const { points, conf } = decodeVotes(logits, offsets, objBox, config.roi_size, config.votes.offset_scale);
  const votes = voteTopk(points, conf, numPoints, conf.length / numPoints, config.votes.rounds, config.votes.threshold);
  const pose = epnpRansac(votes.index.map((k) => ctrl3d[k]), votes.points, K, votes.weights,
    { ...config.ransac, min_inliers: config.votes.min_points, random });
  return { ...pose, votes };
}

/** Why a result cannot be right (hfl_lite.inference.implausible): {hand, object}, each a reason or
 * null. depthRange: config.limits.plausible_depth_m. */
export function implausible(result, depthRange) {
  const [lo, hi] = depthRange;
  const placed = (name, points, centre) => {
    const z = centre[2];
    if (!points.flat().every(Number.isFinite)) return "its estimated position is not finite";
    if (z <= 0 || points.some((p) => p[2] <= 0)) return `it would lie behind the camera (${name} z = ${z.toPrecision(3)} m)`;
    if (!(lo <= z && z <= hi)) return `its ${name} would lie ${z.toPrecision(3)} m from the camera, outside the plausible ${lo} to ${hi} m`;
    return null;
  };
  const hand = placed("wrist", result.jointsCam, result.handTrans);
  const object = result.objValid ? placed("centre", [result.objTrans], result.objTrans)
    : "too few confident votes (EPnP fell back to a default pose)";
  return { hand, object };
}

/** Rows [n][dim] of a flat typed array. */
export function rows(flat, dim) {
  return Array.from({ length: flat.length / dim }, (_, i) => Array.from(flat.slice(dim * i, dim * i + dim)));
}

/**
 * One full image to the hand and object in its camera frame (hfl_lite.inference.predict_image).
 * image {rgba, width, height}; request {handBox, objBox, K (null: defaultIntrinsics), ctrl3d, and
 * optionally random, RANSAC's random numbers (default randomSource(0))};
 * network: async (Float32Array crop [3 S S], handBox [4], objBox [4]) -> the graph's outputs
 * {joints2d, verts, joints, obj_conf_logits, obj_offset} as flat Float32Arrays; config: page config.
 * Throws an Error naming the argument when checkRequest refuses the input. Returns the result
 * (crop pixels and camera frame, metres) with the milliseconds each step took.
 */
export async function predictImage(network, image, request, config, now = () => performance.now()) {
  const K = request.K || defaultIntrinsics(image.width, image.height);
  const problem = checkRequest(image.width, image.height, request.handBox, request.objBox, request.K, config.limits);
  if (problem) throw Object.assign(new Error(problem.message), { argument: problem.argument });
  const start = now();
  const crop = cropRequest(K, request.handBox, request.objBox, config.image_size, config.crop_enlarge);
  const pixels = warpCrop(image, crop.Ainv, config.image_size);
  const cropped = now();
  const out = await network(pixels, crop.handBox, crop.objBox);
  const networked = now();
  const joints2d = rows(out.joints2d, 2), joints = rows(out.joints, 3), verts = rows(out.verts, 3);
  const handTrans = estimateHandTranslation(joints2d, joints, crop.K);
  // predict_image hands the pose step the crop's K, the object box and the control points in float32 (the
  // network's dtype), then solves in float64: the same values here
  const float32 = (a) => a.map((v) => (Array.isArray(v) ? float32(v) : Math.fround(v)));
  const pose = solvePoseFromVotes(out.obj_conf_logits, out.obj_offset, float32(crop.objBox), float32(request.ctrl3d),
    float32(crop.K), config, request.random || randomSource(0));
  const done = now();
  const add = (points) => points.map((p) => p.map((v, i) => v + handTrans[i]));
  const result = {
    K, crop, pixels, joints2d, joints, verts, handTrans, jointsCam: add(joints), vertsCam: add(verts),
    joints2dFull: affinePoints(crop.Ainv, joints2d), objRot: pose.R, objTrans: pose.t, objValid: pose.valid,
    votes: pose.votes, inliers: pose.inliers, network: out,
    ms: { crop: cropped - start, network: networked - cropped, pose: done - networked, total: done - start },
  };
  result.problems = implausible(result, config.limits.plausible_depth_m);
  return result;
}
