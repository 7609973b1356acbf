/**
 * Control flow inside traced functions: `cond` / `switch`, `scan` and
 * `whileLoop`, recorded as equations whose bodies are sub-programs. Each
 * body is traced once, in its own trace; tracers of enclosing traces that
 * a body uses become extra inputs of the body (closure conversion) and
 * operands of the equation, so any nesting works.
 *
 * These functions work on flat lists of arrays. The pytree-aware
 * `filterCond` / `filterScan` (static leaves stay in TypeScript) build on
 * them and pass the key paths of their leaves (`FlatNames`), so errors name
 * `carry['params'].w` rather than a flat index.
 *
 * The type rules are JAX's (jax/_src/lax/control_flow): a cond's branches
 * must agree exactly in shape and dtype (weak types are not promoted), and
 * a loop carry may only have its weak init converted, once, before the
 * body is traced again. Errors use JAX's wording.
 */

import { describe } from "../../values/describe.js";
import { asTracer, avalOf, type Concrete, type In, isWeak, lit, requireTrace, Trace } from "../core.js";
import { type Aval, type SubProgram } from "../ir.js";
import { Tracer } from "../tracer.js";
import * as lax from "./lax.js";
import { isJsScalar, type JsScalar, kindOf, resultType, scalarType } from "../dtypes.js";
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
  /** `axes`: named axes this body binds (vmap's axis_name), so that collectives inside it can name them. */
  constructor(parent: Trace, name: string, axes?: Readonly<Record<string, number>>) {
    this.trace = new Trace(parent, name, undefined, axes);
  }
  run(inputs: readonly Typed[], fn: (args: Tracer[]) => readonly BodyOut[], op: string, what: string): this {
    this.trace.run(() => {
      const args = inputs.map((t) => this.trace.newInput(t.aval, t.weak));
      const raw = fn(args);
      this.outs = raw.map((o, i) => outputIn(op, this.trace, o, `${what} ${i}`));
    });
    return this;
  }
  close(): void {
    this.trace.run(() => this.trace.close(this.outs));
  }
  types(): Typed[] {
    return this.outs.map(typeOf);
  }
}

/** JAX's `core.typematch`: same dtype and shape; weak types are ignored. */
function typematch(a: Aval, b: Aval): boolean {
  return a.dtype === b.dtype && sameShape(a.shape, b.shape);
}

/** A type as JAX's messages print it (`ShapedArray.str_short`: `float32[2,3]`). */
export function jaxTypeStr(a: Aval): string {
  return `${a.dtype}[${a.shape.join(",")}]`;
}

/** JAX's `core.aval_mismatch_extra`: ", so the dtypes do not match" and friends. */
function mismatchExtra(a: Aval, b: Aval): string {
  const m: string[] = [];
  if (a.dtype !== b.dtype) m.push("the dtypes do not match");
  if (!sameShape(a.shape, b.shape)) m.push("the shapes do not match");
  if (m.length === 0) return "";
  return m.length === 1 ? `, so ${m[0]}` : `, so ${m.slice(0, -1).join(", ")}, and ${m[m.length - 1]}`;
}

/** JAX's way of listing one or several differences after a headline. */
function differences(headline: string, diffs: readonly string[], revise: string): string {
  // JAX capitalizes a lone difference that starts a sentence ("The output of ..."), never a name.
  const cap = (d: string) => (d.startsWith("the ") ? `T${d.slice(1)}` : d);
  const body = diffs.length === 1 ? `${cap(diffs[0]!)}.` : diffs.map((d, i) => `  * ${d}${i === diffs.length - 1 ? "." : ";"}`).join("\n");
  return `${headline}\n\n${body}\n\n${revise}`;
}

export function checkList(op: string, xs: unknown, what: string): readonly BodyOut[] {
  if (!Array.isArray(xs)) throw traceError(op, `${what} must be a JS array of arrays, got ${describe(xs, "kind")}`);
  return xs as BodyOut[];
}

/**
 * How errors name the parts of a flat list: pytree-aware callers
 * (filterCond, filterScan) pass the key paths of their array leaves, so a
 * message says `carry['params'].w` where the flat list would say `carry[1]`.
 */
export interface FlatNames {
  /** The op named in errors (default: the primitive's API name, `cond`, `switch`, `scan`). */
  op?: string;
  /** Key path (`keystr`) of output k within a branch's output tree; "" for a lone array. Default `[k]`. */
  outPath?: (k: number) => string;
  /** Key path of carry leaf i within the carry (`['params'].w`; "" when the carry is one array). Default `[i]`. */
  carryPath?: (i: number) => string;
  /** Full name of xs leaf i (`xs['obs']`). Default `xs[i]`. */
  xsName?: (i: number) => string;
}

// --- cond / switch ------------------------------------------------------------------

type BranchFn = (...ops: Tracer[]) => readonly BodyOut[];

/**
 * `lax.switch(index, branches, ...operands)`: one equation; only the chosen
 * branch runs. As in `lax.switch`, the index is an integer scalar (bool and
 * float are refused), a single branch is simply called, and every branch
 * must return the same number of arrays with the same shapes and dtypes
 * (weak types may differ; the result takes branch 0's).
 */
export function switchFlat(index: Operand, branches: readonly BranchFn[], operands: readonly Operand[], names: FlatNames = {}): Tracer[] {
  const op = names.op ?? "switch";
  requireTrace(op);
  let idx = operandTracer(op, index);
  if (idx.ndim !== 0) throw traceError(op, `Branch index must be scalar, got ${jaxTypeStr(idx.aval)}`);
  const k = kindOf(idx.dtype);
  if (k !== "i" && k !== "u") throw traceError(op, `Index type must be an integer, got ${jaxTypeStr(idx.aval)}`);
  if (branches.length === 0) throw traceError(op, "Empty branch sequence");
  const ops = operands.map((o) => operandTracer(op, o));
  if (branches.length === 1) {
    // lax.switch calls a lone branch directly: no cond, no type checks.
    return checkList(op, branches[0]!(...ops), "branch 0's result").map((o, i) => outputTracer(op, o, `output ${i} of branch 0`));
  }
  if (idx.dtype !== "int32") idx = lax.convertElementType(idx, "int32");
  const named = branches.map((fn, i) => ({ fn, name: `branch ${i}` }));
  return branchesFlat(op, idx, named, named.map((_, i) => i), ops, names.outPath);
}

/**
 * `lax.cond(pred, trueFun, falseFun, ...operands)` on flat lists of arrays.
 * As in `lax.cond`: the predicate is a scalar bool or number (an int or
 * float is compared with 0; complex and bfloat16 are refused), trueFun is traced first,
 * the branches' outputs must match in count, shape and dtype (no weak-type
 * promotion: a weak int against a float32 is an error), and the result
 * takes falseFun's weak types (branch 0's, as cond_p's abstract eval does).
 */
export function condFlat(pred: Operand, trueFun: BranchFn, falseFun: BranchFn, operands: readonly Operand[], names: FlatNames = {}): Tracer[] {
  const op = names.op ?? "cond";
  requireTrace(op);
  let p = operandTracer(op, pred);
  if (p.ndim !== 0) throw traceError(op, `Pred must be a scalar, got ${jaxTypeStr(p.aval)}`);
  // lax.cond asks numpy's dtype.kind for 'b', 'i', 'u' or 'f': complex is refused, and so is
  // bfloat16, whose numpy kind is 'V' (an ml_dtypes extension type).
  const k = kindOf(p.dtype);
  if (k === "c" || p.dtype === "bfloat16") throw traceError(op, `Pred type must be either boolean or number, got ${p.dtype}`);
  if (k !== "b") p = lax.ne(p, lit(0, p.dtype));
  const ops = operands.map((o) => operandTracer(op, o));
  return branchesFlat(op, p, [{ fn: falseFun, name: "falseFun" }, { fn: trueFun, name: "trueFun" }], [1, 0], ops, names.outPath);
}

function outputTracer(op: string, x: BodyOut, what: string): Tracer {
  if (x instanceof Tracer || isJsScalar(x)) return operandTracer(op, x);
  try {
    return asTracer(op, x);
  } catch {
    throw traceError(op, `${what} is ${describe(x, "kind")}; bodies return arrays (Tracer, DeviceArray, NDArray) or JS scalars`);
  }
}

/**
 * The shared part of cond and switch: trace each branch (in `order`; the
 * first is the one the others are compared with, as JAX compares true_fun
 * or branch 0 with the rest), check the outputs as `_check_branch_outputs`
 * does, and bind one `cond` equation with the branches in index order.
 */
function branchesFlat(op: string, idx: Tracer, branches: readonly { fn: BranchFn; name: string }[], order: readonly number[], ops: readonly Tracer[], outPath?: (k: number) => string): Tracer[] {
  const parent = requireTrace(op);
  const inTypes = ops.map(typeOf);
  const bodies: Body[] = new Array(branches.length);
  for (const i of order) {
    const { fn, name } = branches[i]!;
    bodies[i] = new Body(parent, `${op} ${name}`).run(inTypes, (args) => checkList(op, fn(...args), `${name}'s result`), op, `output of ${name},`);
  }
  const ref = order[0]!;
  const refName = branches[ref]!.name;
  const n = bodies[ref]!.outs.length;
  const at = (k: number) => {
    const p = outPath ? outPath(k) : `[${k}]`;
    return p ? ` at path ${p}` : "";
  };
  for (const i of order.slice(1)) {
    const name = branches[i]!.name;
    const m = bodies[i]!.outs.length;
    if (m !== n) {
      throw traceError(
        op,
        differences(
          "branch outputs must have the same pytree structure, but they differ:",
          [`${refName} output is a list of length ${n} but ${name} output is a list of length ${m}, so the lengths do not match`],
          `Revise ${refName} and/or ${name} so that they have the same pytree structure.`,
        ),
      );
    }
    const diffs: string[] = [];
    for (let k = 0; k < n; k++) {
      const a = typeOf(bodies[ref]!.outs[k]!).aval;
      const b = typeOf(bodies[i]!.outs[k]!).aval;
      if (!typematch(a, b)) diffs.push(`the output of ${refName}${at(k)} has type ${jaxTypeStr(a)} but the corresponding output of ${name} has type ${jaxTypeStr(b)}${mismatchExtra(a, b)}`);
    }
    if (diffs.length) throw traceError(op, differences("branches must have equal output types but they differ:", diffs, `Revise ${refName} and/or ${name} so that all output types match.`));
  }
  const outTypes = bodies[0]!.types();
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
 * The carry rules of `lax.scan` and `lax.while_loop`: trace the body; a
 * weakly typed init whose type the body does not keep is converted (to
 * the result type of it and the body's output, strongly typed) and the body
 * traced again; then every carry leaf must come out with the shape and
 * dtype it went in with (`_check_carry_type`; weak types may differ).
 */
function carryLoop(
  op: string,
  what: string,
  init: Tracer[],
  trace: (carry: readonly Typed[]) => { body: Body; nCarry: number },
  carryName: string,
  carryPath: (i: number) => string,
): { body: Body; nCarry: number; init: Tracer[] } {
  const x64 = requireTrace(op).x64;
  const structure = (nCarry: number) =>
    traceError(
      op,
      differences(
        `${what} function carry input and carry output must have the same pytree structure, but they differ:`,
        [`the input carry is a list of length ${init.length} but the carry output is a list of length ${nCarry}, so the lengths do not match`],
        "Revise the function so that the carry output has the same pytree structure as the carry input.",
      ),
    );
  let { body, nCarry } = trace(init.map(typeOf));
  if (nCarry !== init.length) throw structure(nCarry);
  let changed = false;
  init = init.map((c, i) => {
    const out = typeOf(body.outs[i]!);
    if (!c.weak || typematch(c.aval, out.aval)) return c;
    changed = true;
    return lax.convertElementType(c, resultType([{ dtype: c.dtype, weak: true }, { dtype: out.aval.dtype, weak: out.weak }], x64).dtype, false);
  });
  if (changed) {
    ({ body, nCarry } = trace(init.map(typeOf)));
    if (nCarry !== init.length) throw structure(nCarry);
  }
  const diffs: string[] = [];
  init.forEach((c, i) => {
    const out = typeOf(body.outs[i]!).aval;
    const p = carryPath(i);
    // JAX: "the input carry component c['a']", or "the input carry c" for a lone array; the name is ours.
    const component = p ? `the input carry component ${carryName}${p}` : "the input carry";
    if (!typematch(c.aval, out)) diffs.push(`${component} has type ${jaxTypeStr(c.aval)} but the corresponding output carry component has type ${jaxTypeStr(out)}${mismatchExtra(c.aval, out)}`);
  });
  if (diffs.length) {
    throw traceError(op, differences(`${what} function carry input and carry output must have equal types, but they differ:`, diffs, "Revise the function so that all output types match the corresponding input types."));
  }
  return { body, nCarry, init };
}

/**
 * `lax.scan` on flat lists: `f(carry, x) -> [carry, y]`. Returns the final
 * carry and the stacked ys. The carry's shapes and dtypes must come out of
 * `f` as they went in (a weakly typed init is promoted first, as JAX does);
 * the final carry has the body's output types, weak types included.
 */
export function scanFlat(
  f: (carry: Tracer[], x: Tracer[]) => readonly [readonly BodyOut[], readonly BodyOut[]],
  init: readonly Operand[],
  xs: readonly Operand[] | null,
  opts: ScanOptions = {},
  names: FlatNames = {},
): { carry: Tracer[]; ys: Tracer[] } {
  const op = names.op ?? "scan";
  const parent = requireTrace(op);
  const carryPath = names.carryPath ?? ((i: number) => `[${i}]`);
  const xsName = names.xsName ?? ((i: number) => `xs[${i}]`);
  const carry0 = init.map((c) => operandTracer(op, c));
  const xts = (xs ?? []).map((x) => operandTracer(op, x));
  xts.forEach((x, i) => {
    if (x.ndim === 0) throw traceError(op, `got a value with no leading axis to scan over: ${xsName(i)} is ${jaxTypeStr(x.aval)}`);
  });
  const lengths = xts.map((x) => x.shape[0]!);
  let length = opts.length;
  if (lengths.length) {
    const distinct = [...new Set(lengths)];
    if (length !== undefined && distinct.some((l) => l !== length)) {
      throw traceError(op, `got a \`length\` argument of ${length} which disagrees with the leading axis sizes: ${xts.map((x, i) => `${xsName(i)} ${jaxTypeStr(x.aval)}`).join(", ")}`);
    }
    if (distinct.length > 1) throw traceError(op, `got values with different leading axis sizes: ${xts.map((x, i) => `${xsName(i)} ${jaxTypeStr(x.aval)}`).join(", ")}`);
    length = distinct[0]!;
  }
  if (length === undefined) throw traceError(op, "got no values to scan over and `length` not provided");
  if (!Number.isInteger(length) || length < 0) throw traceError(op, `length must be a non-negative integer, got ${length}`);
  const unroll = opts.unroll === true ? Math.max(1, length) : opts.unroll === false || opts.unroll === undefined ? 1 : opts.unroll;
  if (!Number.isInteger(unroll) || unroll < 0) throw traceError(op, `unroll must be a non-negative integer (0 unrolls fully, as in lax.scan) or a boolean, got ${opts.unroll}`);
  const xTypes: Typed[] = xts.map((x) => ({ aval: { dtype: x.dtype, shape: x.shape.slice(1) }, weak: x.weak }));

  const traceBody = (cTypes: readonly Typed[]): { body: Body; nCarry: number } => {
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

  const { body, nCarry, init: carryIn } = carryLoop(op, "scan body", carry0, traceBody, "carry", carryPath);
  body.close();
  const captures = body.trace.captures.map((c) => c.outer);
  const program = body.trace.toProgram("captures-first");
  const outTypes = body.types();
  const outs = lax.rawBind(
    "scan",
    [...(captures as Tracer[]), ...carryIn, ...xts],
    { body: program, length, reverse: opts.reverse ?? false, unroll, num_consts: captures.length, num_carry: nCarry, _split_transpose: opts.splitTranspose ?? false },
    [...outTypes.slice(0, nCarry), ...outTypes.slice(nCarry).map((t) => ({ aval: { dtype: t.aval.dtype, shape: [length!, ...t.aval.shape] }, weak: t.weak }))],
  );
  return { carry: outs.slice(0, nCarry), ys: outs.slice(nCarry) };
}

// --- while ------------------------------------------------------------------------------------

/**
 * `lax.while_loop(condFun, bodyFun, init)` on flat lists. `condFun` returns
 * a bool scalar; the carry follows the same rules as scan's.
 */
export function whileFlat(condFun: (...carry: Tracer[]) => BodyOut, bodyFun: (...carry: Tracer[]) => readonly BodyOut[], init: readonly Operand[], names: FlatNames = {}): Tracer[] {
  const op = names.op ?? "while_loop";
  const parent = requireTrace(op);
  const carry0 = init.map((c) => operandTracer(op, c));
  let cond: Body | undefined;
  const traceBoth = (cTypes: readonly Typed[]) => {
    cond = new Body(parent, `${op} cond`).run(cTypes, (args) => [condFun(...args)], op, "cond_fun result");
    const ct = typeOf(cond.outs[0]!);
    if (ct.aval.dtype !== "bool" || ct.aval.shape.length !== 0) throw traceError(op, `cond_fun must return a boolean scalar, but got output type ${jaxTypeStr(ct.aval)}`);
    const body = new Body(parent, `${op} body`).run(cTypes, (args) => checkList(op, bodyFun(...args), "body_fun's result"), op, "body_fun output");
    return { body, nCarry: body.outs.length };
  };
  const { body, init: carryIn } = carryLoop(op, "while_loop body", carry0, traceBoth, "init_val", names.carryPath ?? ((i) => `[${i}]`));
  cond!.close();
  body.close();
  const cc = cond!.trace.captures.map((c) => c.outer);
  const bc = body.trace.captures.map((c) => c.outer);
  return lax.rawBind(
    "while",
    [...(cc as Tracer[]), ...(bc as Tracer[]), ...carryIn],
    { cond: cond!.trace.toProgram("captures-first"), body: body.trace.toProgram("captures-first"), cond_nconsts: cc.length, body_nconsts: bc.length },
    body.types(),
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
    { op },
  );
  return carry.slice(1);
}
