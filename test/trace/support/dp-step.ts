/**
 * The data-parallel training step both issue-16 oracles use (one process ×
 * 4 devices, and a 2-process cluster): a two-layer tanh MLP under mean
 * squared error, its gradient written out by hand, plain SGD; and its
 * Python twin, op for op the same, so that XLA gets the same HLO.
 *
 * The gradient is by hand because it avoids the shard_map trap of
 * `jax.grad` with respect to replicated parameters under check_vma
 * (already summed over the axis: a pmean after it is 4× too big); the
 * one-process oracle checks it against `jax.grad`.
 */
import * as jnp from "../../../src/trace/lib/jnp.js";
import type { Tracer } from "../../../src/trace/tracer.js";
import type { NDArray } from "../../../src/values/ndarray.js";
import { randomArray, rng } from "./oracle.js";

export const BATCH = 32;
export const IN = 8;
export const HIDDEN = 16;
export const LR = 0.1;

export interface Params<A> {
  w1: A;
  b1: A;
  w2: A;
  b2: A;
}

/** d(mean squared error)/d(params) of a tanh MLP over `n` rows, by hand; PY_STEP's `grads` is op for op the same. */
export function grads(p: Params<Tracer>, x: Tracer, y: Tracer, n: number): Params<Tracer> {
  const h = jnp.tanh(jnp.add(jnp.matmul(x, p.w1), p.b1));
  const pred = jnp.add(jnp.matmul(h, p.w2), p.b2);
  const d = jnp.multiply(jnp.subtract(pred, y), 2 / n);
  const dh = jnp.multiply(jnp.matmul(d, jnp.transpose(p.w2)), jnp.subtract(1, jnp.multiply(h, h)));
  return { w1: jnp.matmul(jnp.transpose(x), dh), b1: jnp.sum(dh, { axis: 0 }), w2: jnp.matmul(jnp.transpose(h), d), b2: jnp.sum(d, { axis: 0 }) };
}

export function sgd(p: Params<Tracer>, g: Params<Tracer>): Params<Tracer> {
  return { w1: jnp.subtract(p.w1, jnp.multiply(g.w1, LR)), b1: jnp.subtract(p.b1, jnp.multiply(g.b1, LR)), w2: jnp.subtract(p.w2, jnp.multiply(g.w2, LR)), b2: jnp.subtract(p.b2, jnp.multiply(g.b2, LR)) };
}

/** Parameters and one batch, generated from `seed`. */
export function stepData(seed: number): Params<NDArray> & { x: NDArray; y: NDArray } {
  const r = rng(seed);
  return {
    w1: randomArray(r, "float32", [IN, HIDDEN], { lo: -0.5, hi: 0.5 }),
    b1: randomArray(r, "float32", [HIDDEN], { lo: -0.1, hi: 0.1 }),
    w2: randomArray(r, "float32", [HIDDEN, 1], { lo: -0.5, hi: 0.5 }),
    b2: randomArray(r, "float32", [1], { lo: -0.1, hi: 0.1 }),
    x: randomArray(r, "float32", [BATCH, IN], { lo: -1, hi: 1 }),
    y: randomArray(r, "float32", [BATCH, 1], { lo: -1, hi: 1 }),
  };
}

/** `stepData` as JSON for the Python twin (read back with PY_STEP's `arr`). */
export function stepWire(data: object): Record<string, { v: number[]; shape: number[] }> {
  return Object.fromEntries((Object.entries(data) as [string, NDArray][]).map(([k, a]) => [k, { v: [...(a.data as Float32Array)], shape: [...a.shape] }]));
}

/** Python: 4 CPU devices, the data from stdin (`p0`, `x`, `y`), `grads`, `sgd`, a 1-D mesh `batch` over the devices (`rep`, `row`), and `bits(p)`. */
export const PY_STEP = `
import json, sys, jax
jax.config.update("jax_num_cpu_devices", 4)
import numpy as np, jax.numpy as jnp
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
d = json.load(sys.stdin)
arr = lambda k: np.array(d[k]["v"], np.float32).reshape(d[k]["shape"])
p0 = {k: arr(k) for k in ("w1", "b1", "w2", "b2")}
x, y = arr("x"), arr("y")
LR, N = ${LR}, ${BATCH}

def grads(p, x, y, n):
    h = jnp.tanh(jnp.matmul(x, p["w1"]) + p["b1"])
    pred = jnp.matmul(h, p["w2"]) + p["b2"]
    dd = (pred - y) * (2 / n)
    dh = jnp.matmul(dd, jnp.transpose(p["w2"])) * (1 - h * h)
    return {"w1": jnp.matmul(jnp.transpose(x), dh), "b1": jnp.sum(dh, axis=0), "w2": jnp.matmul(jnp.transpose(h), dd), "b2": jnp.sum(dd, axis=0)}

def sgd(p, g):
    return {k: p[k] - g[k] * LR for k in ("w1", "b1", "w2", "b2")}

mesh = Mesh(np.array(jax.devices()), ("batch",), axis_types=(AxisType.Auto,))
rep, row = NamedSharding(mesh, P()), NamedSharding(mesh, P("batch"))
bits = lambda p: {k: np.asarray(v).view(np.uint32).ravel().tolist() for k, v in p.items()}
`;

/** The float32 values of uint32 bit patterns. */
export const floats = (bits: readonly number[]): number[] => [...new Float32Array(new Uint32Array(bits).buffer)];

/** The largest absolute difference between two parameter sets given as bit patterns. */
export function maxDiff(a: Record<string, number[]>, b: Record<string, number[]>): number {
  return Math.max(...Object.keys(a).map((k) => Math.max(...floats(a[k]!).map((v, j) => Math.abs(v - floats(b[k]!)[j]!)))));
}

/** A host array's float32 values as their uint32 bit patterns. */
export const bitsOf = (a: NDArray): number[] => [...new Uint32Array(a.bytes().slice().buffer)];
