/**
 * `jax.random` inside traced functions, bit-identical to Python's with the
 * same seed. A key is JAX's raw key data: a `uint32[2]` array (threefry2x32,
 * what `jax.random.key_data(jax.random.key(seed))` and the legacy
 * `jax.random.PRNGKey(seed)` hold), so keys move between TypeScript and
 * Python unchanged. Key derivation and raw bits are primitives
 * (`random_seed`, `random_split`, `random_fold_in`, `random_bits`) that the
 * sidecar runs with `jax.random` itself; the samplers below turn bits into
 * floats with the same lax operations as jax/_src/random/core.py.
 */

import type { DType } from "../../values/dtype.js";
import { NDArray } from "../../values/ndarray.js";
import { asTracer, type Concrete, lit, requireTrace } from "../core.js";
import { Tracer } from "../tracer.js";
import * as lax from "./lax.js";
import * as jnp from "./jnp.js";
import { canonicalize, defaultFloat, defaultInt, finfo, isJsScalar, kindOf } from "../dtypes.js";
import { traceError } from "../errors.js";
import { showAval } from "../ir.js";

export type Key = Tracer | Concrete;

const IMPL = "threefry2x32";

function keyTracer(op: string, key: Key): Tracer {
  const k = asTracer(op, key);
  if (k.dtype !== "uint32" || k.ndim !== 1 || k.shape[0] !== 2) {
    throw traceError(op, `a key is uint32[2] key data (jax.random.key_data(key) or jax.random.PRNGKey(seed)), got ${showAval(k.aval)}; split batches of keys with jnp indexing`);
  }
  return k;
}

/**
 * Host-side key data for an integer seed, exactly `jax.random.key_data(jax.random.key(seed))`
 * under the given x64 mode (a negative seed differs between modes, as in JAX).
 */
export function keyData(seed: number | bigint, x64: boolean): NDArray {
  const s = BigInt(seed);
  let hi: bigint;
  let lo: bigint;
  if (x64) {
    if (s < -(2n ** 63n) || s >= 2n ** 63n) throw new RangeError(`seed ${s} does not fit int64`);
    const u = BigInt.asUintN(64, s);
    hi = u >> 32n;
    lo = u & 0xffffffffn;
  } else {
    if (s < -(2n ** 31n) || s >= 2n ** 31n) throw new RangeError(`seed ${s} does not fit int32 (the sidecar runs without x64)`);
    hi = 0n;
    lo = BigInt.asUintN(32, s);
  }
  return new NDArray(new Uint32Array([Number(hi), Number(lo)]), [2], "uint32");
}

/** `jax.random.key_data(jax.random.key(seed))` inside a traced function. */
export function key(seed: number | bigint | Tracer | Concrete): Tracer {
  const op = "random.key";
  const is64 = requireTrace(op).x64;
  let s: Tracer;
  if (typeof seed === "number" || typeof seed === "bigint") s = lax.broadcastInDim(lit(seed, defaultInt(is64)), [], []);
  else s = asTracer(op, seed);
  if (s.ndim !== 0 || (kindOf(s.dtype) !== "i" && kindOf(s.dtype) !== "u")) throw traceError(op, `the seed must be an integer scalar, got ${showAval(s.aval)}`);
  return lax.rawBind("random_seed", [s], { impl: IMPL }, [{ aval: { dtype: "uint32", shape: [2] } }])[0]!;
}
/** Alias of `key`: the legacy raw key is the same data. */
export const PRNGKey = key;

/** `jax.random.split(key, num)`: keys as uint32[...shape, 2]. */
export function split(k: Key, num: number | readonly number[] = 2): Tracer {
  const op = "random.split";
  const kt = keyTracer(op, k);
  const shape = typeof num === "number" ? [num] : [...num];
  for (const d of shape) if (!Number.isInteger(d) || d < 0) throw traceError(op, `num must be a non-negative integer or shape, got ${JSON.stringify(num)}`);
  return lax.rawBind("random_split", [kt], { impl: IMPL, shape }, [{ aval: { dtype: "uint32", shape: [...shape, 2] } }])[0]!;
}

/** `jax.random.fold_in(key, data)`. */
export function foldIn(k: Key, data: number | Tracer): Tracer {
  const op = "random.fold_in";
  const kt = keyTracer(op, k);
  const d = typeof data === "number" ? lax.broadcastInDim(lit(BigInt.asUintN(32, BigInt(data)), "uint32"), [], []) : lax.convertElementType(asTracer(op, data), "uint32");
  return lax.rawBind("random_fold_in", [kt, d], { impl: IMPL }, [{ aval: { dtype: "uint32", shape: [2] } }])[0]!;
}

const UINT: Record<number, DType> = { 8: "uint8", 16: "uint16", 32: "uint32", 64: "uint64" };

function randomBits(k: Tracer, bitWidth: number, shape: readonly number[]): Tracer {
  return lax.rawBind("random_bits", [k], { impl: IMPL, bit_width: bitWidth, shape: [...shape] }, [{ aval: { dtype: UINT[bitWidth]!, shape: [...shape] } }])[0]!;
}

/** `jax.random.bits(key, shape, dtype?)`: the default dtype is the default uint (uint64 with x64). */
export function bits(k: Key, shape: readonly number[] = [], dtype?: DType): Tracer {
  const op = "random.bits";
  dtype ??= requireTrace(op).x64 ? "uint64" : "uint32";
  const width = { uint8: 8, uint16: 16, uint32: 32, uint64: 64 }[dtype as "uint8"];
  if (width === undefined) throw traceError(op, `dtype must be an unsigned integer dtype, got ${dtype}`);
  return randomBits(keyTracer(op, k), width, shape);
}

function floatDType(op: string, dtype: DType | undefined): DType {
  const is64 = requireTrace(op).x64;
  const d = canonicalize(dtype ?? defaultFloat(is64), is64);
  if (kindOf(d) !== "f") throw traceError(op, `dtype must be a float dtype, got ${d}`);
  return d;
}

/** A scalar bound as JAX's `lax.convert_element_type(v, dtype)` then broadcast to rank. */
function bound(op: string, v: number | Tracer, dtype: DType): Tracer {
  const t = typeof v === "number" ? lax.broadcastInDim(lit(v, dtype), [], []) : lax.convertElementType(asTracer(op, v), dtype);
  return t;
}

function uniformImpl(op: string, k: Tracer, shape: readonly number[], dtype: DType, minval: number | Tracer, maxval: number | Tracer): Tracer {
  // Scalar bounds stay scalars (lax broadcasts them); array bounds are broadcast to the sample shape.
  const fit = (t: Tracer): Tracer => (t.ndim === 0 ? t : jnp.broadcastTo(t, shape));
  const lo = fit(bound(op, minval, dtype));
  const hi = fit(bound(op, maxval, dtype));
  const fi = finfo(dtype);
  const nbits = fi.bits;
  const nmant = fi.nmant;
  const rngBits = nmant < 8 ? 8 : nbits;
  let b = randomBits(k, rngBits, shape);
  const udt = UINT[nbits]!;
  if (rngBits !== nbits) b = lax.convertElementType(b, udt);
  let fb = lax.shiftRightLogical(b, lit(rngBits - nmant, udt));
  fb = lax.bitwiseOr(fb, { literal: { lit: oneBits(dtype), dtype: udt }, weak: false });
  const floats = lax.sub(lax.bitcastConvertType(fb, dtype), lit(1, dtype));
  const scaled = lax.add(lax.mul(floats, lax.sub(hi, lo)), lo);
  return lax.max(lo, scaled);
}

function oneBits(dtype: DType): string {
  switch (dtype) {
    case "float16":
      return "15360"; // 0x3c00
    case "bfloat16":
      return "16256"; // 0x3f80
    case "float32":
      return "1065353216"; // 0x3f800000
    default:
      return "4607182418800017408"; // 0x3ff0000000000000
  }
}

/** `jax.random.uniform(key, shape, dtype?, minval=0, maxval=1)`. */
export function uniform(k: Key, shape: readonly number[] = [], opts: { dtype?: DType; minval?: number | Tracer; maxval?: number | Tracer } = {}): Tracer {
  const op = "random.uniform";
  const dtype = floatDType(op, opts.dtype);
  return uniformImpl(op, keyTracer(op, k), shape, dtype, opts.minval ?? 0, opts.maxval ?? 1);
}

const NEG_ONE_TOWARD_ZERO: Partial<Record<DType, string>> = {
  float16: "0xbbff",
  bfloat16: "0xbf7f",
  float32: "0xbf7fffff",
  float64: "0xbfefffffffffffff",
};

/** `jax.random.normal(key, shape, dtype?)`: `sqrt(2) * erf_inv(uniform(nextafter(-1, 0), 1))`. */
export function normal(k: Key, shape: readonly number[] = [], opts: { dtype?: DType } = {}): Tracer {
  const op = "random.normal";
  const dtype = floatDType(op, opts.dtype);
  const lo = lax.broadcastInDim({ literal: { lit: NEG_ONE_TOWARD_ZERO[dtype]!, dtype }, weak: false }, [], []);
  const u = uniformImpl(op, keyTracer(op, k), shape, dtype, lo, 1);
  return lax.mul(lit(Math.SQRT2, dtype), lax.erfInv(u));
}

/** `jax.random.bernoulli(key, p=0.5, shape?)` ("low" mode, JAX's default). */
export function bernoulli(k: Key, p: number | Tracer = 0.5, shape?: readonly number[]): Tracer {
  const op = "random.bernoulli";
  const is64 = requireTrace(op).x64;
  let pt: Tracer;
  if (isJsScalar(p)) pt = lax.broadcastInDim(lit(p, defaultFloat(is64), true), [], []);
  else pt = asTracer(op, p);
  if (kindOf(pt.dtype) !== "f") throw traceError(op, `the probability p must have a floating dtype, got ${pt.dtype}`);
  const s = shape ? [...shape] : [...pt.shape];
  const u = uniformImpl(op, keyTracer(op, k), s, pt.dtype, 0, 1);
  return jnp.less(u, pt);
}

/** `jax.random.gumbel(key, shape, dtype?)` ("low" mode). */
export function gumbel(k: Key, shape: readonly number[] = [], opts: { dtype?: DType } = {}): Tracer {
  const op = "random.gumbel";
  const dtype = floatDType(op, opts.dtype);
  return gumbelImpl(op, keyTracer(op, k), shape, dtype);
}

function gumbelImpl(op: string, k: Tracer, shape: readonly number[], dtype: DType): Tracer {
  const u = uniformImpl(op, k, shape, dtype, finfo(dtype).tiny, 1);
  return jnp.negative(jnp.log(jnp.negative(jnp.log(u))));
}

/** `jax.random.categorical(key, logits, axis=-1, shape?)`: the Gumbel-max trick, as JAX samples. */
export function categorical(k: Key, logits: Tracer | Concrete, opts: { axis?: number; shape?: readonly number[] } = {}): Tracer {
  const op = "random.categorical";
  const kt = keyTracer(op, k);
  const lg = asTracer(op, logits);
  if (kindOf(lg.dtype) !== "f") throw traceError(op, `logits must be floating, got ${showAval(lg.aval)}`);
  let axis = opts.axis ?? -1;
  const nd = lg.ndim;
  if (axis < -nd || axis >= nd) throw traceError(op, `axis ${axis} is out of bounds for logits ${showAval(lg.aval)}`);
  const batchShape = lg.shape.filter((_, i) => i !== (axis < 0 ? axis + nd : axis));
  const shape = opts.shape ? [...opts.shape] : batchShape;
  const tail = shape.slice(shape.length - batchShape.length);
  if (shape.length < batchShape.length || tail.some((d, i) => d !== batchShape[i])) {
    throw traceError(op, `shape ${JSON.stringify(shape)} must end with the logits' batch shape ${JSON.stringify(batchShape)}`);
  }
  const prefix = shape.slice(0, shape.length - batchShape.length);
  if (axis >= 0) axis -= nd;
  const logitsShape = [...tail];
  logitsShape.splice(((axis % nd) + nd) % nd, 0, lg.shape[((axis % nd) + nd) % nd]!);
  const g = gumbelImpl(op, kt, [...prefix, ...logitsShape], lg.dtype);
  const expanded = prefix.length ? lax.expandDims(lg, prefix.map((_, i) => i)) : lg;
  return jnp.argmax(jnp.add(g, expanded), { axis });
}
