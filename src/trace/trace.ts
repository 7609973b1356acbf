/**
 * Tracing a TypeScript function of arrays into a Program.
 *
 * `traceFlat(fn, inputs, {x64})` calls `fn` once with one Tracer per input
 * type and returns the Program, its canonical bytes and sha256, and the
 * concrete arrays the function captured (to pass after the arguments at
 * run time, DeviceArrays as handles). Pytree handling (static leaves, output
 * structure) is the caller's: this level sees flat lists of arrays.
 */

import type { DType } from "../values/dtype.js";
import type { HostCallback } from "../session/callback-events.js";
import { asTracer, type Concrete, isConcrete, lit, Trace } from "./core.js";
import { type Aval, encodeProgram, IR_VERSION, type Program, sha256Hex } from "./ir.js";
import { Tracer } from "./tracer.js";
import { canonicalize, isJsScalar, type JsScalar, scalarType } from "./dtypes.js";
import { traceError } from "./errors.js";

export interface TraceOptions {
  /** The sidecar's `jax_enable_x64` mode (its handshake's `x64`): it decides default dtypes. */
  readonly x64: boolean;
  /** A name for messages (`jit(step)`). */
  readonly name?: string;
}

export interface InputSpec {
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Weakly typed (a JAX array made from a Python scalar). Default false. */
  readonly weak?: boolean;
}

export interface Traced {
  readonly program: Program;
  /** The canonical encoding: what travels and what the sidecar hashes. */
  readonly bytes: Uint8Array;
  readonly hash: string;
  /** Arrays the function captured; they are program inputs after the declared ones, in this order. */
  readonly captures: readonly Concrete[];
  readonly inputs: readonly Aval[];
  readonly outputs: readonly Aval[];
  /** Host callbacks its `callback` equations name by index (empty when it has none). */
  readonly callbacks?: readonly HostCallback[];
  /** Remote objects the program names by id (see pycall.ts): kept alive with it. */
  readonly keep?: readonly unknown[];
}

export type FlatOut = Tracer | Concrete | JsScalar;

/** Trace `fn` over flat array inputs. */
export function traceFlat(fn: (...args: Tracer[]) => FlatOut | readonly FlatOut[], inputs: readonly InputSpec[], opts: TraceOptions): Traced {
  const trace = new Trace(null, opts.name ?? "traced function", opts.x64);
  const program = trace.run(() => {
    const args = inputs.map((s) => trace.newInput({ dtype: canonicalize(s.dtype, opts.x64), shape: [...s.shape] }, s.weak ?? false));
    const raw = fn(...args);
    const outs = (Array.isArray(raw) ? raw : [raw]) as FlatOut[];
    const ins = outs.map((o, i) => {
      if (o instanceof Tracer) return o;
      if (isConcrete(o)) return asTracer("output", o);
      if (isJsScalar(o)) {
        const t = scalarType(o, opts.x64);
        return lit(o, t.dtype, t.weak);
      }
      throw traceError("trace", `output ${i} of ${trace.name} is ${typeof o}; outputs are arrays (Tracer, DeviceArray, NDArray) or JS scalars`);
    });
    trace.close(ins);
    return trace.toProgram("inputs-first");
  });
  const full: Program = { version: IR_VERSION, x64: opts.x64, inputs: program.inputs, eqns: program.eqns, outputs: program.outputs };
  const bytes = encodeProgram(full);
  const captures = trace.captures.map((c) => c.outer as Concrete);
  const outAvals = full.outputs.map((o) => (typeof o === "number" ? avalOfVar(full, o) : { dtype: o.dtype, shape: [] }));
  return { program: full, bytes, hash: sha256Hex(bytes), captures, inputs: full.inputs, outputs: outAvals, callbacks: trace.callbacks, keep: [...trace.keep] };
}

/** The type of variable `id` in a program (inputs first, then each equation's outputs). */
export function avalOfVar(p: Program, id: number): Aval {
  if (id < p.inputs.length) return p.inputs[id]!;
  let n = p.inputs.length;
  for (const e of p.eqns) {
    if (id < n + e.outputs.length) return e.outputs[id - n]!;
    n += e.outputs.length;
  }
  throw new RangeError(`variable ${id} is not defined in the program`);
}

