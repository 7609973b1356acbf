/**
 * Supervised learning in TypeScript: an MLP (64-128-10, ReLU) classifies
 * scikit-learn's bundled 8x8 digits (1,797 images, no download: the data is
 * the `digits.csv.gz` that ships inside scikit-learn), trained with
 * `valueAndGrad` of optax's softmax cross-entropy and `optax.adam`; each
 * epoch is one `filterScan` over minibatches, so training is a handful of
 * compiled programs. 80 % of the images train, 20 % test; the split and the
 * minibatch order are drawn on the host from a fixed seed.
 *
 *   node --import tsx examples/digits.ts [--epochs 20] [--data digits.csv.gz] [--json]
 *
 * Without `--data`, the file is found in the sidecar's Python environment
 * (scikit-learn is a test dependency of jaxbridge; `pip install
 * scikit-learn` elsewhere).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import {
  connect,
  filterScan,
  jit,
  jnp,
  nn,
  NDArray,
  optax,
  random,
  treeLeaves,
  valueAndGrad,
  type DeviceArray,
  type Tracer,
} from "../src/index.js";
import { sidecarPython } from "../src/internal.js";
import { initMlp, MLP, type Arr } from "./mlp.js";

const SEED = 0;
const HIDDEN = 128;
const LR = 3e-3;
const BATCH = 64;
const TRAIN_FRACTION = 0.8;

/** An `eqx.nn.MLP(64, 10, 128, depth=1)`, initialised as equinox does. */
const init = jit((key: Arr): MLP => initMlp(key as Tracer, [64, HIDDEN, 10]));

function loss(model: MLP, x: Tracer, y: Tracer): Tracer {
  return jnp.mean(optax.softmaxCrossEntropy(model.apply(x), nn.oneHot(y, 10, { dtype: "float32" })));
}

const opt = optax.adam(LR);

interface Data {
  x: Arr; // float32 [N, 64], pixels / 16
  y: Arr; // int32 [N]
}

/** One epoch: a filterScan over the minibatches (rows of `batches`, indices into the training set). */
function epochStep(train: Data) {
  return function step(c: { model: MLP; opt: optax.OptState }, idx: Tracer) {
    const [value, grads] = valueAndGrad(loss)(c.model, jnp.take(train.x as Tracer, idx), jnp.take(train.y as Tracer, idx)) as unknown as [Tracer, MLP];
    const [updates, state] = opt.update(grads, c.opt, c.model) as unknown as [MLP, optax.OptState];
    return [{ model: optax.applyUpdates(c.model, updates) as unknown as MLP, opt: state }, value] as const;
  };
}

const accuracy = jit((model: MLP, x: Arr, y: Arr) => jnp.mean(jnp.astype(jnp.equal(jnp.argmax(model.apply(x), { axis: 1 }), y), "float32")));

/** The digits as scikit-learn ships them: gzip CSV, 1,797 rows of 64 pixels (0..16) and the label. */
function loadDigits(path: string): { pixels: Float32Array; labels: Int32Array; n: number } {
  const rows = gunzipSync(readFileSync(path)).toString("utf8").trim().split("\n");
  const pixels = new Float32Array(rows.length * 64);
  const labels = new Int32Array(rows.length);
  rows.forEach((row, i) => {
    const v = row.split(",").map(Number);
    if (v.length !== 65) throw new Error(`${path}: row ${i + 1} has ${v.length} values, expected 65`);
    for (let k = 0; k < 64; k++) pixels[i * 64 + k] = v[k]! / 16;
    labels[i] = v[64]!;
  });
  return { pixels, labels, n: rows.length };
}

function findDigits(): string {
  const code = "import importlib.util, os; print(os.path.join(importlib.util.find_spec('sklearn').submodule_search_locations[0], 'datasets', 'data', 'digits.csv.gz'))";
  try {
    return execFileSync(sidecarPython(), ["-c", code], { encoding: "utf8" }).trim();
  } catch {
    throw new Error("digits: scikit-learn is not installed in the sidecar's Python environment; pass --data path/to/digits.csv.gz");
  }
}

/** A seeded shuffle (mulberry32 + Fisher-Yates), so the split and the batches are reproducible. */
function permutation(n: number, seed: number): Int32Array {
  let t = seed >>> 0;
  const rand = () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

function subset(d: { pixels: Float32Array; labels: Int32Array }, idx: Int32Array): { x: NDArray; y: NDArray } {
  const x = new Float32Array(idx.length * 64);
  const y = new Int32Array(idx.length);
  idx.forEach((r, i) => {
    x.set(d.pixels.subarray(r * 64, r * 64 + 64), i * 64);
    y[i] = d.labels[r]!;
  });
  return { x: new NDArray(x, [idx.length, 64], "float32"), y: new NDArray(y, [idx.length], "int32") };
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const epochs = Number(argValue("--epochs") ?? 20);
const json = process.argv.includes("--json");
const path = argValue("--data") ?? findDigits();
const data = loadDigits(path);
const order = permutation(data.n, SEED);
const nTrain = Math.round(TRAIN_FRACTION * data.n);
const trainIdx = order.subarray(0, nTrain);
const testIdx = order.subarray(nTrain);

const jb = await connect(process.env.JAXBRIDGE_URL ? { url: process.env.JAXBRIDGE_URL } : {});
try {
  console.log(`digits: MLP 64-${HIDDEN}-10 on scikit-learn's digits (${data.n} images; ${nTrain} train, ${data.n - nTrain} test), adam ${LR}, batch ${BATCH}, on ${jb.info.backend} (JAX ${jb.info.jax})`);
  const train = (await jb.put(subset(data, trainIdx))) as unknown as Data;
  const test = (await jb.put(subset(data, testIdx))) as unknown as Data;
  const step = epochStep(train);
  let state = { model: (await init(random.keyData(SEED, jb.info.x64))) as unknown as MLP, opt: undefined as unknown as optax.OptState };
  state.opt = await opt.init(state.model);
  const steps = Math.floor(nTrain / BATCH);
  const t0 = performance.now();
  let acc = 0;
  let firstAbove95: number | null = null;
  for (let e = 1; e <= epochs; e++) {
    // A fresh order of the training images each epoch, as minibatch index rows.
    const p = permutation(nTrain, SEED * 1000 + e);
    const batches = new NDArray(p.slice(0, steps * BATCH), [steps, BATCH], "int32");
    const [next, losses] = (await filterScan(step, state, batches)) as unknown as [typeof state, DeviceArray];
    state = next;
    acc = ((await accuracy.withOptions({ fetch: true })(state.model, test.x, test.y)) as unknown as NDArray).item() as number;
    if (firstAbove95 === null && acc >= 0.95) firstAbove95 = e;
    if (e === 1 || e % 5 === 0 || e === epochs) {
      const l = Array.from((await losses.toHost()).data as Float32Array);
      console.log(`epoch ${e}: mean loss ${(l.reduce((a, b) => a + b, 0) / l.length).toFixed(4)}, test accuracy ${(100 * acc).toFixed(1)}%`);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const correct = Math.round(acc * testIdx.length);
  console.log(`test accuracy ${(100 * acc).toFixed(1)}% (${correct}/${testIdx.length}) after ${epochs} epochs x ${steps} steps in ${seconds.toFixed(1)} s (compilation included); first epoch at >= 95%: ${firstAbove95 ?? "none"}`);
  if (json) {
    const host = (await jb.get(state.model)) as unknown as MLP;
    const params = (treeLeaves(host) as NDArray[]).map((a) => ({ shape: a.shape, b64: Buffer.from(a.bytes()).toString("base64") }));
    console.log(JSON.stringify({ accuracy: acc, correct, seconds, testIndices: Array.from(testIdx), params, data: join(path) }));
  }
} finally {
  await jb.close();
}
