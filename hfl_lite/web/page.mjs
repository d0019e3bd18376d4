// The book's "Try it" page: HFL-Net on the reader's machine, in the browser, with no server behind it.
//
// Mounts itself on every element with id "hfl-live" (data-base: the folder of config.json, the model
// and onnxruntime-web; data-compact: image and results only; data-threads: WebAssembly threads), whose
// own content (FALLBACK_HTML of hfl_lite.web) stays in view where this module cannot run: JavaScript
// off, or a page opened from a file (browsers load ES modules and WebAssembly only over HTTP).
// Pick a sample of the held-out set (or drop an image of your own), draw the hand box and the object
// box, press Run: the crop, the network (onnxruntime-web, WebAssembly) and the pose step
// (pipeline.mjs) run here, and the page draws the 2D joints and the object's box over the image, the
// hand and the object in 3D (plotly, when the page has it), the time each step took and, for the
// samples, the error against the ground truth. window.hflLive exposes the same to the tests and to
// `python -m hfl_lite bench` (section browser).
import * as P from "./pipeline.mjs";

const COLOURS = { hand: "#1f77b4", object: "#e67e22", joints: "#d62728", pose: "#2ca02c", fallback: "#c0392b" };
const OWN = "own";

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

async function decodeImage(blob) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
  return { rgba: data, width: bitmap.width, height: bitmap.height, bitmap };
}

function defaultThreads(root) {
  const asked = Number(new URLSearchParams(location.search).get("threads") || root.dataset.threads || 0);
  if (asked > 0) return asked;
  // several WebAssembly threads need a cross-origin isolated page (COOP/COEP headers)
  return globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
}

const fmt = (value, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : "n/a");
const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
const dist = (a, b) => Math.hypot(...a.map((v, i) => v - b[i]));

/** Error of a result against a sample's ground truth (pixels, millimetres, degrees). */
function errors(result, truth, ctrl3d, K) {
  const out = {};
  if (truth.joints2d) {
    out.joints2d_px = mean(result.joints2dFull.map((p, i) => dist(p, truth.joints2d[i])));
    const rel = (joints) => joints.map((p) => p.map((v, i) => v - joints[0][i]));
    const [pred, true_] = [rel(result.jointsCam), rel(truth.joints3d)];
    out.mpjpe_root_mm = 1000 * mean(pred.map((p, i) => dist(p, true_[i])));
    out.wrist_mm = 1000 * dist(result.jointsCam[0], truth.joints3d[0]);
  }
  if (result.objValid) {
    const Rt = truth.obj_rot, R = result.objRot;
    const trace = [0, 1, 2].reduce((s, i) => s + [0, 1, 2].reduce((a, k) => a + R[k][i] * Rt[k][i], 0), 0);
    out.rotation_deg = (Math.acos(Math.min(1, Math.max(-1, (trace - 1) / 2))) * 180) / Math.PI;
    out.translation_mm = 1000 * dist(result.objTrans, truth.obj_trans);
    const project = (R_, t) => P.projectPoints(P.transformPoints(ctrl3d, R_, t), K);
    const [a, b] = [project(R, result.objTrans), project(Rt, truth.obj_trans)];
    out.control_points_px = mean(a.map((p, i) => dist(p, b[i])));
  }
  return out;
}

class LivePage {
  constructor(root, base) {
    this.root = root;
    this.base = base;
    this.compact = root.dataset.compact !== undefined;
    this.status = element("div", { class: "hfl-live-status" }, "Loading…");
    root.replaceChildren(this.status);
    root.classList.add("hfl-live");
  }

  say(text, kind = "info") {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
  }

  async start() {
    this.config = await (await fetch(this.base + "config.json")).json();
    const problem = this.config.runtime_error || this.config.model_error;
    if (problem) throw new Error(`The network cannot run on this page: ${problem}.`);
    this.say(`Loading the network (${fmt(this.config.model_bytes / 1e6)} MB) and onnxruntime-web…`);
    const ort = await import(this.base + "ort.wasm.bundle.min.mjs");
    ort.env.wasm.numThreads = this.threads = defaultThreads(this.root);
    this.session = await ort.InferenceSession.create(this.base + this.config.model,
      { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    const S = this.config.image_size;
    this.network = async (pixels, handBox, objBox) => {
      const out = await this.session.run({
        image: new ort.Tensor("float32", pixels, [1, 3, S, S]),
        hand_box: new ort.Tensor("float32", Float32Array.from(handBox), [1, 4]),
        obj_box: new ort.Tensor("float32", Float32Array.from(objBox), [1, 4]),
      });
      return Object.fromEntries(Object.entries(out).map(([name, tensor]) => [name, tensor.data]));
    };
    this.build();
    await this.select(0);
    this.say(`Ready: ${this.config.preset} preset, ${this.config.precision} weights, onnxruntime-web `
      + `${this.config.runtime} (WebAssembly, ${this.threads} thread${this.threads > 1 ? "s" : ""}). `
      + "Draw a box by dragging over the image, then press Run.", "ready");
  }

  build() {
    const c = this.config;
    this.picker = element("select", { "aria-label": "image", onchange: () => this.select(this.picker.value) },
      ...c.samples.map((s, i) => element("option", { value: i }, `held-out ${s.id} · ${s.object}`)),
      element("option", { value: OWN, disabled: "" }, "your own image"));
    this.file = element("input", { type: "file", accept: "image/*", onchange: () => this.useFile(this.file.files[0]) });
    this.objectPicker = element("select", { "aria-label": "object", onchange: () => this.clearResult() },
      ...Object.keys(c.objects).map((name) => element("option", { value: name }, name)));
    this.mode = "hand";
    const group = `hfl-live-mode-${document.querySelectorAll(".hfl-live-controls").length}`;
    const modeButton = (mode, label) => element("label", { class: `hfl-live-mode hfl-live-${mode}` },
      element("input", { type: "radio", name: group, value: mode, ...(mode === "hand" ? { checked: "" } : {}),
        onchange: () => { this.mode = mode; } }), ` ${label}`);
    this.runButton = element("button", { class: "hfl-live-run", onclick: () => this.run().catch((e) => this.fail(e)) }, "Run HFL-Net");
    this.truthBox = element("input", { type: "checkbox", checked: "", onchange: () => this.draw() });
    this.canvas = element("canvas", { class: "hfl-live-canvas" });
    this.cropCanvas = element("canvas", { class: "hfl-live-crop", title: "what the network sees: the crop, with its 2D joints and the votes that agree with the pose" });
    this.plot = element("div", { class: "hfl-live-plot" });
    this.report = element("div", { class: "hfl-live-report" });
    this.inputs = {};
    const boxRow = (which, label) => element("div", { class: `hfl-live-boxrow hfl-live-${which}` }, `${label} x1 y1 x2 y2: `,
      ...[0, 1, 2, 3].map((k) => (this.inputs[`${which}${k}`] = element("input", {
        type: "number", step: "1", onchange: () => this.typedBox(which) }))));
    const controls = element("div", { class: "hfl-live-controls" },
      element("label", {}, "Image ", this.picker), element("label", { class: "hfl-live-file" }, "or drop / open your own: ", this.file),
      element("label", {}, "Object ", this.objectPicker),
      element("span", {}, "Drag to draw the ", modeButton("hand", "hand box"), modeButton("object", "object box")),
      this.runButton, element("label", {}, this.truthBox, " show the ground truth"));
    const views = element("div", { class: "hfl-live-views" }, this.canvas,
      element("figure", { class: "hfl-live-cropfig" }, this.cropCanvas, element("figcaption", {}, "the network's input")),
      ...(this.compact ? [] : [this.plot]));
    this.root.append(controls, ...(this.compact ? [] : [boxRow("hand", "hand box"), boxRow("object", "object box")]),
      views, this.report);
    this.pointer();
    this.root.addEventListener("dragover", (e) => e.preventDefault());
    this.root.addEventListener("drop", (e) => {
      e.preventDefault();
      if (e.dataTransfer.files[0]) this.useFile(e.dataTransfer.files[0]).catch((err) => this.fail(err));
    });
  }

  async select(value) {
    if (value === OWN) return;
    const sample = this.config.samples[Number(value)];
    this.picker.value = String(value);
    this.image = await decodeImage(await (await fetch(this.base + sample.image)).blob());
    this.sample = sample;
    this.K = sample.K;
    this.boxes = { hand: sample.hand_box.slice(), object: sample.obj_box.slice() };
    this.objectPicker.value = sample.object;
    this.clearResult();
  }

  async useFile(file) {
    if (!file) return;
    this.image = await decodeImage(file);
    this.sample = null;
    this.K = null; // unknown camera: defaultIntrinsics, as `infer` without --K
    const { width: w, height: h } = this.image;
    this.boxes = { hand: [0.2 * w, 0.3 * h, 0.5 * w, 0.7 * h], object: [0.45 * w, 0.25 * h, 0.75 * w, 0.75 * h] };
    this.picker.value = OWN;
    this.clearResult();
    this.say("Your image: draw the hand box and the object box, pick the object, then press Run. The camera is "
      + "unknown, so its focal length is taken as the image's larger side (distances may be off).", "ready");
  }

  clearResult() {
    this.result = null;
    this.report.replaceChildren();
    if (window.Plotly && !this.compact) window.Plotly.purge(this.plot);
    for (const which of ["hand", "object"]) {
      if (!this.boxes || this.compact) continue;
      this.boxes[which].forEach((v, k) => { this.inputs[`${which}${k}`].value = v.toFixed(1); });
    }
    this.draw();
  }

  typedBox(which) {
    this.boxes[which] = [0, 1, 2, 3].map((k) => Number(this.inputs[`${which}${k}`].value));
    this.clearResult();
  }

  pointer() {
    const toImage = (event) => {
      const rect = this.canvas.getBoundingClientRect();
      return [(event.clientX - rect.left) * (this.canvas.width / rect.width), (event.clientY - rect.top) * (this.canvas.height / rect.height)];
    };
    this.canvas.addEventListener("pointerdown", (event) => {
      this.drag = { from: toImage(event), to: toImage(event) };
      this.canvas.setPointerCapture(event.pointerId);
    });
    this.canvas.addEventListener("pointermove", (event) => {
      if (!this.drag) return;
      this.drag.to = toImage(event);
      this.draw();
    });
    this.canvas.addEventListener("pointerup", () => {
      const { from, to } = this.drag || {};
      this.drag = null;
      if (!from || Math.abs(to[0] - from[0]) < 3 || Math.abs(to[1] - from[1]) < 3) return this.draw();
      this.boxes[this.mode] = [Math.min(from[0], to[0]), Math.min(from[1], to[1]), Math.max(from[0], to[0]), Math.max(from[1], to[1])];
      this.clearResult();
    });
  }

  ctrl3d() {
    const name = this.objectPicker.value;
    return this.sample && name === this.sample.object ? this.sample.ctrl3d : this.config.objects[name].ctrl3d;
  }

  async run(options = {}) {
    this.runButton.disabled = true;
    this.say("Running…");
    try {
      const request = { handBox: this.boxes.hand, objBox: this.boxes.object, K: this.K, ctrl3d: this.ctrl3d(), ...options };
      this.result = await P.predictImage(this.network, this.image, request, this.config);
    } finally {
      this.runButton.disabled = false;
    }
    const r = this.result;
    const found = [r.problems.hand && `hand not found: ${r.problems.hand}`, r.problems.object && `object not found: ${r.problems.object}`];
    this.say(found.filter(Boolean).join("; ") || "Done.", found.some(Boolean) ? "warn" : "ready");
    this.draw();
    this.describe();
    if (!this.compact) this.plot3d();
    return r;
  }

  fail(error) {
    this.say(error.message || String(error), "error");
  }

  draw() {
    if (!this.image) return;
    const { width, height, bitmap } = this.image;
    Object.assign(this.canvas, { width, height });
    const g = this.canvas.getContext("2d");
    g.drawImage(bitmap, 0, 0);
    const lw = Math.max(1.5, width / 400);
    const line = (points, colour, dash = []) => {
      g.strokeStyle = colour; g.lineWidth = lw; g.setLineDash(dash.map((d) => d * lw));
      g.beginPath(); g.moveTo(...points[0]); points.slice(1).forEach((p) => g.lineTo(...p)); g.stroke();
    };
    const rect = (b, colour, dash) => line([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]], colour, dash);
    const dots = (points, colour, radius) => {
      g.fillStyle = colour;
      for (const p of points) { g.beginPath(); g.arc(p[0], p[1], radius * lw, 0, 2 * Math.PI); g.fill(); }
    };
    const skeleton = (joints, colour, dash) => this.config.skeleton_parents.forEach((parent, child) => {
      if (parent >= 0) line([joints[parent], joints[child]], colour, dash);
    });
    const box3d = (R, t, colour, dash) => {
      const px = P.projectPoints(P.transformPoints(this.ctrl3d(), R, t), this.result.K);
      this.config.box_edges.forEach(([a, b]) => line([px[a], px[b]], colour, dash));
      return px;
    };
    rect(this.boxes.hand, COLOURS.hand, [4, 2]);
    rect(this.boxes.object, COLOURS.object, [4, 2]);
    if (this.drag) rect([...this.drag.from, ...this.drag.to], this.mode === "hand" ? COLOURS.hand : COLOURS.object);
    const truth = this.sample && this.truthBox.checked ? this.sample.truth : null;
    if (truth && this.result) {
      if (truth.joints2d) skeleton(truth.joints2d, "rgba(255,255,255,0.9)", [2, 2]);
      box3d(truth.obj_rot, truth.obj_trans, "rgba(255,255,255,0.9)", [2, 2]);
    }
    if (!this.result) return;
    const r = this.result;
    const inliers = r.votes.points.filter((_, i) => r.inliers[i]);
    if (r.objValid) box3d(r.objRot, r.objTrans, COLOURS.pose);
    dots(P.affinePoints(r.crop.Ainv, inliers), "rgba(230,126,34,0.8)", 0.8);
    skeleton(r.joints2dFull, COLOURS.joints);
    dots(r.joints2dFull, "#ffffff", 1.3);
    this.drawCrop(r, inliers);
  }

  /** The crop the network read (its input tensor), with the 2D joints and the agreeing votes on it. */
  drawCrop(r, inliers) {
    const S = this.config.image_size, pixels = r.pixels, plane = S * S;
    const scale = 2;
    Object.assign(this.cropCanvas, { width: S * scale, height: S * scale });
    const g = this.cropCanvas.getContext("2d");
    const image = new ImageData(S, S);
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) image.data[4 * i + c] = Math.round(255 * pixels[c * plane + i]);
      image.data[4 * i + 3] = 255;
    }
    const small = new OffscreenCanvas(S, S);
    small.getContext("2d").putImageData(image, 0, 0);
    g.imageSmoothingEnabled = false;
    g.drawImage(small, 0, 0, S * scale, S * scale);
    const at = (p) => [(p[0] + 0.5) * scale, (p[1] + 0.5) * scale]; // pixel centres
    g.fillStyle = "rgba(230,126,34,0.8)";
    for (const p of inliers) { g.beginPath(); g.arc(...at(p), 1.5, 0, 2 * Math.PI); g.fill(); }
    g.strokeStyle = COLOURS.joints; g.lineWidth = 2;
    this.config.skeleton_parents.forEach((parent, child) => {
      if (parent < 0) return;
      g.beginPath(); g.moveTo(...at(r.joints2d[parent])); g.lineTo(...at(r.joints2d[child])); g.stroke();
    });
    g.fillStyle = "#ffffff";
    for (const p of r.joints2d) { g.beginPath(); g.arc(...at(p), 2.5, 0, 2 * Math.PI); g.fill(); }
  }

  describe() {
    const r = this.result;
    const ms = r.ms;
    const rows = [["time", `crop ${fmt(ms.crop)} ms · network ${fmt(ms.network)} ms · votes and pose ${fmt(ms.pose)} ms · `
      + `total ${fmt(ms.total)} ms (WebAssembly, ${this.threads} thread${this.threads > 1 ? "s" : ""})`]];
    rows.push(["hand", r.problems.hand ? `not found: ${r.problems.hand}` : `wrist at (${r.handTrans.map((v) => fmt(v, 3)).join(", ")}) m`]);
    rows.push(["object", r.problems.object ? `not found: ${r.problems.object}`
      : `${this.objectPicker.value} at ${fmt(Math.hypot(...r.objTrans), 3)} m, `
      + `${r.inliers.filter(Boolean).length} of ${r.votes.points.length} votes agree with the pose`]);
    if (this.sample) {
      const e = errors(r, this.sample.truth, this.ctrl3d(), r.K);
      if (e.joints2d_px !== undefined) {
        rows.push(["hand vs truth", `2D joints ${fmt(e.joints2d_px)} px · joints relative to the wrist ${fmt(e.mpjpe_root_mm)} mm`
          + (r.problems.hand ? "" : ` · wrist ${fmt(e.wrist_mm)} mm`)]);
      }
      if (e.rotation_deg !== undefined && !r.problems.object) {
        rows.push(["object vs truth", `rotation ${fmt(e.rotation_deg)}° · translation ${fmt(e.translation_mm)} mm · `
          + `box corners ${fmt(e.control_points_px)} px in the image`]);
      }
    }
    this.report.replaceChildren(element("table", {}, ...rows.map(([k, v]) => element("tr", {}, element("th", {}, k), element("td", {}, v)))));
  }

  plot3d() {
    if (!window.Plotly) return;
    const r = this.result;
    const faces = this.config.hand_faces;
    const xyz = (points) => ({ x: points.map((p) => p[0]), y: points.map((p) => p[1]), z: points.map((p) => p[2]) });
    const mesh = (verts, colour, opacity, name) => ({
      type: "mesh3d", ...xyz(verts), i: faces.map((f) => f[0]), j: faces.map((f) => f[1]), k: faces.map((f) => f[2]),
      color: colour, opacity, name, showlegend: true, flatshading: false,
    });
    const edges = (points, colour, name, dash = "solid") => {
      const path = [];
      this.config.box_edges.forEach(([a, b]) => path.push(points[a], points[b], [null, null, null]));
      return { type: "scatter3d", mode: "lines", ...xyz(path), line: { color: colour, width: 5, dash }, name };
    };
    const traces = r.problems.hand ? [] : [mesh(r.vertsCam, "#f0b98a", 1, "hand (predicted)")];
    if (!r.problems.object) traces.push(edges(P.transformPoints(this.ctrl3d(), r.objRot, r.objTrans), COLOURS.pose, "object box (predicted)"));
    const truth = this.sample && this.truthBox.checked ? this.sample.truth : null;
    if (truth && truth.verts3d) traces.push(mesh(truth.verts3d, "#7f7f7f", 0.35, "hand (truth)"));
    if (truth) traces.push(edges(P.transformPoints(this.ctrl3d(), truth.obj_rot, truth.obj_trans), "#555555", "object box (truth)", "dash"));
    window.Plotly.react(this.plot, traces, {
      height: 420, margin: { l: 0, r: 0, t: 10, b: 0 }, legend: { x: 0, y: 1 },
      scene: { aspectmode: "data", camera: { up: { x: 0, y: -1, z: 0 }, eye: { x: 0, y: -0.4, z: -1.8 } },
        xaxis: { title: "x (m)" }, yaxis: { title: "y (m)" }, zaxis: { title: "z (m)" } },
    }, { displaylogo: false, responsive: true });
  }

  /** The result as plain numbers (for the tests and the benchmark). */
  plainResult() {
    const r = this.result;
    return JSON.parse(JSON.stringify({ ...r, votes: undefined, pixels: undefined },
      (_, v) => (ArrayBuffer.isView(v) ? Array.from(v) : v)));
  }
}

async function mountAll() {
  for (const root of document.querySelectorAll("#hfl-live")) {
    const base = new URL(root.dataset.base || "./", location.href).href;
    const page = new LivePage(root, base);
    const ready = page.start().then(() => page, (error) => { page.fail(error); throw error; });
    window.hflLive = {
      ready: ready.then(() => ({ threads: page.threads, samples: page.config.samples.length })),
      /** Run on sample `index`; options: {random: {draws: [...]}} replays RANSAC's random numbers. */
      run: async (index, options = {}) => {
        await ready;
        await page.select(index);
        const draws = options.random && options.random.draws;
        let i = 0;
        await page.run(draws ? { random: () => draws[i++] } : {});
        return page.plainResult();
      },
      page,
    };
  }
}

mountAll();
