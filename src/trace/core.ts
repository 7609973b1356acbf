/**
 * The tracer's machinery: traces (one per function being traced, nested for
 * the bodies of cond, scan and while), the equations they record, and how a
 * value from an enclosing trace becomes an explicit input of an inner one
 * (closure conversion). Tracer itself lives in tracer.ts.
 */

import type { DType } from "../values/dtype.js";
import { encodeScalar, type JsScalar, ScalarConversionError } from "./dtypes.js";
import { DeviceArray } from "../values/device-array.js";
import { describe } from "../values/describe.js";
import { isArray } from "../values/tree.js";
import { NDArray } from "../values/ndarray.js";
import type { Aval, Eqn, Literal, Operand, ParamValue, SubProgram } from "./ir.js";
import type { HostCallback } from "../session/callback-events.js";
import { TraceError, traceError } from "./errors.js";
import { Tracer } from "./tracer.js";

/** A concrete array captured by a traced function: it becomes a program input passed at run time. */
export type Concrete = DeviceArray | NDArray;

export function isConcrete(x: unknown): x is Concrete {
  return x instanceof DeviceArray || x instanceof NDArray;
}

/**
 * tree.isArray (the one array predicate) with the tracer's types: the array
 * leaves a traced function can see are tracers and concrete arrays.
 */
export const isArrayLeaf = isArray as (x: unknown) => x is Tracer | Concrete;

/** A variable of one trace. Identity is what matters; numbers are given when the program is built. */
export class Var {
  constructor(readonly aval: Aval) {}
}

/** A literal operand as the tracer passes it: the IR literal and whether it is weakly typed. */
export interface LitOperand {
  readonly literal: Literal;
  readonly weak: boolean;
}

export function isLitOperand(x: unknown): x is LitOperand {
  return typeof x === "object" && x !== null && "literal" in x && "weak" in x;
}

export type In = Tracer | LitOperand;

interface RecEqn {
  readonly prim: string;
  readonly inputs: readonly (Var | Literal)[];
  readonly params: { readonly [k: string]: ParamValue };
  readonly outputs: readonly Var[];
}

// --- operands: what ops take, as the tracer sees it ------------------------------------

export function avalOf(x: In): Aval {
  return isLitOperand(x) ? { dtype: x.literal.dtype, shape: [] } : x.aval;
}
export function isWeak(x: In): boolean {
  return x.weak;
}

/** A literal operand of the given dtype. */
export function lit(value: JsScalar | { re: number; im: number }, dtype: DType, weak = false): LitOperand {
  try {
    return { literal: { lit: encodeScalar(value, dtype), dtype }, weak: weak && dtype !== "bool" };
  } catch (e) {
    if (e instanceof ScalarConversionError || e instanceof TypeError) throw traceError("literal", (e as Error).message);
    throw e;
  }
}

/** What to do about a JS array where an array was expected. */
export const NESTED_HINT = (x: unknown): string => (Array.isArray(x) ? " (wrap nested lists with jnp.asarray)" : "");

/** A tracer of the current trace for a tracer or a captured concrete array. */
export function asTracer(op: string, x: Tracer | Concrete): Tracer {
  if (x instanceof Tracer) return x;
  if (isConcrete(x)) return captureConcrete(requireTrace(op), x);
  throw traceError(op, `expected an array (Tracer, DeviceArray or NDArray), got ${describe(x, "kind")}${NESTED_HINT(x)}`);
}

/** The outermost trace being recorded (where callback tables live). */
export function rootTrace(): Trace | undefined {
  return stack[0];
}

/** Primitives with effects: never removed as dead code. */
export const EFFECTFUL = new Set<string>(["callback"]);

interface Capture {
  /** In the parent trace (a Tracer), or a concrete array when this is the root trace. */
  readonly outer: Tracer | Concrete;
  readonly local: Tracer;
}

const stack: Trace[] = [];
const NO_AXES: ReadonlyMap<string, number> = new Map();

/**
 * The size of a named axis (the product, for several) as the current trace
 * binds it; an axis no enclosing shardMap or vmap binds is an error naming
 * it, as JAX's unbound axis name is.
 */
export function axisSize(op: string, names: readonly string[]): number {
  const env = requireTrace(op).axisEnv;
  let n = 1;
  for (const a of names) {
    const size = env.get(a);
    if (size === undefined) {
      const bound = [...env.keys()];
      throw traceError(op, `unbound axis name '${a}': collectives name an axis of an enclosing shardMap's mesh or a vmap's axisName (${bound.length ? `bound here: ${bound.map((b) => `'${b}'`).join(", ")}` : "none is bound here"})`);
    }
    n *= size;
  }
  return n;
}

/** The innermost trace being recorded, or undefined outside any traced function. */
export function currentTrace(): Trace | undefined {
  return stack[stack.length - 1];
}

export function requireTrace(op: string): Trace {
  const t = currentTrace();
  if (t === undefined) {
    throw traceError(op, "called outside a traced function: jnp, lax, nn and random build programs and only work inside jit, filterCond, filterScan or trace");
  }
  return t;
}

export class Trace {
  readonly parent: Trace | null;
  readonly x64: boolean;
  /** What is being traced, for messages (`jit(f)`, `cond branch 1`, `scan body`). */
  readonly name: string;
  readonly inputs: Tracer[] = [];
  readonly captures: Capture[] = [];
  readonly eqns: RecEqn[] = [];
  /** Host callbacks of this program (only the root trace's is used). */
  readonly callbacks: HostCallback[] = [];
  /** Objects the program names by id (PyRefs of pycall equations): held as long as the program is (only the root trace's is used). */
  readonly keep = new Set<unknown>();
  /**
   * The named axes collectives may use here, with their sizes: the
   * enclosing traces' and this trace's own (a shardMap body binds its mesh's
   * axes; a vmap body with an axis name binds that name to the batch size).
   */
  readonly axisEnv: ReadonlyMap<string, number>;
  #captureMap = new Map<object, Tracer>();
  #outputs: (Var | Literal)[] | null = null;

  constructor(parent: Trace | null, name: string, x64?: boolean, axes?: Readonly<Record<string, number>>) {
    this.parent = parent;
    this.name = name;
    const mode = x64 ?? parent?.x64;
    if (mode === undefined) throw new TypeError("a root trace needs the x64 mode (the sidecar's `x64` from its handshake)");
    this.x64 = mode;
    const env = parent?.axisEnv ?? NO_AXES;
    this.axisEnv = axes === undefined ? env : new Map([...env, ...Object.entries(axes)]);
  }

  get closed(): boolean {
    return this.#outputs !== null;
  }

  /** A declared input (an argument of the traced function). */
  newInput(aval: Aval, weak = false): Tracer {
    const t = new Tracer(this, new Var(freezeAval(aval)), weak);
    this.inputs.push(t);
    return t;
  }

  /** The local tracer standing for an outer tracer (or, at the root, a concrete array). */
  capture(outer: Tracer | Concrete): Tracer {
    const key: object = outer instanceof Tracer ? outer.v : outer;
    const hit = this.#captureMap.get(key);
    if (hit) return hit;
    if (outer instanceof Tracer) {
      if (outer.trace !== this.parent) throw new Error("internal: capture from a trace that is not the parent");
    } else if (this.parent !== null) {
      throw new Error("internal: concrete arrays are captured by the root trace");
    }
    const aval = outer instanceof Tracer ? outer.aval : { dtype: outer.dtype, shape: [...outer.shape] };
    const local = new Tracer(this, new Var(freezeAval(aval)), outer instanceof Tracer ? outer.weak : false);
    this.captures.push({ outer, local });
    this.#captureMap.set(key, local);
    return local;
  }

  /** Run `fn` with this trace as the current one. */
  run<T>(fn: () => T): T {
    stack.push(this);
    try {
      return fn();
    } finally {
      const top = stack.pop();
      if (top !== this) throw new Error("internal: trace stack out of order");
    }
  }

  /** Record the outputs (lifting outer tracers into this trace). Must run while this trace is current. */
  close(outputs: readonly In[]): void {
    if (currentTrace() !== this) throw new Error("internal: close() outside the trace's own run()");
    this.#outputs = outputs.map((o) => (isLitOperand(o) ? o.literal : localVar(this, o, "output")));
  }

  /**
   * Build the program. Inputs are ordered as `order` says, and, when
   * `captureOrder` is given, this trace's captures follow that order (extra
   * entries become unused inputs: the branches of one cond share one input
   * list). Dead equations without effects are dropped.
   */
  toProgram(order: "inputs-first" | "captures-first", captureOrder?: readonly (Tracer | Concrete)[]): SubProgram {
    if (this.#outputs === null) throw new Error("internal: toProgram() before close()");
    let caps: Var[];
    if (captureOrder) {
      caps = captureOrder.map((o) => {
        const hit = this.#captureMap.get(o instanceof Tracer ? o.v : o);
        if (hit) return hit.v;
        return new Var(freezeAval(o instanceof Tracer ? o.aval : { dtype: o.dtype, shape: [...o.shape] }));
      });
      if (this.captures.some((c) => !captureOrder.includes(c.outer))) throw new Error("internal: captureOrder misses a capture");
    } else {
      caps = this.captures.map((c) => c.local.v);
    }
    const declared = this.inputs.map((t) => t.v);
    const inVars = order === "inputs-first" ? [...declared, ...caps] : [...caps, ...declared];

    // Dead-code elimination, backwards from the outputs and effects.
    const live = new Set<Var>();
    for (const o of this.#outputs) if (o instanceof Var) live.add(o);
    const keep: boolean[] = new Array(this.eqns.length).fill(false);
    for (let i = this.eqns.length - 1; i >= 0; i--) {
      const e = this.eqns[i]!;
      if (EFFECTFUL.has(e.prim) || e.outputs.some((v) => live.has(v)) || hasEffect(e.params)) {
        keep[i] = true;
        for (const a of e.inputs) if (a instanceof Var) live.add(a);
      }
    }

    const ids = new Map<Var, number>();
    let next = 0;
    for (const v of inVars) ids.set(v, next++);
    const op = (a: Var | Literal): Operand => {
      if (!(a instanceof Var)) return a;
      const id = ids.get(a);
      if (id === undefined) throw new Error("internal: variable used before it is defined");
      return id;
    };
    const eqns: Eqn[] = [];
    this.eqns.forEach((e, i) => {
      if (!keep[i]) return;
      const inputs = e.inputs.map(op);
      for (const v of e.outputs) ids.set(v, next++);
      eqns.push({ prim: e.prim, inputs, params: e.params, outputs: e.outputs.map((v) => v.aval) });
    });
    return { inputs: inVars.map((v) => v.aval), eqns, outputs: this.#outputs.map(op) };
  }

  record(prim: string, inputs: readonly (Var | Literal)[], params: { readonly [k: string]: ParamValue }, outputs: readonly Var[]): void {
    if (this.closed) throw new Error("internal: recording into a closed trace");
    this.eqns.push({ prim, inputs, params, outputs });
  }
}

function hasEffect(params: { readonly [k: string]: ParamValue }): boolean {
  // A sub-program with an effect makes its cond/scan/while effectful too.
  const visit = (v: ParamValue): boolean => {
    if (v === null || typeof v !== "object") return false;
    if (Array.isArray(v)) return v.some(visit);
    const o = v as { eqns?: readonly Eqn[] };
    if (Array.isArray(o.eqns)) return o.eqns.some((e) => EFFECTFUL.has(e.prim) || hasEffect(e.params));
    return Object.values(v as object).some((x) => visit(x as ParamValue));
  };
  return Object.values(params).some(visit);
}

function freezeAval(a: Aval): Aval {
  return Object.freeze({ dtype: a.dtype, shape: Object.freeze([...a.shape]) });
}

/** The variable of trace `target` that stands for tracer `t` (lifting it through every trace in between). */
export function localVar(target: Trace, t: Tracer, op: string): Var {
  if (t.trace === target) return t.v;
  const i = stack.indexOf(t.trace);
  const j = stack.indexOf(target);
  if (i < 0 || j < 0 || i > j || t.trace.closed) {
    throw traceError(
      op,
      `a tracer from ${t.trace.name} (${t.dtype}[${t.shape.join(", ")}]) was used after that trace finished or outside it: ` +
        `tracers must not escape the function they were made in (do not store them in outer variables; return them instead)`,
    );
  }
  let cur: Tracer = t;
  for (let k = i + 1; k <= j; k++) cur = stack[k]!.capture(cur);
  return cur.v;
}

/** The tracer of the current trace for a concrete array captured by user code. */
export function captureConcrete(target: Trace, a: Concrete): Tracer {
  const root = stack[0];
  if (root === undefined || stack.indexOf(target) < 0) throw new Error("internal: captureConcrete outside a trace");
  if (a instanceof DeviceArray && a.disposed) throw traceError("capture", `${a.toString()} was disposed and cannot be used in a traced function`);
  let cur = root.capture(a);
  const j = stack.indexOf(target);
  for (let k = 1; k <= j; k++) cur = stack[k]!.capture(cur);
  return cur;
}

/**
 * Record one equation in the current trace. `outs` are the result types
 * (computed by the caller's shape rule) and their weakness.
 */
export function bind(prim: string, inputs: readonly In[], params: { readonly [k: string]: ParamValue }, outs: readonly { aval: Aval; weak?: boolean }[]): Tracer[] {
  const trace = requireTrace(prim);
  const atoms = inputs.map((x) => (isLitOperand(x) ? x.literal : localVar(trace, x, prim)));
  const vars = outs.map((o) => new Var(freezeAval(o.aval)));
  trace.record(prim, atoms, params, vars);
  return vars.map((v, k) => new Tracer(trace, v, outs[k]!.weak ?? false));
}

export function bind1(prim: string, inputs: readonly In[], params: { readonly [k: string]: ParamValue }, out: { dtype: DType; shape: readonly number[]; weak?: boolean }): Tracer {
  return bind(prim, inputs, params, [{ aval: { dtype: out.dtype, shape: out.shape }, weak: out.weak ?? false }])[0]!;
}

export { TraceError };
