// The page of web/: a tfvae export in ONNX (web/build.py) run by onnxruntime-web. Every draw
// is a function of int64 seeds, computed in the graph, so the page gives the SavedModel's
// numbers for the same seeds (tests/test_web.py checks it).
"use strict";

// ?model=<folder of one version>, relative to the page or absolute.
const MODEL = (new URLSearchParams(location.search).get("model") || "models/vae_mnist/1")
  .replace(/\/+$/, "");
const SIGNATURES = ["sample", "decode", "encode", "reconstruct"];
const SAMPLES = 16;

// Threads need SharedArrayBuffer, hence cross-origin isolation headers, which a plain static
// server does not send: one thread runs anywhere.
ort.env.wasm.numThreads = 1;

const sessions = {};
let card;  // the export's model card: input_shape, latent_shape, config, data, metrics

async function load() {
  const response = await fetch(`${MODEL}/assets/tfvae_card.json`);
  if (!response.ok) {
    throw new Error(`no model card at ${MODEL} (${response.status}): run python web/build.py`);
  }
  card = await response.json();
  for (const name of SIGNATURES) {
    sessions[name] = await ort.InferenceSession.create(`${MODEL}/${name}.onnx`,
                                                       {executionProviders: ["wasm"]});
  }
}

// The wasm backend runs one call at a time; drawing fires events while a call runs, so calls
// wait in line.
let line = Promise.resolve(), waiting = 0;

function run(signature, feeds) {
  waiting++;
  const result = line.then(() => sessions[signature].run(feeds)).finally(() => waiting--);
  line = result.catch(() => {});
  return result;
}

// Tensors. Seeds are int64: BigInt64Array holds them exactly, up to 2^63 - 1.
const floats = (data, dims) => new ort.Tensor("float32", Float32Array.from(data), dims);
const int64 = seeds => new ort.Tensor("int64", BigInt64Array.from(seeds, s => BigInt(s)),
                                      [seeds.length]);
const images = x => floats(x.flat(Infinity), [x.length, ...card.input_shape]);
const codes = z => floats(z.flat(Infinity), [z.length, ...card.latent_shape]);

// Plain nested arrays of an output tensor, as numpy's tolist() would give.
function nest(data, dims) {
  if (dims.length <= 1) return Array.from(data);
  const step = data.length / dims[0];
  return Array.from({length: dims[0]},
                    (_, i) => nest(data.subarray(i * step, (i + 1) * step), dims.slice(1)));
}

function plain(outputs) {
  return Object.fromEntries(Object.entries(outputs).map(([k, t]) => [k, nest(t.data, t.dims)]));
}

// The signatures, on plain arrays. ONNX names reconstruct's output x_out (an input is x).
const model = {
  sample: async seeds => plain(await run("sample", {seed: int64(seeds)})),
  decode: async z => plain(await run("decode", {z: codes(z)})),
  encode: async (x, seeds) => plain(await run("encode", {x: images(x), seed: int64(seeds)})),
  reconstruct: async x => plain(await run("reconstruct", {x: images(x)})),
};

// z from a to b in `steps` evenly spaced points, a and b included, decoded.
async function walk(a, b, steps) {
  const [za, zb] = (await model.sample([a, b])).z;
  const z = Array.from({length: steps}, (_, i) => {
    const t = i / (steps - 1);
    return za.map((v, j) => v + t * (zb[j] - v));
  });
  return {z, x: (await model.decode(z)).x};
}

// ---- drawing on canvases ----

// An image [height, width, channels] in [0, 1] onto a canvas of its size: white ink on black,
// as MNIST is; CSS scales the canvas up, pixelated.
function paint(canvas, image) {
  const [height, width, channels] = card.input_shape;
  const pixels = image.flat(Infinity);
  const picture = new ImageData(width, height);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) {
      const v = pixels[p * channels + (channels === 1 ? 0 : c)];
      picture.data[4 * p + c] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
    picture.data[4 * p + 3] = 255;
  }
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").putImageData(picture, 0, 0);
}

function digits(container, x, titles) {
  container.replaceChildren(...x.map((image, i) => {
    const canvas = document.createElement("canvas");
    canvas.className = "digit";
    canvas.title = titles[i];
    paint(canvas, image);
    return canvas;
  }));
}

// Each latent dimension: its mean as a bar over a band of +- one standard deviation.
function plotCode(canvas, mean, stddev) {
  const g = canvas.getContext("2d");
  const {width, height} = canvas;
  // [-3, 3] fills the height, or more when a code goes further (an autoencoder's may).
  const range = Math.max(3, ...mean.map((m, i) => Math.abs(m) + stddev[i]));
  const y = v => height / 2 - (v / range) * (height / 2);
  const column = width / mean.length;
  g.clearRect(0, 0, width, height);
  g.fillStyle = "#ccd6e6";
  mean.forEach((m, i) => g.fillRect(i * column, y(m + stddev[i]), column - 1,
                                    y(m - stddev[i]) - y(m + stddev[i])));
  g.fillStyle = "#1f4e9c";
  mean.forEach((m, i) => g.fillRect(i * column, Math.min(y(0), y(m)), column - 1,
                                    Math.max(1, Math.abs(y(m) - y(0)))));
  g.fillStyle = "#888";
  g.fillRect(0, y(0), width, 1);
}

// ---- the three panels ----

function status(text) {
  document.getElementById("status").textContent = text;
}

// A seed field's int64: its digits whole (a Number would round past 2^53), else what a
// half-typed or fractional value truncates to.
function seedOf(input) {
  const text = input.value.trim();
  return /^-?\d+$/.test(text) ? BigInt(text) : BigInt(Math.trunc(Number(text) || 0));
}

async function showSamples() {
  const form = document.querySelector("#samples form");
  const first = seedOf(form.seed);
  const seeds = Array.from({length: SAMPLES}, (_, i) => first + BigInt(i));
  const {x} = await model.sample(seeds);
  digits(document.querySelector("#samples .grid"), x, seeds.map(s => `seed ${s}`));
}

async function showWalk() {
  const form = document.querySelector("#walk form");
  const steps = Math.min(32, Math.max(2, Number(form.steps.value) || 2));
  const {x} = await walk(seedOf(form.a), seedOf(form.b), steps);
  digits(document.querySelector("#walk .strip"), x,
         x.map((_, i) => `t = ${(i / (steps - 1)).toFixed(2)}`));
}

// The pad: a canvas of the model's input size, drawn on at CSS scale; `ink` is its image.
const pad = {ink: null};

function drawing() {
  const [height, width, channels] = card.input_shape;
  return [nest(Float32Array.from(pad.ink.flatMap(v => Array(channels).fill(v))),
               [height, width, channels])];
}

// A round brush with a soft edge, about as wide as MNIST's strokes (2 to 3 pixels).
function stamp(cx, cy) {
  const [height, width] = card.input_shape;
  for (let i = Math.floor(cy - 2); i <= cy + 2; i++) {
    for (let j = Math.floor(cx - 2); j <= cx + 2; j++) {
      if (i < 0 || j < 0 || i >= height || j >= width) continue;
      const d = Math.hypot(j + 0.5 - cx, i + 0.5 - cy);
      const ink = Math.min(1, Math.max(0, 1.75 - d));
      pad.ink[i * width + j] = Math.max(pad.ink[i * width + j], ink);
    }
  }
}

// Reconstruct what is drawn; events that come while a reconstruction runs make one more.
let busy = false, dirty = false;

async function showReconstruction() {
  if (busy) { dirty = true; return; }
  busy = true;
  try {
    do {
      dirty = false;
      const x = drawing();
      paint(document.querySelector("#draw .pad"), x[0]);
      const [{x_out}, {mean, stddev}] = await Promise.all(
        // The code shown is q's mean and stddev, which draw nothing; encode's seed is for z.
        [model.reconstruct(x), model.encode(x, [0])]);
      paint(document.querySelector("#draw .digit"), x_out[0]);
      plotCode(document.querySelector("#draw .code"), mean[0], stddev[0]);
    } while (dirty);
  } finally {
    busy = false;
  }
}

function setUpPad() {
  const canvas = document.querySelector("#draw .pad");
  const [height, width] = card.input_shape;
  const clear = () => { pad.ink = Array(height * width).fill(0); showReconstruction(); };
  let last = null;
  const at = e => [e.offsetX / canvas.clientWidth * width,
                   e.offsetY / canvas.clientHeight * height];
  canvas.addEventListener("pointerdown", e => {
    canvas.setPointerCapture(e.pointerId);
    last = at(e);
    stamp(...last);
    showReconstruction();
  });
  canvas.addEventListener("pointermove", e => {
    if (!last) return;
    const [x, y] = at(e);
    // Stamps every quarter pixel along the move, so a fast stroke stays unbroken.
    const n = Math.max(1, Math.ceil(4 * Math.hypot(x - last[0], y - last[1])));
    for (let k = 1; k <= n; k++) {
      stamp(last[0] + (x - last[0]) * k / n, last[1] + (y - last[1]) * k / n);
    }
    last = [x, y];
    showReconstruction();
  });
  for (const end of ["pointerup", "pointercancel"]) {
    canvas.addEventListener(end, () => { last = null; });
  }
  document.querySelector("#draw button[name=clear]").addEventListener("click", clear);
  clear();
}

function describeCard() {
  const {config, data, metrics} = card;
  const shape = dims => dims.join(" × ");
  const parts = [`${MODEL}: ${card.class} (${card.model}), input ${shape(card.input_shape)}, ` +
                 `latent ${shape(card.latent_shape)}`];
  if (config?.likelihood) parts.push(`${config.likelihood} likelihood`);
  if (data?.name) parts.push(`trained on ${data.name}`);
  if (metrics?.test_log_likelihood !== undefined) {
    parts.push(`test log-likelihood ${metrics.test_log_likelihood} nats`);
  }
  document.getElementById("card").textContent = parts.join("; ");
}

// Panels redraw on their inputs; a failure shows in the status line (and window.tfvaeError).
function wire(selector, show) {
  const form = document.querySelector(`${selector} form`);
  form.addEventListener("input", () => show().catch(fail));
  form.addEventListener("submit", e => { e.preventDefault(); show().catch(fail); });
}

function fail(error) {
  window.tfvaeError = String(error?.message ?? error);
  status(`Error: ${window.tfvaeError}`);
  console.error(error);
}

async function main() {
  await load();
  describeCard();
  wire("#samples", showSamples);
  wire("#walk", showWalk);
  document.querySelector("#samples button[name=next]").addEventListener("click", () => {
    const form = document.querySelector("#samples form");
    form.seed.value = String(seedOf(form.seed) + BigInt(SAMPLES));
    showSamples().catch(fail);
  });
  setUpPad();
  await Promise.all([showSamples(), showWalk(), showReconstruction()]);
  status(`Running ${MODEL} with ONNX Runtime Web ${ort.env.versions?.web ?? ""} ` +
         "(WebAssembly, one thread).");
  // For tests/test_web.py: the signatures and the panels' own computations on plain arrays.
  window.tfvaeTest = {...model, walk, drawing, idle: () => !busy && waiting === 0};
  window.tfvaeReady = true;
}

main().catch(fail);
