// Runs functions of hfl_lite/web/pipeline.mjs under Node for tests/test_web_pipeline.py.
//
//   node tests/node_pipeline.mjs  < {"calls": [{"fn": "cropRequest", "args": [...]}, ...],
//                                    "images": {"name": {"rgba_base64", "width", "height"}},
//                                    "ort": "path/to/ort.wasm.min.mjs", "model": "path/to/model.onnx"}
//
// prints {"results": [...]} (one per call; a call naming a constant, without args, gives its value).
// An argument {"image": "name"} stands for that image
// ({rgba: Uint8Array, width, height}); {"draws": [...]} for a function returning those numbers in turn
// (RANSAC's random numbers), also as the "random" entry of an object argument. The call
// {"fn": "predictImage", ...} runs the model with onnxruntime-web's WASM backend (the page's runtime).
import { readFileSync } from "node:fs";
import * as pipeline from "../hfl_lite/web/pipeline.mjs";

const input = JSON.parse(readFileSync(0, "utf8"));
const images = Object.fromEntries(Object.entries(input.images || {}).map(([name, im]) =>
  [name, { rgba: new Uint8Array(Buffer.from(im.rgba_base64, "base64")), width: im.width, height: im.height }]));

const sequence = (values) => { // RANSAC's random numbers replayed: the numbers torch drew
  let i = 0;
  return () => values[i++];
};
const decode = (arg) => {
  if (arg && typeof arg === "object" && !Array.isArray(arg)) {
    if ("image" in arg) return images[arg.image];
    if ("draws" in arg) return sequence(arg.draws);
    if (arg.random && "draws" in arg.random) return { ...arg, random: sequence(arg.random.draws) };
  }
  return arg;
};

let network = null;
if (input.model) {
  const ort = await import(input.ort);
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(readFileSync(input.model));
  network = async (pixels, handBox, objBox) => {
    const size = Math.round(Math.sqrt(pixels.length / 3));
    const out = await session.run({
      image: new ort.Tensor("float32", pixels, [1, 3, size, size]),
      hand_box: new ort.Tensor("float32", Float32Array.from(handBox), [1, 4]),
      obj_box: new ort.Tensor("float32", Float32Array.from(objBox), [1, 4]),
    });
    return Object.fromEntries(Object.entries(out).map(([name, tensor]) => [name, tensor.data]));
  };
}

const plain = (value) => JSON.parse(JSON.stringify(value, (_, v) =>
  (ArrayBuffer.isView(v) ? Array.from(v) : v === Infinity ? "inf" : v)));

const results = [];
for (const call of input.calls) {
  const args = (call.args || []).map(decode);
  const value = call.fn === "predictImage" ? await pipeline.predictImage(network, ...args)
    : typeof pipeline[call.fn] === "function" ? pipeline[call.fn](...args) : pipeline[call.fn];
  results.push(plain(value));
}
process.stdout.write(JSON.stringify({ results }));
