/**
 * optax's tree maths (`optax.tree`, `optax/tree_utils/_tree_math.py`) on
 * tracers: the moment updates, the bias correction, the step counter and the
 * global norm, each written as optax writes it, operation for operation,
 * so the program XLA compiles is the one optax's gives it and the bits
 * agree. `null`/`undefined` leaves are empty subtrees, as `None` is.
 *
 * Every function here runs inside a trace.
 */

import type { DType } from "../values/dtype.js";
import { BridgeInputError } from "../values/errors.js";
import { keystr, treeLeaves, treeMap, treeMapWithPath, TreeStructureError, type KeyPath } from "../values/tree.js";
import { requireTrace } from "../trace/core.js";
import { canonicalize, kindOf } from "../trace/dtypes.js";
import { Tracer } from "../trace/tracer.js";
import * as jnp from "../trace/lib/jnp.js";
import { pyFloat } from "./base.js";

type Leaf = jnp.ArrayLike;

/** `dtype` as `jax.dtypes.canonicalize_dtype` gives it in this trace's x64 mode (optax's `utils.canonicalize_dtype`). */
export function canonicalDType(dtype: DType | undefined | null, op: string): DType | undefined {
  if (dtype === undefined || dtype === null) return undefined;
  return canonicalize(dtype, requireTrace(op).x64);
}

/**
 * `jax.tree.map(f, a, b)` over two trees that must match leaf for leaf: a
 * different structure or a leaf of another shape is an error naming both
 * trees and the path (JAX would broadcast the leaves, and the state would
 * silently change shape).
 */
export function zipTrees(op: string, names: readonly [string, string], f: (a: Tracer, b: Tracer) => unknown, a: unknown, b: unknown): unknown {
  try {
    return treeMapWithPath(
      (path: KeyPath, x: Tracer, y: Tracer) => {
        const sx = shapeOf(x);
        const sy = shapeOf(y);
        if (sx !== undefined && sy !== undefined && sx.join(",") !== sy.join(",")) {
          throw new BridgeInputError(`${op}: here ${names[0]} hold ${x.dtype}[${sx.join(", ")}] but ${names[1]} holds ${y.dtype}[${sy.join(", ")}]; the leaves must have the same shapes`, keystr(path) || "the root");
        }
        return f(x, y);
      },
      a,
      b,
    );
  } catch (e) {
    if (e instanceof TreeStructureError) throw new BridgeInputError(`${op}: ${names[0]} and ${names[1]} must have the same tree structure (the first tree is ${names[0]}): ${e.message}`);
    throw e;
  }
}

function shapeOf(x: unknown): readonly number[] | undefined {
  return typeof x === "object" && x !== null && "shape" in x && Array.isArray((x as { shape: unknown }).shape) ? (x as { shape: number[] }).shape : undefined;
}

/** `optax.tree.zeros_like(tree, dtype)`. */
export function zerosLike(tree: unknown, dtype?: DType): unknown {
  return treeMap((x: Leaf) => jnp.zerosLike(x, dtype), tree);
}

/** `optax.tree.full_like(tree, value)`. */
export function fullLike(tree: unknown, value: number): unknown {
  return treeMap((x: Leaf) => jnp.fullLike(x, value), tree);
}

/** `optax.tree.cast(tree, dtype)`: `t.astype(dtype)`, or the tree itself without a dtype. */
export function cast(tree: unknown, dtype: DType | undefined): unknown {
  return dtype === undefined ? tree : treeMap((t: Leaf) => jnp.astype(t, dtype), tree);
}

/** `optax.tree.cast_like(tree, other)`: each leaf in the dtype of `other`'s leaf. */
export function castLike(tree: unknown, other: unknown): unknown {
  return treeMap((t: Leaf, o: Tracer) => jnp.astype(t, o.dtype), tree, other);
}

/** `optax.tree.update_moment`: `(1 - decay) * g**order + decay * t`; `what` names the moment in messages. */
export function updateMoment(updates: unknown, moments: unknown, decay: number, order: number, op: string, what: string): unknown {
  return zipTrees(op, ["the updates", what], (g, t) => jnp.add(jnp.multiply(pyFloat(1 - decay), jnp.power(g, order)), jnp.multiply(pyFloat(decay), t)), updates, moments);
}

/**
 * `optax.tree.update_moment_per_elem_norm` for real leaves: `g ** order` is
 * the element-wise norm. Complex leaves are refused (optax takes
 * `abs_sq(g) ** (order / 2)`; not supported here yet).
 */
export function updateMomentPerElemNorm(updates: unknown, moments: unknown, decay: number, order: number, op: string, what: string): unknown {
  rejectComplex(updates, op);
  return updateMoment(updates, moments, decay, order, op, what);
}

/** `optax.tree.bias_correction`: `t / (1 - decay**count)`, the correction computed in the default float and cast to each leaf's dtype. */
export function biasCorrection(moment: unknown, decay: number, count: Tracer): unknown {
  const correction = jnp.subtract(1, jnp.power(pyFloat(decay), count));
  return treeMap((t: Tracer) => jnp.divide(t, jnp.astype(correction, t.dtype)), moment);
}

/** `optax.safe_increment`: `count + 1`, staying at the dtype's maximum instead of wrapping. */
export function safeIncrement(count: Tracer): Tracer {
  const d = count.dtype;
  const k = kindOf(d);
  if (k !== "i" && k !== "u") throw new BridgeInputError(`optax.safe_increment: the step count must be an integer array, got ${d}`);
  const maxValue = jnp.asarray(MAX_INT[d]!, d);
  const one = jnp.asarray(1, d);
  return jnp.where(jnp.less(count, maxValue), jnp.add(count, one), maxValue);
}

const MAX_INT: Partial<Record<DType, number | bigint>> = {
  int8: 127,
  int16: 32767,
  int32: 2147483647,
  int64: 9223372036854775807n,
  uint8: 255,
  uint16: 65535,
  uint32: 4294967295,
  uint64: 18446744073709551615n,
};

/** `abs_sq` for a real leaf: optax's `(x.conj() * x).real` is `x * x` there. */
export function absSq(x: Leaf): Tracer {
  return jnp.multiply(x, x);
}

/**
 * `optax.tree.norm(tree)` (the L2 norm of all leaves together), as optax
 * computes it: per leaf `square(x.real) + square(x.imag)` (the imaginary
 * part of a real array is zeros), summed, the sums added left to right from
 * `0`, then `sqrt`.
 */
export function globalNorm(tree: unknown, op = "optax.global_norm"): Tracer {
  rejectComplex(tree, op);
  const sums = (treeLeaves(treeMap((x: Tracer) => jnp.add(jnp.square(x), jnp.square(jnp.zerosLike(x))), tree)) as Tracer[]).map((x) => jnp.sum(x));
  let total: Leaf = 0;
  for (const s of sums) total = jnp.add(total, s);
  return jnp.sqrt(total);
}

/** optax's `_reject_complex`, with the path of the first complex leaf. */
export function rejectComplex(tree: unknown, op: string): void {
  let bad: { path: KeyPath; dtype: DType } | undefined;
  treeMapWithPath((path: KeyPath, x: unknown) => {
    if (!bad && (x instanceof Tracer || (typeof x === "object" && x !== null && "dtype" in x)) && kindOf((x as Tracer).dtype) === "c") bad = { path, dtype: (x as Tracer).dtype };
    return x;
  }, tree);
  if (bad) {
    throw new BridgeInputError(`${op}: complex parameters are not supported (the leaf is ${bad.dtype}); optimize the real and imaginary parts as separate real arrays`, keystr(bad.path) || "the root");
  }
}
