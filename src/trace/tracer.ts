/**
 * `Tracer`: an abstract array inside a traced function. It knows its shape
 * and dtype (read `x.shape`, `x.dtype`, `x.ndim`) and records every
 * operation applied to it; it has no values. Methods mirror `jax.Array`'s
 * (`x.add(y)`, `x.sum({axis})`, `x.reshape([2, -1])`, `x.at(0).set(1)`).
 *
 * Using a tracer as a JS value (`if (x > 0)`, `Number(x)`, `${x}`, `+x`)
 * throws: branch with `filterCond`, loop with `filterScan`.
 */

import { inspect } from "node:util";
import type { DType } from "../values/dtype.js";
import type { Aval } from "./ir.js";
import { showAval } from "./ir.js";
import type { Trace, Var } from "./core.js";
import { TracerConversionError, TRACER_AS_VALUE } from "./errors.js";
import * as jnp from "./lib/jnp.js";
import { registerArrayClass } from "../values/tree.js";
import type { ArrayLike, AxisArg, Index } from "./lib/jnp.js";

export class Tracer {
  readonly trace: Trace;
  /** The variable this tracer names in its trace. */
  readonly v: Var;
  /** Weakly typed (like a JAX array made from a Python scalar): it takes its partner's dtype in promotion. */
  readonly weak: boolean;

  constructor(trace: Trace, v: Var, weak: boolean) {
    this.trace = trace;
    this.v = v;
    this.weak = weak;
  }

  get aval(): Aval {
    return this.v.aval;
  }
  get dtype(): DType {
    return this.v.aval.dtype;
  }
  get shape(): readonly number[] {
    return this.v.aval.shape;
  }
  get ndim(): number {
    return this.v.aval.shape.length;
  }
  get size(): number {
    return this.v.aval.shape.reduce((a, b) => a * b, 1);
  }

  // --- not a JS value ----------------------------------------------------------
  [Symbol.toPrimitive](hint: string): never {
    throw new TracerConversionError(TRACER_AS_VALUE(hint === "string" ? "Converting to a string" : "Using as a number or boolean (a comparison, arithmetic with +-*/ or Number())", this.describe()));
  }
  valueOf(): never {
    throw new TracerConversionError(TRACER_AS_VALUE("Reading the value", this.describe()));
  }
  toString(): never {
    throw new TracerConversionError(TRACER_AS_VALUE("Converting to a string", this.describe()));
  }
  toJSON(): never {
    throw new TracerConversionError(TRACER_AS_VALUE("Serialising to JSON", this.describe()));
  }
  /** Tracers are not iterable (their values are unknown); index with `x.get(i)` or unstack with `jnp.unstack`. */
  [Symbol.iterator](): never {
    throw new TracerConversionError(TRACER_AS_VALUE("Iterating", this.describe()) + " To take rows, use x.get(i) or jnp.unstack(x).");
  }

  describe(): string {
    return `Tracer<${showAval(this.aval)}${this.weak ? ", weak" : ""}> in ${this.trace.name}`;
  }
  [inspect.custom](): string {
    return this.describe();
  }

  // --- arithmetic (jnp semantics: promotion and broadcasting) --------------------
  add(y: ArrayLike): Tracer { return jnp.add(this, y); }
  sub(y: ArrayLike): Tracer { return jnp.subtract(this, y); }
  mul(y: ArrayLike): Tracer { return jnp.multiply(this, y); }
  div(y: ArrayLike): Tracer { return jnp.divide(this, y); }
  floorDiv(y: ArrayLike): Tracer { return jnp.floorDivide(this, y); }
  mod(y: ArrayLike): Tracer { return jnp.remainder(this, y); }
  pow(y: ArrayLike): Tracer { return jnp.power(this, y); }
  maximum(y: ArrayLike): Tracer { return jnp.maximum(this, y); }
  minimum(y: ArrayLike): Tracer { return jnp.minimum(this, y); }
  neg(): Tracer { return jnp.negative(this); }
  abs(): Tracer { return jnp.abs(this); }
  sign(): Tracer { return jnp.sign(this); }
  exp(): Tracer { return jnp.exp(this); }
  log(): Tracer { return jnp.log(this); }
  sqrt(): Tracer { return jnp.sqrt(this); }
  square(): Tracer { return jnp.square(this); }
  tanh(): Tracer { return jnp.tanh(this); }
  sin(): Tracer { return jnp.sin(this); }
  cos(): Tracer { return jnp.cos(this); }
  floor(): Tracer { return jnp.floor(this); }
  ceil(): Tracer { return jnp.ceil(this); }
  round(): Tracer { return jnp.round(this); }
  clip(min?: ArrayLike | null, max?: ArrayLike | null): Tracer { return jnp.clip(this, min, max); }

  // --- comparisons and logic -------------------------------------------------------
  eq(y: ArrayLike): Tracer { return jnp.equal(this, y); }
  ne(y: ArrayLike): Tracer { return jnp.notEqual(this, y); }
  lt(y: ArrayLike): Tracer { return jnp.less(this, y); }
  le(y: ArrayLike): Tracer { return jnp.lessEqual(this, y); }
  gt(y: ArrayLike): Tracer { return jnp.greater(this, y); }
  ge(y: ArrayLike): Tracer { return jnp.greaterEqual(this, y); }
  and(y: ArrayLike): Tracer { return jnp.bitwiseAnd(this, y); }
  or(y: ArrayLike): Tracer { return jnp.bitwiseOr(this, y); }
  xor(y: ArrayLike): Tracer { return jnp.bitwiseXor(this, y); }
  not(): Tracer { return jnp.bitwiseNot(this); }

  // --- linear algebra ------------------------------------------------------------------
  matmul(y: ArrayLike): Tracer { return jnp.matmul(this, y); }
  dot(y: ArrayLike): Tracer { return jnp.dot(this, y); }

  // --- reductions -------------------------------------------------------------------------
  sum(opts?: AxisArg): Tracer { return jnp.sum(this, opts); }
  prod(opts?: AxisArg): Tracer { return jnp.prod(this, opts); }
  mean(opts?: AxisArg): Tracer { return jnp.mean(this, opts); }
  max(opts?: AxisArg): Tracer { return jnp.max(this, opts); }
  min(opts?: AxisArg): Tracer { return jnp.min(this, opts); }
  all(opts?: AxisArg): Tracer { return jnp.all(this, opts); }
  any(opts?: AxisArg): Tracer { return jnp.any(this, opts); }
  argmax(opts?: { axis?: number; keepdims?: boolean }): Tracer { return jnp.argmax(this, opts); }
  argmin(opts?: { axis?: number; keepdims?: boolean }): Tracer { return jnp.argmin(this, opts); }
  cumsum(opts?: { axis?: number }): Tracer { return jnp.cumsum(this, opts); }

  // --- shape ------------------------------------------------------------------------------------
  astype(dtype: DType): Tracer { return jnp.astype(this, dtype); }
  reshape(shape: readonly number[]): Tracer { return jnp.reshape(this, shape); }
  transpose(axes?: readonly number[]): Tracer { return jnp.transpose(this, axes); }
  get T(): Tracer { return jnp.transpose(this); }
  squeeze(axis?: number | readonly number[]): Tracer { return jnp.squeeze(this, axis); }
  expandDims(axis: number | readonly number[]): Tracer { return jnp.expandDims(this, axis); }
  flatten(): Tracer { return jnp.ravel(this); }
  ravel(): Tracer { return jnp.ravel(this); }
  broadcastTo(shape: readonly number[]): Tracer { return jnp.broadcastTo(this, shape); }

  // --- indexing ---------------------------------------------------------------------------------------
  /** NumPy indexing: `x.get(0)`, `x.get(jnp.slice(1, null, 2), null)`, `x.get("1:, ::2")`, `x.get(idxTracer)`. */
  get(...index: Index[]): Tracer { return jnp.getItem(this, index); }
  /** Functional updates, as `x.at[...]`: `x.at(0).set(1)`, `x.at(idx).add(v)`. */
  at(...index: Index[]): jnp.AtIndexer { return new jnp.AtIndexer(this, index); }
}

// Tracers are array leaves for flatten/partition (eqx.is_array is true for JAX tracers).
registerArrayClass(Tracer);
