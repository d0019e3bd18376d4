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
// RANSAC draws its samples as the Python does (the usable points with the smallest random keys), from
// a seeded generator of its own (mulberry32) unless given the keys torch drew: with torch's keys both
// take the same hypotheses, which is how the tests compare them on votes that leave the pose ambiguous.

// ------------------------------------------------------------------ small linear algebra
const dot = (a, b) => a.reduce((s, v, i) => s + v * b[i], 0);
const matVec = (M, v) => M.map((row) => dot(row, v));
const matMul = (A, B) => A.map((row) => B[0].map((_, j) => row.reduce((s, v, k) => s + v * B[k][j], 0)));
const transpose = (A) => A[0].map((_, j) => A.map((row) => row[j]));
const eye = (n) => Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const maxAbs = (values) => values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

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

/** Eigen decomposition of a symmetric matrix by cyclic Jacobi rotations: eigenvalues ascending and
 * the matching eigenvectors as the columns of `vectors` (torch.linalg.eigh; signs may differ). Each
 * rotation zeroes its pair; after four sweeps a pair too small to change its diagonal entries is
 * zeroed without one, so the sweeps end (the rule of Numerical Recipes' jacobi). */
export function symmetricEigen(S) {
  const n = S.length;
  const A = S.map((row) => row.slice());
  const V = eye(n);
  for (let sweep = 0; sweep < 50; sweep++) {
    let off = 0;
    for (let p = 0; p < n - 1; p++) for (let q = p + 1; q < n; q++) off += Math.abs(A[p][q]);
    if (off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const g = 100 * Math.abs(A[p][q]);
        if (sweep > 3 && Math.abs(A[p][p]) + g === Math.abs(A[p][p]) && Math.abs(A[q][q]) + g === Math.abs(A[q][q])) {
          A[p][q] = A[q][p] = 0;
          continue;
        }
        if (A[p][q] === 0) continue;
        const theta = (A[q][q] - A[p][p]) / (2 * A[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) { // A <- J^T A J, columns then rows
          const akp = A[k][p], akq = A[k][q];
          A[k][p] = c * akp - s * akq;
          A[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p][k], aqk = A[q][k];
          A[p][k] = c * apk - s * aqk;
          A[q][k] = s * apk + c * aqk;
        }
        A[p][q] = A[q][p] = 0; // what the rotation was for, without its rounding
        for (let k = 0; k < n; k++) {
          const vkp = V[k][p], vkq = V[k][q];
          V[k][p] = c * vkp - s * vkq;
          V[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => A[i][i] - A[j][j]);
  return { values: order.map((i) => A[i][i]), vectors: V.map((row) => order.map((i) => row[i])) };
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

/** L^-T B for lower-triangular L. */
function solveLowerTransposed(L, B) {
  const n = L.length;
  const X = B.map((row) => row.slice());
  for (let c = 0; c < B[0].length; c++) {
    for (let i = n - 1; i >= 0; i--) {
      let s = X[i][c];
      for (let k = i + 1; k < n; k++) s -= L[k][i] * X[k][c];
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
const MIN_SPREAD_RATIO = 1e-3; // hfl_lite.geometry.epnp.MIN_SPREAD_RATIO
const SIGN_DIRECTION = [1, Math.SQRT2 - 1, (Math.SQRT2 - 1) ** 2]; // hfl_lite.geometry.epnp._SIGN_DIRECTION
const PAIRS = [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]];
const METRIC = [[4, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]];
const GN_PRUNE = [2, 5];
const FALLBACK = () => ({ R: eye(3), t: [0, 0, 1], valid: false });

/** Least squares A x = b through lightly damped normal equations (epnp._ridge_solve). */
function ridgeSolve(A, b, rel = 1e-12) {
  const n = A[0].length;
  const AtA = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => A.reduce((s, r) => s + r[i] * r[j], 0)));
  let trace = 0;
  for (let i = 0; i < n; i++) trace += AtA[i][i];
  const damp = rel * Math.max(trace, 1e-300);
  for (let i = 0; i < n; i++) AtA[i][i] += damp;
  return solve(AtA, Array.from({ length: n }, (_, i) => A.reduce((s, r, k) => s + r[i] * b[k], 0)));
}

/** The four starting beta vectors (epnp._initial_betas). G [6][4][4], rho [6]. */
function initialBetas(G, rho) {
  const column = (k, l) => G.map((g) => g[k][l] * (k === l ? 1 : 2));
  const system = (pairs) => rho.map((_, p) => pairs.map(([k, l]) => column(k, l)[p]));
  const root = (v) => Math.sqrt(Math.abs(v));
  const sign = (v) => (v < 0 ? -1 : 1);
  const dv2 = G.map((g) => Math.max(g[0][0], 0));
  const b1 = rho.reduce((s, r, p) => s + Math.sqrt(Math.max(r, 0) * dv2[p]), 0) / Math.max(dv2.reduce((a, b) => a + b, 0), 1e-300);
  const s2 = ridgeSolve(system([[0, 0], [0, 1], [1, 1]]), rho);
  const s3 = ridgeSolve(system([[0, 0], [0, 1], [0, 2], [1, 1], [1, 2], [2, 2]]), rho);
  const s4 = ridgeSolve(system([[0, 0], [0, 1], [0, 2], [0, 3]]), rho);
  const b4 = root(s4[0]);
  return [
    [b1, 0, 0, 0],
    [root(s2[0]), root(s2[2]) * sign(s2[1]), 0, 0],
    [root(s3[0]), root(s3[3]) * sign(s3[1]), root(s3[5]) * sign(s3[2]), 0],
    [b4, s4[1] / Math.max(b4, 1e-300), s4[2] / Math.max(b4, 1e-300), s4[3] / Math.max(b4, 1e-300)],
  ];
}

/** Solve a symmetric positive definite 4 x 4 system by an unrolled LDL^T (epnp._spd4_solve). */
function spd4Solve(a, b) {
  const [a00, a01, a02, a03, a11, a12, a13, a22, a23, a33] = a;
  const [b0, b1, b2, b3] = b;
  const l10 = a01 / a00, l20 = a02 / a00, l30 = a03 / a00;
  const d1 = a11 - l10 * a01;
  const m21 = a12 - l20 * a01, m31 = a13 - l30 * a01;
  const l21 = m21 / d1, l31 = m31 / d1;
  const d2 = a22 - l20 * a02 - l21 * m21;
  const m32 = a23 - l30 * a02 - l31 * m21;
  const l32 = m32 / d2;
  const d3 = a33 - l30 * a03 - l31 * m31 - l32 * m32;
  const y1 = b1 - l10 * b0;
  const y2 = b2 - l20 * b0 - l21 * y1;
  const x3 = (b3 - l30 * b0 - l31 * y1 - l32 * y2) / d3;
  const x2 = y2 / d2 - l32 * x3;
  const x1 = y1 / d1 - l21 * x2 - l31 * x3;
  const x0 = b0 / a00 - l10 * x1 - l20 * x2 - l30 * x3;
  return [x0, x1, x2, x3];
}

const TRIU = [];
for (let i = 0; i < 4; i++) for (let j = i; j < 4; j++) TRIU.push([i, j]);

/** Damped Gauss-Newton on beta^T G_p beta = rho_p (epnp._gauss_newton_betas, one candidate). */
function gaussNewtonBetas(beta, G, rho, iters) {
  beta = beta.slice();
  for (let it = 0; it < iters; it++) {
    const Gb = G.map((g) => g.map((row) => dot(row, beta))); // [6][4]
    const r = Gb.map((gb, p) => dot(gb, beta) - rho[p]);
    const JtJ = TRIU.map(([i, j]) => Gb.reduce((s, gb) => s + gb[i] * gb[j], 0));
    const diagSum = TRIU.reduce((s, [i, j], e) => s + (i === j ? JtJ[e] : 0), 0);
    TRIU.forEach(([i, j], e) => { if (i === j) JtJ[e] += 1e-10 * Math.max(diagSum, 1e-300); });
    const rhs = [0, 1, 2, 3].map((k) => Gb.reduce((s, gb, p) => s + gb[k] * r[p], 0));
    const step = spd4Solve(JtJ, rhs).map((v) => 0.5 * v);
    beta = beta.map((v, k) => v - step[k]);
    if (GN_PRUNE.includes(it) && it < iters - 1 && !(maxAbs(step) > 1e-10 * maxAbs(beta))) break;
  }
  return beta;
}

/** The rotation maximising trace(R^T A) (epnp._nearest_rotation): Newton's polar iteration with
 * determinant scaling; where it does not apply or converge, the unit quaternion of largest
 * eigenvalue of Horn's 4 x 4 matrix (the same maximiser as the SVD formula of the Python). */
export function nearestRotation(A, iters = 6) {
  const cofactors = (X) => {
    const col = (j) => [X[0][j], X[1][j], X[2][j]];
    const c = [cross(col(1), col(2)), cross(col(2), col(0)), cross(col(0), col(1))]; // columns
    return { cof: [0, 1, 2].map((i) => [c[0][i], c[1][i], c[2][i]]), det: dot(col(0), c[0]) };
  };
  const detA = cofactors(A).det;
  const scale = maxAbs(A.flat());
  const newton = Number.isFinite(detA) && detA > 1e-12 * scale ** 3;
  if (newton) {
    let X = A.map((row) => row.slice());
    for (let k = 0; k < iters; k++) {
      const { cof, det } = cofactors(X);
      const z = Math.pow(det, -1 / 3);
      X = X.map((row, i) => row.map((v, j) => 0.5 * (z * v + cof[i][j] / (z * det))));
    }
    const XtX = matMul(transpose(X), X);
    if (maxAbs(XtX.flat().map((v, e) => v - (e % 4 === 0 ? 1 : 0))) < 1e-10) return X;
  }
  const [[a, b, c], [d, e, f], [g, h, i]] = A;
  const N = [
    [a + e + i, h - f, c - g, d - b],
    [h - f, a - e - i, b + d, c + g],
    [c - g, b + d, e - a - i, f + h],
    [d - b, c + g, f + h, i - a - e],
  ];
  const { vectors } = symmetricEigen(N);
  const [w, x, y, z] = vectors.map((row) => row[3]);
  return [
    [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
    [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
    [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
  ];
}

/** EPnP on a clean, well-posed problem (epnp._epnp_core): X [N][3], normalised observations
 * xn [N][2], weights wn [N] summing to one, centroid c0, principal variances lam and directions V. */
function epnpCore(X, xn, wn, c0, lam, V, gnIters) {
  const sd = lam.map((l) => Math.sqrt(Math.max(l, 1e-300)));
  const Lw = [0, 1, 2].map((i) => [0, 1, 2].map((k) => V[i][k] * sd[k])); // control points c_k - c_0
  const h = X.map((p) => {
    const d = p.map((v, i) => v - c0[i]);
    return [1, ...[0, 1, 2].map((k) => (d[0] * V[0][k] + d[1] * V[1][k] + d[2] * V[2][k]) / sd[k])];
  });
  const Q = [0, 1, 2].map(() => [0, 1, 2, 3].map(() => [0, 0, 0, 0]));
  X.forEach((_, n) => {
    const [u, v] = xn[n];
    const f = [wn[n] * u, wn[n] * v, wn[n] * (u * u + v * v)];
    for (const [p, q] of TRIU) {
      const hh = h[n][p] * h[n][q];
      for (let m = 0; m < 3; m++) Q[m][p][q] += f[m] * hh;
    }
  });
  for (let m = 0; m < 3; m++) for (const [p, q] of TRIU) Q[m][q][p] = Q[m][p][q];
  const [Qu, Qv, Quv] = Q;
  const QuQu = matMul(Qu, Qu), QvQv = matMul(Qv, Qv);
  const S = Quv.map((row, i) => row.map((val, j) => val - QuQu[i][j] - QvQv[i][j]));
  const QPQu = matMul(Qu, matMul(METRIC, Qu)), QPQv = matMul(Qv, matMul(METRIC, Qv));
  const Nm = METRIC.map((row, i) => row.map((val, j) => val + QPQu[i][j] + QPQv[i][j]));
  const L = cholesky(Nm);
  const E = solveLower(L, transpose(solveLower(L, S)));
  const { vectors: Y } = symmetricEigen(E.map((row, i) => row.map((val, j) => 0.5 * (val + E[j][i]))));
  const dz = solveLowerTransposed(L, Y); // [4 h][4 kernel]
  const d = [matMul(Qu, dz), matMul(Qv, dz), dz]; // [3 xyz][4 h][4 kernel]
  const ctrl = d.map((dx) => dx.map((row, cp) => row.map((v, k) => (cp === 0 ? v : v + dx[0][k])))); // [xyz][cp][kernel]

  const G = PAIRS.map(([ia, ib]) => {
    const dv = [0, 1, 2].map((i) => [0, 1, 2, 3].map((k) => ctrl[i][ia][k] - ctrl[i][ib][k]));
    return [0, 1, 2, 3].map((k) => [0, 1, 2, 3].map((l) => dv.reduce((s, row) => s + row[k] * row[l], 0)));
  });
  const cw = [0, 1, 2].map((i) => [0, ...Lw[i]]);
  const rho = PAIRS.map(([ia, ib]) => [0, 1, 2].reduce((s, i) => s + (cw[i][ia] - cw[i][ib]) ** 2, 0));

  let best = null;
  for (const start of initialBetas(G, rho)) {
    const beta = gaussNewtonBetas(start, G, rho, gnIters);
    let cc = [0, 1, 2].map((i) => [0, 1, 2, 3].map((cp) => dot(ctrl[i][cp], beta)));
    if (cc[2][0] < 0) cc = cc.map((row) => row.map((v) => -v));
    const crossCov = [0, 1, 2].map((i) => [0, 1, 2].map((j) => [0, 1, 2].reduce((s, k) => s + (cc[i][k + 1] - cc[i][0]) * Lw[j][k], 0)));
    const R = nearestRotation(crossCov);
    const t = [0, 1, 2].map((i) => cc[i][0] - dot(R[i], c0));
    const xh = [0, 1, 2].map((i) => [cc[i][0], ...[0, 1, 2].map((k) => dot(R[i], [Lw[0][k], Lw[1][k], Lw[2][k]]))]);
    const z = xh[2];
    const resU = matVec(Qu, z).map((v, k) => xh[0][k] - v), resV = matVec(Qv, z).map((v, k) => xh[1][k] - v);
    let err = dot(resU, resU) + dot(resV, resV) + dot(z, matVec(S, z));
    if (!Number.isFinite(err)) err = Infinity;
    if (best === null || err < best.err) best = { R, t, err };
  }
  return best;
}

/**
 * EPnP for one problem (hfl_lite.geometry.epnp.epnp): X [N][3] object points (metres), x [N][2]
 * pixels, K [3][3], w [N] weights (null: all 1; 0 drops a point). Returns {R, t, valid}; an
 * unsolvable problem (too few usable points, degenerate points or observations, a bad K) gets
 * R = I, t = (0, 0, 1), valid = false.
 */
export function epnp(X, x, K, w = null, { minPoints = 4, gaussNewtonIters = 10 } = {}) {
  const N = X.length;
  if (N < minPoints) return FALLBACK();
  const usable = X.map((p, i) => p.every(Number.isFinite) && x[i].every(Number.isFinite)
    && Number.isFinite(w ? w[i] : 1) && (w ? w[i] : 1) > 0);
  const weight = usable.map((u, i) => (u ? (w ? w[i] : 1) : 0));
  const Xu = X.map((p, i) => (usable[i] ? p : [0, 0, 0]));
  const xu = x.map((p, i) => (usable[i] ? p : [0, 0]));
  let kOk = K.flat().every(Number.isFinite);
  let Kd = kOk ? K : eye(3);
  const k22 = Kd[2][2] === 0 ? 1 : Kd[2][2];
  Kd = Kd.map((row) => row.map((v) => v / k22));
  const [fx, s, cx, fy, cy] = [Kd[0][0], Kd[0][1], Kd[0][2], Kd[1][1], Kd[1][2]];
  kOk = kOk && Math.abs(fx) > 1e-12 && Math.abs(fy) > 1e-12 && Kd[1][0] === 0 && Kd[2][0] === 0 && Kd[2][1] === 0;
  if (!kOk) return FALLBACK();
  const xn = xu.map(([u, v]) => {
    const vn = (v - cy) / fy;
    return [(u - cx - s * vn) / fx, vn];
  });
  const total = Math.max(weight.reduce((a, b) => a + b, 0), 1e-300);
  const wn = weight.map((v) => v / total);
  const c0 = [0, 1, 2].map((i) => Xu.reduce((acc, p, n) => acc + wn[n] * p[i], 0));
  const cov = [0, 1, 2].map((i) => [0, 1, 2].map((j) => Xu.reduce((acc, p, n) => acc + wn[n] * (p[i] - c0[i]) * (p[j] - c0[j]), 0)));
  const { values: lam, vectors: eig } = symmetricEigen(cov);
  const flip = [0, 1, 2].map((k) => (eig[0][k] * SIGN_DIRECTION[0] + eig[1][k] * SIGN_DIRECTION[1] + eig[2][k] * SIGN_DIRECTION[2] < 0 ? -1 : 1));
  const V = eig.map((row) => row.map((v, k) => v * flip[k])); // the Python's sign convention (epnp._SIGN_DIRECTION)
  const ratio2 = MIN_SPREAD_RATIO ** 2;
  let ok = lam[2] > 1e-20 && lam[0] > ratio2 * lam[2];
  const m = [0, 1].map((i) => xn.reduce((acc, p, n) => acc + wn[n] * p[i], 0));
  let a = 0, b = 0, c = 0;
  xn.forEach((p, n) => {
    const dx = p[0] - m[0], dy = p[1] - m[1];
    a += wn[n] * dx * dx; b += wn[n] * dx * dy; c += wn[n] * dy * dy;
  });
  const halfGap = Math.sqrt(((a - c) / 2) ** 2 + b * b);
  const lmax = (a + c) / 2 + halfGap, lmin = (a + c) / 2 - halfGap;
  ok = ok && lmax > 1e-12 && lmin > ratio2 * lmax && usable.filter(Boolean).length >= minPoints;
  if (!ok) return FALLBACK();
  const { R, t } = epnpCore(Xu, xn, wn, c0, lam, V, gaussNewtonIters);
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
 * RANSAC around EPnP for one problem (hfl_lite.geometry.epnp.epnp_ransac, same rules): hypotheses
 * from `sampleSize` usable points drawn uniformly, `chunk` at a time, scored by the truncated squared
 * reprojection error (MSAC; points behind the camera are outliers); the search stops when an
 * outlier-free draw was found with probability `confidence` or after `iterations`; the best
 * hypothesis' inliers are refitted with their weights `refitRounds` times. opts: config.ransac
 * (iterations, threshold_px, confidence, sample_size, chunk, refit_rounds) plus min_inliers and
 * random (a function giving uniform numbers in [0, 1); default randomSource(0)). Each hypothesis takes
 * one number per point (its key) and uses the usable points with the smallest keys, in the order of
 * torch.rand(1, chunk, N) in the Python. Returns {R, t, inliers [N] bool, valid}.
 */
export function epnpRansac(X, x, K, w, opts) {
  const { iterations, threshold_px: thresholdPx, confidence, sample_size: sampleSize, chunk,
    refit_rounds: refitRounds, min_inliers: minInliers, random = randomSource(0) } = opts;
  const N = X.length;
  const weight = w || new Array(N).fill(1);
  const kFinite = K.flat().every(Number.isFinite);
  const usable = X.map((p, i) => p.every(Number.isFinite) && x[i].every(Number.isFinite)
    && Number.isFinite(weight[i]) && weight[i] > 0 && kFinite);
  const noInliers = new Array(N).fill(false);
  if (N < sampleSize) return { ...FALLBACK(), inliers: noInliers };
  const thr2 = thresholdPx ** 2;
  const nUsable = usable.filter(Boolean).length;
  const sqErrors = (R, t) => X.map((p, i) => {
    if (!usable[i]) return Infinity;
    const Xc = matVec(R, p).map((v, k) => v + t[k]);
    const [px] = projectPoints([Xc], K);
    const e2 = (px[0] - x[i][0]) ** 2 + (px[1] - x[i][1]) ** 2;
    return Xc[2] > 0 && Number.isFinite(e2) ? e2 : Infinity;
  });
  let bestCost = Infinity;
  let bestInliers = noInliers;
  let active = nUsable >= sampleSize;
  let done = 0;
  const logFail = confidence < 1 ? Math.log(1 - confidence) : -Infinity;
  while (done < iterations && active) {
    const H = Math.min(chunk, iterations - done);
    let chunkCost = Infinity, chunkErrors = null;
    for (let hyp = 0; hyp < H; hyp++) {
      const keys = X.map((_, i) => { const key = random(); return usable[i] ? key : 2; });
      const pick = keys.map((_, i) => i).sort((a, b) => keys[a] - keys[b] || a - b).slice(0, sampleSize);
      const fit = epnp(pick.map((i) => X[i]), pick.map((i) => x[i]), K, null, { gaussNewtonIters: 5 });
      if (!fit.valid) continue;
      const e2 = sqErrors(fit.R, fit.t);
      const cost = e2.reduce((acc, e, i) => acc + (usable[i] ? Math.min(e, thr2) : 0), 0);
      if (cost < chunkCost) { chunkCost = cost; chunkErrors = e2; }
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
    const wi = weight.map((v, i) => (inliers[i] ? v : 0));
    fit = epnp(X, x, K, wi, { minPoints: Math.max(4, Math.min(minInliers, N)) });
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
  const pose = solvePoseFromVotes(out.obj_conf_logits, out.obj_offset, crop.objBox, request.ctrl3d, crop.K, config,
    request.random || randomSource(0));
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
