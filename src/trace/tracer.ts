/**
 * `Tracer`: an abstract array inside a traced function. It knows its shape
 * and dtype (read `x.shape`, `x.dtype`, `x.ndim`) and records every
 * operation applied to it; it has no values. Its array methods, as
 * `jax.Array`'s (`x.add(y)`, `x.sum({axis})`, `x.reshape([2, -1])`,
 * `x.at(0).set(1)`), are installed by the op library
 * (lib/array-methods.ts), so this class never imports jnp.
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
import { registerArrayClass } from "../values/tree.js";
import { describeAs } from "../values/describe.js";

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
  [describeAs](): string {
    return this.describe();
  }
}

// Tracers are array leaves for flatten/partition (eqx.is_array is true for JAX tracers).
registerArrayClass(Tracer);
