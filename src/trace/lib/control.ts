/**
 * Control flow inside traced functions: `cond` / `switch`, `scan` and
 * `whileLoop`, recorded as equations whose bodies are sub-programs. Each
 * body is traced once, in its own trace; tracers of enclosing traces that
 * a body uses become extra inputs of the body (closure conversion) and
 * operands of the equation, so any nesting works.
 *
 * These functions work on flat lists of arrays. The pytree-aware
 * `filterCond` / `filterScan` (static leaves stay in TypeScript) build on
 * them.
 */

import type { DType } from "../../values/dtype.js";
import { describe } from "../../values/describe.js";
import { asTracer, avalOf, type Concrete, type In, isLitOperand, isWeak, lit, requireTrace, Trace } from "../core.js";
import { type Aval, showAval, type SubProgram } from "../ir.js";
import { Tracer } from "../tracer.js";
import * as lax from "./lax.js";
import { isJsScalar, type JsScalar, kindOf, scalarType } from "../dtypes.js";
import { traceError } from "../errors.js";
import { sameShape } from "../shapes.js";

export type Operand = Tracer | Concrete | JsScalar;
export type BodyOut = Tracer | Concrete | JsScalar;

/** A value's type as a body's input or output sees it. */
export interface Typed {
  aval: Aval;
  weak: boolean;
}

export const typeOf = (x: In): Typed => ({ aval: avalOf(x), weak: isWeak(x) });

/** An operand as a tracer of the current trace (JS scalars become weakly typed scalars, as Python scalars do). */
export function operandTracer(op: string, x: Operand): Tracer {
  if (isJsScalar(x)) {
    const t = scalarType(x, requireTrace(op).x64);
    return lax.broadcastInDim(lit(x, t.dtype, t.weak), [], []);
  }
  return asTracer(op, x);
}

function outputIn(op: string, trace: Trace, x: BodyOut, what: string): In {
  if (x instanceof Tracer) return x;
  if (isJsScalar(x)) {
    const t = scalarType(x, trace.x64);
    return lit(x, t.dtype, t.weak);
  }
  try {
    return asTracer(op, x);
  } catch {
    throw traceError(op, `${what} is ${describe(x, "kind")}; bodies return arrays (Tracer, DeviceArray, NDArray) or JS scalars`);
  }
}

/**
 * A body being traced: call `fn` with fresh inputs; outputs are kept open so
 * they can still be converted. Shared with the transformations
 * (transforms-flat.ts), whose bodies are traced the same way.
 */
export class Body {
  readonly trace: Trace;
  outs: In[] = [];
  constructor(parent: Trace, name: string) {
    this.trace = new Trace(parent, name);
  }
  run(inputs: readonly Typed[], fn: (args: Tracer[]) => readonly BodyOut[], op: string, what: string): this {
    this.trace.run(() => {
      const args = inputs.map((t) => this.trace.newInput(t.aval, t.weak));
      const raw = fn(args);
      this.outs = raw.map((o, i) => outputIn(op, this.trace, o, `${what} ${i}`));
    });
    return this;
  }
  /** Convert output i to `dtype` inside the body (weak-type promotion of a branch or carry). */
  convertOutput(i: number, dtype: DType): void {
    this.trace.run(() => {
      const o = this.outs[i]!;
      this.outs[i] = isLitOperand(o) ? lax.retypeLiteral(o, dtype, false) : lax.convertElementType(o, dtype);
    });
  }
  close(): void {
    this.trace.run(() => this.trace.close(this.outs));
  }
  types(): Typed[] {
    return this.outs.map(typeOf);
  }
}

function sameAval(a: Aval, b: Aval): boolean {
  return a.dtype === b.dtype && sameShape(a.shape, b.shape);
}

export function checkList(op: string, xs: unknown, what: string): readonly BodyOut[] {
  if (!Array.isArray(xs)) throw traceError(op, `${what} must be a JS array of arrays, got ${describe(xs, "kind")}`);
  return xs as BodyOut[];
}

// --- cond / switch ------------------------------------------------------------------

/**
 * `lax.switch(index, branches, ...operands)`: one equation; only the chosen
 * branch runs. Every branch must return the same number of arrays with the
 * same shapes and dtypes (a weakly typed output takes the other branches'
 * dtype, as in JAX).
 */
export function switchFlat(index: Operand, branches: readonly ((...ops: Tracer[]) => readonly BodyOut[])[], operands: readonly Operand[], opName = "switch"): Tracer[] {
  const op = opName;
  const parent = requireTrace(op);
  if (branches.length === 0) throw traceError(op, "needs at least one branch");
  let idx = operandTracer(op, index);
  if (idx.ndim !== 0) throw traceError(op, `the predicate/index must be a scalar, got ${showAval(idx.aval)}`);
  if (branches.length === 2 && idx.dtype !== "bool" && opName === "cond") idx = lax.ne(idx, lit(0, idx.dtype));
  if (idx.dtype !== "bool" && idx.dtype !== "int32") {
    const k = kindOf(idx.dtype);
    if (k !== "i" && k !== "u") throw traceError(op, `the index must be an integer or bool scalar, got ${showAval(idx.aval)}`);
    idx = lax.convertElementType(idx, "int32");
  }
  if (idx.dtype === "bool" && branches.length !== 2) throw traceError(op, `a bool predicate needs exactly two branches, got ${branches.length}`);
  const ops = operands.map((o) => operandTracer(op, o));
  const inTypes = ops.map(typeOf);
  const names = opName === "cond" ? ["falseFun", "trueFun"] : branches.map((_, i) => `branch ${i}`);
  const bodies = branches.map((fn, i) =>
    new Body(parent, `${op} ${names[i]}`).run(inTypes, (args) => checkList(op, fn(...args), `${names[i]}'s result`), op, `output of ${names[i]},`),
  );
  // Output types must agree; weak outputs are promoted to the strong dtype.
  const n = bodies[0]!.outs.length;
  bodies.forEach((b, i) => {
    if (b.outs.length !== n) throw traceError(op, `${names[0]} returns ${n} arrays but ${names[i]} returns ${b.outs.length}`);
  });
  const outTypes: Typed[] = [];
  for (let k = 0; k < n; k++) {
    const types = bodies.map((b) => typeOf(b.outs[k]!));
    const strong = types.find((t) => !t.weak) ?? types[0]!;
    bodies.forEach((b, i) => {
      const t = types[i]!;
      if (!sameShape(t.aval.shape, strong.aval.shape)) {
        throw traceError(op, `output ${k} has shape ${showAval(types[0]!.aval)} in ${names[0]} but ${showAval(t.aval)} in ${names[i]}; both branches must return the same shapes and dtypes`);
      }
      if (t.aval.dtype !== strong.aval.dtype) {
        if (t.weak) b.convertOutput(k, strong.aval.dtype);
        else throw traceError(op, `output ${k} has dtype ${showAval(strong.aval)} in one branch but ${showAval(t.aval)} in ${names[i]}; both branches must return the same shapes and dtypes`);
      }
    });
    outTypes.push({ aval: strong.aval, weak: types.every((t) => t.weak) });
  }
  bodies.forEach((b) => b.close());
  // One capture list for all branches.
  const captures: (Tracer | Concrete)[] = [];
  for (const b of bodies) for (const c of b.trace.captures) if (!captures.includes(c.outer)) captures.push(c.outer);
  const programs: SubProgram[] = bodies.map((b) => b.trace.toProgram("captures-first", captures));
  return lax.rawBind(
    "cond",
    [idx, ...(captures as Tracer[]), ...ops],
    { branches: programs },
    outTypes.map((t) => ({ aval: t.aval, weak: t.weak })),
  );
}

/** `lax.cond(pred, trueFun, falseFun, ...operands)` on flat lists of arrays. */
export function condFlat(pred: Operand, trueFun: (...ops: Tracer[]) => readonly BodyOut[], falseFun: (...ops: Tracer[]) => readonly BodyOut[], operands: readonly Operand[]): Tracer[] {
  return switchFlat(pred, [falseFun, trueFun], operands, "cond");
}

// --- scan --------------------------------------------------------------------------------

export interface ScanOptions {
  /** Number of steps; required when there are no xs, else checked against their leading axis. */
  length?: number;
  reverse?: boolean;
  /** Steps unrolled per loop iteration; `true` or 0 unrolls fully (lax.scan's `unroll`). */
  unroll?: number | boolean;
  /** lax.scan's `_split_transpose`. */
  splitTranspose?: boolean;
}

/**
 * `lax.scan` on flat lists: `f(carry, x) -> [carry, y]`. Returns the final
 * carry and the stacked ys. The carry's shapes and dtypes must come out of
 * `f` as they went in (a weakly typed init is promoted to the body's dtype,
 * as JAX does).
 */
export function scanFlat(
  f: (carry: Tracer[], x: Tracer[]) => readonly [readonly BodyOut[], readonly BodyOut[]],
  init: readonly Operand[],
  xs: readonly Operand[] | null,
  opts: ScanOptions = {},
  opName = "scan",
): { carry: Tracer[]; ys: Tracer[] } {
  const op = opName;
  const parent = requireTrace(op);
  let carry0 = init.map((c) => operandTracer(op, c));
  const xts = (xs ?? []).map((x) => operandTracer(op, x));
  for (const x of xts) if (x.ndim === 0) throw traceError(op, `xs must have a leading axis to scan over, got a scalar ${showAval(x.aval)}`);
  const lengths = xts.map((x) => x.shape[0]!);
  let length = opts.length;
  if (lengths.length) {
    const distinct = [...new Set(lengths)];
    if (distinct.length > 1) {
      throw traceError(op, `leading axes of xs must agree, got ${xts.map((x, i) => `xs[${i}] ${showAval(x.aval)}`).join(", ")}`);
    }
    if (length !== undefined && length !== distinct[0]) throw traceError(op, `length ${length} disagrees with the leading axis of xs (${distinct[0]})`);
    length = distinct[0]!;
  }
  if (length === undefined) throw traceError(op, "needs xs or a length");
  if (!Number.isInteger(length) || length < 0) throw traceError(op, `length must be a non-negative integer, got ${length}`);
  const unroll = opts.unroll === true ? Math.max(1, length) : opts.unroll === false || opts.unroll === undefined ? 1 : opts.unroll;
  if (!Number.isInteger(unroll) || unroll < 0) throw traceError(op, `unroll must be a non-negative integer (0 unrolls fully, as in lax.scan) or a boolean, got ${opts.unroll}`);
  const xTypes: Typed[] = xts.map((x) => ({ aval: { dtype: x.dtype, shape: x.shape.slice(1) }, weak: x.weak }));

  const traceBody = (): { body: Body; nCarry: number } => {
    const cTypes = carry0.map(typeOf);
    const body = new Body(parent, `${op} body`);
    let nCarry = 0;
    body.run(
      [...cTypes, ...xTypes],
      (args) => {
        const r = f(args.slice(0, cTypes.length), args.slice(cTypes.length));
        if (!Array.isArray(r) || r.length !== 2) throw traceError(op, `the body must return [carry, ys] (two JS arrays), got ${describe(r, "kind")}`);
        const c = checkList(op, r[0], "the returned carry");
        const y = checkList(op, r[1], "the returned ys");
        nCarry = c.length;
        return [...c, ...y];
      },
      op,
      "body output",
    );
    return { body, nCarry };
  };

  let { body, nCarry } = traceBody();
  if (nCarry !== carry0.length) throw traceError(op, `the body returns a carry of ${nCarry} arrays but init has ${carry0.length}`);
  // A weak init whose dtype the body changes is promoted once, then the body is traced again.
  let retrace = false;
  carry0 = carry0.map((c, i) => {
    const out = typeOf(body.outs[i]!);
    if (c.dtype !== out.aval.dtype && c.weak && sameShape(c.shape, out.aval.shape)) {
      retrace = true;
      return lax.convertElementType(c, out.aval.dtype, out.weak);
    }
    return c;
  });
  if (retrace) ({ body, nCarry } = traceBody());
  carry0.forEach((c, i) => {
    const out = typeOf(body.outs[i]!);
    if (!sameAval(c.aval, out.aval)) {
      if (out.weak && sameShape(c.shape, out.aval.shape)) body.convertOutput(i, c.dtype);
      else throw traceError(op, `the carry's type must not change: carry[${i}] goes in as ${showAval(c.aval)} and comes out of the body as ${showAval(out.aval)}`);
    }
  });
  body.close();
  const captures = body.trace.captures.map((c) => c.outer);
  const program = body.trace.toProgram("captures-first");
  const yTypes = body.outs.slice(nCarry).map(typeOf);
  const outs = lax.rawBind(
    "scan",
    [...(captures as Tracer[]), ...carry0, ...xts],
    { body: program, length, reverse: opts.reverse ?? false, unroll, num_consts: captures.length, num_carry: nCarry, _split_transpose: opts.splitTranspose ?? false },
    [...carry0.map((c) => ({ aval: c.aval, weak: c.weak })), ...yTypes.map((t) => ({ aval: { dtype: t.aval.dtype, shape: [length!, ...t.aval.shape] }, weak: t.weak }))],
  );
  return { carry: outs.slice(0, nCarry), ys: outs.slice(nCarry) };
}

// --- while ------------------------------------------------------------------------------------

/** `lax.while_loop(condFun, bodyFun, init)` on flat lists. `condFun` returns a bool scalar. */
export function whileFlat(condFun: (...carry: Tracer[]) => BodyOut, bodyFun: (...carry: Tracer[]) => readonly BodyOut[], init: readonly Operand[], opName = "while_loop"): Tracer[] {
  const op = opName;
  const parent = requireTrace(op);
  const carry0 = init.map((c) => operandTracer(op, c));
  const cTypes = carry0.map(typeOf);
  const cond = new Body(parent, `${op} cond`).run(cTypes, (args) => [condFun(...args)], op, "cond_fun result");
  const ct = typeOf(cond.outs[0]!);
  if (ct.aval.dtype !== "bool" || ct.aval.shape.length !== 0) throw traceError(op, `cond_fun must return a bool scalar, got ${showAval(ct.aval)}`);
  const body = new Body(parent, `${op} body`).run(cTypes, (args) => checkList(op, bodyFun(...args), "body_fun's result"), op, "body_fun output");
  if (body.outs.length !== carry0.length) throw traceError(op, `body_fun returns ${body.outs.length} arrays but the carry has ${carry0.length}`);
  carry0.forEach((c, i) => {
    const out = typeOf(body.outs[i]!);
    if (!sameAval(c.aval, out.aval)) {
      if (out.weak && sameShape(c.shape, out.aval.shape)) body.convertOutput(i, c.dtype);
      else throw traceError(op, `the carry's type must not change: carry[${i}] goes in as ${showAval(c.aval)} and comes out of body_fun as ${showAval(out.aval)}`);
    }
  });
  cond.close();
  body.close();
  const cc = cond.trace.captures.map((c) => c.outer);
  const bc = body.trace.captures.map((c) => c.outer);
  return lax.rawBind(
    "while",
    [...(cc as Tracer[]), ...(bc as Tracer[]), ...carry0],
    { cond: cond.trace.toProgram("captures-first"), body: body.trace.toProgram("captures-first"), cond_nconsts: cc.length, body_nconsts: bc.length },
    carry0.map((c) => ({ aval: c.aval, weak: c.weak })),
  );
}

/** `lax.fori_loop(lower, upper, body, init)` with static bounds, as a scan (like JAX does for static trip counts). */
export function foriLoopFlat(lower: number, upper: number, bodyFun: (i: Tracer, ...carry: Tracer[]) => readonly BodyOut[], init: readonly Operand[]): Tracer[] {
  const op = "fori_loop";
  const is64 = requireTrace(op).x64;
  const itype = is64 ? "int64" : "int32";
  const { carry } = scanFlat(
    (c) => {
      const [i, ...rest] = c as [Tracer, ...Tracer[]];
      const next = checkList(op, bodyFun(i, ...rest), "body's result");
      return [[lax.add(i, lit(1, itype)), ...next], []];
    },
    [lax.broadcastInDim(lit(lower, itype, true), [], []), ...init],
    null,
    { length: Math.max(0, upper - lower) },
    op,
  );
  return carry.slice(1);
}
