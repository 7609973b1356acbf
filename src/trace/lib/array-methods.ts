/**
 * The array methods (`x.add(y)`, `x.sum({axis})`, `x.reshape([2, -1])`,
 * `x.get(0)`, `x.at(0).set(1)`, `x.T`): `jax.Array`'s surface with jnp's
 * semantics, installed onto an array class by the op library, as
 * `jax/_src/numpy/array_methods.py` installs them onto `jax.Array`. The
 * tracer core never imports jnp, so core → tracer → jnp → core is no cycle.
 *
 * Loading this module installs them on `Tracer`; another array class gets
 * the same surface with `installArrayMethods(cls)`. `DeviceArray` gets them
 * from eager/methods.ts, each method wrapped so that outside a traced
 * function it runs at once (eager dispatch). Every method is one jnp call.
 */

import type { DType } from "../../values/dtype.js";
import { Tracer } from "../tracer.js";
import * as jnp from "./jnp.js";
import type { ArrayLike, AxisArg, Index } from "./jnp.js";

/** What `x.at(...)` offers (`x.at[...]` in JAX): functional updates returning `R`. */
export interface AtMethods<R> {
  get(): R;
  set(v: ArrayLike): R;
  add(v: ArrayLike): R;
  multiply(v: ArrayLike): R;
  min(v: ArrayLike): R;
  max(v: ArrayLike): R;
}

/** The methods an array class gets; `R` is the array type they return. */
export interface ArrayMethods<R> {
  // --- arithmetic (jnp semantics: promotion and broadcasting) --------------------
  add(y: ArrayLike): R;
  sub(y: ArrayLike): R;
  mul(y: ArrayLike): R;
  div(y: ArrayLike): R;
  floorDiv(y: ArrayLike): R;
  mod(y: ArrayLike): R;
  pow(y: ArrayLike): R;
  maximum(y: ArrayLike): R;
  minimum(y: ArrayLike): R;
  neg(): R;
  abs(): R;
  sign(): R;
  exp(): R;
  log(): R;
  sqrt(): R;
  square(): R;
  tanh(): R;
  sin(): R;
  cos(): R;
  floor(): R;
  ceil(): R;
  round(): R;
  clip(min?: ArrayLike | null, max?: ArrayLike | null): R;

  // --- comparisons and logic -------------------------------------------------------
  eq(y: ArrayLike): R;
  ne(y: ArrayLike): R;
  lt(y: ArrayLike): R;
  le(y: ArrayLike): R;
  gt(y: ArrayLike): R;
  ge(y: ArrayLike): R;
  and(y: ArrayLike): R;
  or(y: ArrayLike): R;
  xor(y: ArrayLike): R;
  not(): R;

  // --- linear algebra ------------------------------------------------------------------
  matmul(y: ArrayLike): R;
  dot(y: ArrayLike): R;

  // --- reductions -------------------------------------------------------------------------
  sum(opts?: AxisArg): R;
  prod(opts?: AxisArg): R;
  mean(opts?: AxisArg): R;
  max(opts?: AxisArg): R;
  min(opts?: AxisArg): R;
  all(opts?: AxisArg): R;
  any(opts?: AxisArg): R;
  argmax(opts?: { axis?: number; keepdims?: boolean }): R;
  argmin(opts?: { axis?: number; keepdims?: boolean }): R;
  cumsum(opts?: { axis?: number }): R;

  // --- shape ------------------------------------------------------------------------------------
  astype(dtype: DType): R;
  reshape(shape: readonly number[]): R;
  transpose(axes?: readonly number[]): R;
  readonly T: R;
  squeeze(axis?: number | readonly number[]): R;
  expandDims(axis: number | readonly number[]): R;
  flatten(): R;
  ravel(): R;
  broadcastTo(shape: readonly number[]): R;

  // --- indexing ---------------------------------------------------------------------------------------
  /** NumPy indexing: `x.get(0)`, `x.get(jnp.slice(1, null, 2), null)`, `x.get("1:, ::2")`, `x.get(idxTracer)`. */
  get(...index: Index[]): R;
  /** Functional updates, as `x.at[...]`: `x.at(0).set(1)`, `x.at(idx).add(v)`. */
  at(...index: Index[]): AtMethods<R>;
}

declare module "../tracer.js" {
  // The class gets the methods at run time from installArrayMethods below.
  interface Tracer extends ArrayMethods<Tracer> {}
}

/** The methods by name, each a function of `this` (installed as they are on Tracer; eager/methods.ts wraps them for DeviceArray). */
export const METHODS = {
  // --- arithmetic (jnp semantics: promotion and broadcasting) --------------------
  add(this: Tracer, y: ArrayLike) { return jnp.add(this, y); },
  sub(this: Tracer, y: ArrayLike) { return jnp.subtract(this, y); },
  mul(this: Tracer, y: ArrayLike) { return jnp.multiply(this, y); },
  div(this: Tracer, y: ArrayLike) { return jnp.divide(this, y); },
  floorDiv(this: Tracer, y: ArrayLike) { return jnp.floorDivide(this, y); },
  mod(this: Tracer, y: ArrayLike) { return jnp.remainder(this, y); },
  pow(this: Tracer, y: ArrayLike) { return jnp.power(this, y); },
  maximum(this: Tracer, y: ArrayLike) { return jnp.maximum(this, y); },
  minimum(this: Tracer, y: ArrayLike) { return jnp.minimum(this, y); },
  neg(this: Tracer) { return jnp.negative(this); },
  abs(this: Tracer) { return jnp.abs(this); },
  sign(this: Tracer) { return jnp.sign(this); },
  exp(this: Tracer) { return jnp.exp(this); },
  log(this: Tracer) { return jnp.log(this); },
  sqrt(this: Tracer) { return jnp.sqrt(this); },
  square(this: Tracer) { return jnp.square(this); },
  tanh(this: Tracer) { return jnp.tanh(this); },
  sin(this: Tracer) { return jnp.sin(this); },
  cos(this: Tracer) { return jnp.cos(this); },
  floor(this: Tracer) { return jnp.floor(this); },
  ceil(this: Tracer) { return jnp.ceil(this); },
  round(this: Tracer) { return jnp.round(this); },
  clip(this: Tracer, min?: ArrayLike | null, max?: ArrayLike | null) { return jnp.clip(this, min, max); },

  // --- comparisons and logic -------------------------------------------------------
  eq(this: Tracer, y: ArrayLike) { return jnp.equal(this, y); },
  ne(this: Tracer, y: ArrayLike) { return jnp.notEqual(this, y); },
  lt(this: Tracer, y: ArrayLike) { return jnp.less(this, y); },
  le(this: Tracer, y: ArrayLike) { return jnp.lessEqual(this, y); },
  gt(this: Tracer, y: ArrayLike) { return jnp.greater(this, y); },
  ge(this: Tracer, y: ArrayLike) { return jnp.greaterEqual(this, y); },
  and(this: Tracer, y: ArrayLike) { return jnp.bitwiseAnd(this, y); },
  or(this: Tracer, y: ArrayLike) { return jnp.bitwiseOr(this, y); },
  xor(this: Tracer, y: ArrayLike) { return jnp.bitwiseXor(this, y); },
  not(this: Tracer) { return jnp.bitwiseNot(this); },

  // --- linear algebra ------------------------------------------------------------------
  matmul(this: Tracer, y: ArrayLike) { return jnp.matmul(this, y); },
  dot(this: Tracer, y: ArrayLike) { return jnp.dot(this, y); },

  // --- reductions -------------------------------------------------------------------------
  sum(this: Tracer, opts?: AxisArg) { return jnp.sum(this, opts); },
  prod(this: Tracer, opts?: AxisArg) { return jnp.prod(this, opts); },
  mean(this: Tracer, opts?: AxisArg) { return jnp.mean(this, opts); },
  max(this: Tracer, opts?: AxisArg) { return jnp.max(this, opts); },
  min(this: Tracer, opts?: AxisArg) { return jnp.min(this, opts); },
  all(this: Tracer, opts?: AxisArg) { return jnp.all(this, opts); },
  any(this: Tracer, opts?: AxisArg) { return jnp.any(this, opts); },
  argmax(this: Tracer, opts?: { axis?: number; keepdims?: boolean }) { return jnp.argmax(this, opts); },
  argmin(this: Tracer, opts?: { axis?: number; keepdims?: boolean }) { return jnp.argmin(this, opts); },
  cumsum(this: Tracer, opts?: { axis?: number }) { return jnp.cumsum(this, opts); },

  // --- shape ------------------------------------------------------------------------------------
  astype(this: Tracer, dtype: DType) { return jnp.astype(this, dtype); },
  reshape(this: Tracer, shape: readonly number[]) { return jnp.reshape(this, shape); },
  transpose(this: Tracer, axes?: readonly number[]) { return jnp.transpose(this, axes); },
  squeeze(this: Tracer, axis?: number | readonly number[]) { return jnp.squeeze(this, axis); },
  expandDims(this: Tracer, axis: number | readonly number[]) { return jnp.expandDims(this, axis); },
  flatten(this: Tracer) { return jnp.ravel(this); },
  ravel(this: Tracer) { return jnp.ravel(this); },
  broadcastTo(this: Tracer, shape: readonly number[]) { return jnp.broadcastTo(this, shape); },

  // --- indexing ---------------------------------------------------------------------------------------
  get(this: Tracer, ...index: Index[]) { return jnp.getItem(this, index); },
  at(this: Tracer, ...index: Index[]) { return new jnp.AtIndexer(this, index); },
};

/** `x.T` */
export function transposeT(this: Tracer): Tracer {
  return jnp.transpose(this);
}

/** Define the array methods (non-enumerable, like class methods) and `T` on `cls.prototype`. */
export function installArrayMethods(cls: { readonly prototype: object }): void {
  for (const [name, fn] of Object.entries(METHODS)) {
    Object.defineProperty(cls.prototype, name, { value: fn, writable: true, configurable: true, enumerable: false });
  }
  Object.defineProperty(cls.prototype, "T", { get: transposeT, configurable: true, enumerable: false });
}

installArrayMethods(Tracer);
