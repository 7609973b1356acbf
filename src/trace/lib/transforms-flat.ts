/**
 * JAX's transformations inside traced functions, on flat lists of arrays:
 * `grad`, `value_and_grad`, `jvp`, `vjp`, `linearize`, `jacfwd`, `jacrev`,
 * `hessian`, `vmap`, `checkpoint`, `custom_jvp` and `custom_vjp`. Each is
 * one equation whose transformed function is a sub-program, traced once
 * like a `cond` branch or a `scan` body (tracers of enclosing traces become
 * its captures, passed as the equation's first inputs). The sidecar applies
 * JAX's own transformation to that body (program/rules.py): no derivative
 * rule is written here. This module only decides output types, as JAX
 * defines them, and raises JAX's errors at trace time where the types say
 * enough (a non-scalar or integer output of grad, reverse mode through a
 * `while`, vmap axes of different sizes).
 *
 * Tangents and cotangents cross the wire only for inexact values: where JAX
 * has float0 (integer and bool primals), these functions take and give
 * `null`.
 *
 * transforms.ts builds the pytree API (JAX's signatures) on these.
 */

import type { DType } from "../../values/dtype.js";
import { isInexact } from "../../values/dtype.js";
import { asTracer, type Concrete, currentTrace, type In, isLitOperand, lit, type LitOperand, requireTrace, rootTrace, type Trace } from "../core.js";
import { type Aval, type Eqn, type ParamValue, type SubProgram } from "../ir.js";
import { Tracer } from "../tracer.js";
import { traceError } from "../errors.js";
import { kindOf } from "../dtypes.js";
import { sameShape } from "../shapes.js";
import { flowsTo, REVERSE_MODE, WHILE_REVERSE_MESSAGE } from "../dependence.js";
import { Body, type BodyOut, checkList, jaxTypeStr, type Operand, operandTracer, type Typed, typeOf } from "./control.js";
import * as lax from "./lax.js";

export type { BodyOut, Operand } from "./control.js";

/** A flat function with auxiliary outputs: `[outputs, aux]`. */
export type FlatAuxFn = (args: Tracer[]) => readonly [readonly BodyOut[], readonly BodyOut[]];

/** A flat function of arrays. */
export type FlatFn = (args: Tracer[]) => readonly BodyOut[];

export interface FlatOptions {
  /** The operation's name in messages (`grad`, `filterValueAndGrad`). */
  op?: string;
  /** How each argument reads in messages: its pytree path (`args[0]['w']`); default `args[i]`. */
  names?: readonly string[];
}

// --- shared pieces ---------------------------------------------------------------------------

/** A shape as Python prints a tuple: `()`, `(3,)`, `(2, 3)` (JAX's messages quote shapes so). */
export function pyShape(shape: readonly number[]): string {
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
}


const nameOf = (opts: FlatOptions, i: number): string => opts.names?.[i] ?? `args[${i}]`;

interface Closed {
  program: SubProgram;
  /** The body's captures, tracers of the trace the equation goes into. */
  captures: Tracer[];
  outs: Typed[];
}

/** Trace `fn` as a body at `types` in the current trace; its outputs stay open (Body). */
function traceBody(op: string, name: string, types: readonly Typed[], fn: FlatFn, axes?: Readonly<Record<string, number>>): Body {
  return new Body(requireTrace(op), name, axes).run(types, (a) => checkList(op, fn(a), `${name}'s result`), op, `output of ${name},`);
}

function closeBody(body: Body): Closed {
  const outs = body.types();
  body.close();
  return { program: body.trace.toProgram("captures-first"), captures: body.trace.captures.map((c) => c.outer as Tracer), outs };
}

/** Trace a function with aux outputs; returns the body and how many of its outputs are aux. */
function traceAuxBody(op: string, name: string, types: readonly Typed[], f: FlatAuxFn): { body: Body; numAux: number } {
  let numAux = 0;
  const body = traceBody(op, name, types, (a) => {
    const r = f(a);
    if (!Array.isArray(r) || r.length !== 2) throw traceError(op, `the function must return [outputs, aux]`);
    const outs = checkList(op, r[0], "the outputs");
    const aux = checkList(op, r[1], "the aux outputs");
    numAux = aux.length;
    return [...outs, ...aux];
  });
  return { body, numAux };
}

/** Raise JAX's error if reverse mode would have to transpose a `while` loop of `program` (inputs flagged in `diff`). */
function checkReverse(op: string, prim: string, program: SubProgram, diff: readonly boolean[]): void {
  if (!REVERSE_MODE.has(prim)) return;
  flowsTo(program, diff, "tangent", {
    onWhile: (where) => {
      throw traceError(op, `${WHILE_REVERSE_MESSAGE} (the loop is ${where} of the function ${op} differentiates, and its carry depends on the differentiated inputs)`);
    },
  });
}

const isComplex = (d: DType): boolean => kindOf(d) === "c";
const isFloating = (d: DType): boolean => kindOf(d) === "f";

/** JAX's check of a reverse-mode input (`_check_input_dtype_revderiv`), naming the argument. */
function checkRevInput(op: string, name: string, holomorphic: boolean, t: Tracer, where: string): void {
  if (holomorphic) {
    if (!isComplex(t.dtype)) throw traceError(op, `${name} with holomorphic=True requires inputs with complex dtype, but got ${t.dtype}. (At ${where}.)`);
    return;
  }
  if (!isInexact(t.dtype)) {
    throw traceError(
      op,
      `${name} requires real- or complex-valued inputs (input dtype that is a sub-dtype of np.inexact), but got ${t.dtype}. ` +
        `If you want to use Boolean- or integer-valued inputs, use vjp or set allow_int to True. (At ${where}; allow_int is not offered here: filterGrad gives integer leaves a null gradient.)`,
    );
  }
}

/** JAX's check of a reverse-mode output (`_check_output_dtype_revderiv`). */
function checkRevOutput(op: string, name: string, holomorphic: boolean, a: Aval, where: string): void {
  if (holomorphic) {
    if (!isComplex(a.dtype)) throw traceError(op, `${name} with holomorphic=True requires outputs with complex dtype, but got ${a.dtype}. (At ${where}.)`);
    return;
  }
  if (isComplex(a.dtype)) {
    throw traceError(
      op,
      `${name} requires real-valued outputs (output dtype that is a sub-dtype of np.floating), but got ${a.dtype}. ` +
        `For holomorphic differentiation, pass holomorphic=True. For differentiation of non-holomorphic functions involving complex outputs, use jax.vjp directly. (At ${where}.)`,
    );
  }
  if (!isFloating(a.dtype)) {
    throw traceError(
      op,
      `${name} requires real-valued outputs (output dtype that is a sub-dtype of np.floating), but got ${a.dtype}. ` +
        `For differentiation of functions with integer outputs, use jax.vjp directly. (At ${where}.)`,
    );
  }
}

/** JAX's forward-mode input check (`_check_input_dtype_jacfwd`). */
function checkFwdInput(op: string, holomorphic: boolean, t: Tracer, where: string): void {
  if (holomorphic) {
    if (!isComplex(t.dtype)) throw traceError(op, `jacfwd with holomorphic=True requires inputs with complex dtype, but got ${t.dtype}. (At ${where}.)`);
  } else if (!isFloating(t.dtype)) {
    throw traceError(
      op,
      `jacfwd requires real-valued inputs (input dtype that is a sub-dtype of np.floating), but got ${t.dtype}. ` +
        `For holomorphic differentiation, pass holomorphic=True. For differentiation of non-holomorphic functions involving complex inputs or integer inputs, use jax.jvp directly. (At ${where}.)`,
    );
  }
}

function checkArgnums(op: string, argnums: readonly number[], n: number): void {
  if (argnums.length === 0) throw traceError(op, "argnums must name at least one argument");
  const seen = new Set<number>();
  for (const a of argnums) {
    if (!Number.isInteger(a) || a < 0 || a >= n) throw traceError(op, `argnums ${a} is out of range: the function gets ${n} array arguments`);
    if (seen.has(a)) throw traceError(op, `argnums names argument ${a} twice`);
    seen.add(a);
  }
}

/** An output of a body as a tracer of the current trace (a JS scalar becomes a weakly typed scalar). */
function inlineOut(op: string, x: BodyOut): Tracer {
  if (x instanceof Tracer) return x;
  return operandTracer(op, x);
}

function zerosOf(t: Typed): Tracer {
  return lax.broadcastInDim(lit(0, t.aval.dtype, t.weak), t.aval.shape, []);
}

// --- grad / value_and_grad ------------------------------------------------------------------

export interface GradFlatOptions extends FlatOptions {
  argnums: readonly number[];
  holomorphic?: boolean;
  /** `value_and_grad`: also return the value. */
  withValue?: boolean;
}

export interface GradFlatResult {
  /** The function's value (`value_and_grad` only). */
  value: Tracer | null;
  /** One gradient per argnum, typed as its argument. */
  grads: Tracer[];
  aux: Tracer[];
}

/**
 * `jax.grad` / `jax.value_and_grad` of `f(args) -> [[value], aux]`: the
 * gradient of the scalar `value` with respect to `args[argnums]`.
 */
export function gradFlat(f: FlatAuxFn, args: readonly Operand[], opts: GradFlatOptions): GradFlatResult {
  const prim = opts.withValue ? "value_and_grad" : "grad";
  const op = opts.op ?? prim;
  const name = "grad";
  const ops = args.map((a) => operandTracer(op, a));
  checkArgnums(op, opts.argnums, ops.length);
  const holomorphic = opts.holomorphic ?? false;
  for (const a of opts.argnums) checkRevInput(op, name, holomorphic, ops[a]!, nameOf(opts, a));
  const { body, numAux } = traceAuxBody(op, `${op} body`, ops.map(typeOf), f);
  const main = body.outs.length - numAux;
  if (main !== 1) throw traceError(op, `the function must return one scalar value to differentiate (and aux), got ${main} outputs`);
  const out = typeOf(body.outs[0]!);
  if (out.aval.shape.length !== 0) {
    const size = out.aval.shape.reduce((x, y) => x * y, 1);
    const extract = size === 1 ? `extract the scalar with output.reshape(())${out.aval.shape.length === 1 ? " or output[0]" : ""}, ` : "";
    throw traceError(
      op,
      `Gradient only defined for scalar-output functions. Output had shape: ${pyShape(out.aval.shape)}. ` +
        `To get the gradient, ${extract}reduce the output to a scalar with output.sum(), or use jax.jacobian to differentiate a function with a non-scalar output.`,
    );
  }
  checkRevOutput(op, name, holomorphic, out.aval, "the output");
  const closed = closeBody(body);
  const nc = closed.captures.length;
  checkReverse(op, prim, closed.program, closed.program.inputs.map((_, i) => i >= nc && opts.argnums.includes(i - nc)));
  const gradTypes = opts.argnums.map((a) => typeOf(ops[a]!));
  const auxTypes = closed.outs.slice(1);
  const outTypes = opts.withValue ? [out, ...auxTypes, ...gradTypes] : [...gradTypes, ...auxTypes];
  const res = lax.rawBind(
    prim,
    [...closed.captures, ...ops],
    { body: closed.program, num_consts: nc, argnums: [...opts.argnums], num_aux: numAux, holomorphic },
    outTypes.map((t) => ({ aval: t.aval, weak: t.weak })),
  );
  if (opts.withValue) return { value: res[0]!, aux: res.slice(1, 1 + numAux), grads: res.slice(1 + numAux) };
  return { value: null, grads: res.slice(0, gradTypes.length), aux: res.slice(gradTypes.length) };
}

// --- jacfwd / jacrev / hessian ----------------------------------------------------------------

export type JacKind = "jacfwd" | "jacrev" | "hessian";

export interface JacFlatOptions extends FlatOptions {
  argnums: readonly number[];
  holomorphic?: boolean;
}

/**
 * `jax.jacfwd` / `jax.jacrev` / `jax.hessian` of `f(args) -> [outs, aux]`.
 * Blocks come output by output, then argnum by argnum (hessian: by argnum
 * twice): output k's block for argument j has shape `out.shape + arg.shape`
 * (hessian: `out.shape + arg_j1.shape + arg_j2.shape`), the output's dtype
 * for jacfwd and the argument's for jacrev and hessian, as JAX computes
 * them.
 */
export function jacFlat(kind: JacKind, f: FlatAuxFn, args: readonly Operand[], opts: JacFlatOptions): { blocks: Tracer[]; aux: Tracer[]; numOuts: number } {
  const op = opts.op ?? kind;
  const ops = args.map((a) => operandTracer(op, a));
  checkArgnums(op, opts.argnums, ops.length);
  const holomorphic = opts.holomorphic ?? false;
  for (const a of opts.argnums) {
    const t = ops[a]!;
    if (kind === "jacfwd" || kind === "hessian") checkFwdInput(op, holomorphic, t, nameOf(opts, a));
    if (kind === "jacrev" || kind === "hessian") checkRevInput(op, "jacrev", holomorphic, t, nameOf(opts, a));
  }
  const { body, numAux } = traceAuxBody(op, `${op} body`, ops.map(typeOf), f);
  const main = body.outs.length - numAux;
  const outs = body.types().slice(0, main);
  outs.forEach((o, k) => {
    if (kind === "jacfwd" && holomorphic && !isComplex(o.aval.dtype)) {
      throw traceError(op, `jacfwd with holomorphic=True requires outputs with complex dtype, but got ${o.aval.dtype}. (At output ${k}.)`);
    }
    if (kind !== "jacfwd") checkRevOutput(op, "jacrev", holomorphic, o.aval, `output ${k}`);
  });
  const closed = closeBody(body);
  const nc = closed.captures.length;
  checkReverse(op, kind, closed.program, closed.program.inputs.map((_, i) => i >= nc && opts.argnums.includes(i - nc)));
  const blockTypes: Typed[] = [];
  for (const o of outs) {
    for (const j of opts.argnums) {
      const x = ops[j]!;
      if (kind === "hessian") {
        for (const j2 of opts.argnums) {
          const x2 = ops[j2]!;
          blockTypes.push({ aval: { dtype: x.dtype, shape: [...o.aval.shape, ...x.shape, ...x2.shape] }, weak: x.weak });
        }
      } else {
        const dtype = kind === "jacfwd" ? o.aval.dtype : x.dtype;
        blockTypes.push({ aval: { dtype, shape: [...o.aval.shape, ...x.shape] }, weak: kind === "jacfwd" ? o.weak : x.weak });
      }
    }
  }
  const auxTypes = closed.outs.slice(main);
  const res = lax.rawBind(
    kind,
    [...closed.captures, ...ops],
    { body: closed.program, num_consts: nc, argnums: [...opts.argnums], num_aux: numAux, holomorphic },
    [...blockTypes, ...auxTypes].map((t) => ({ aval: t.aval, weak: t.weak })),
  );
  return { blocks: res.slice(0, blockTypes.length), aux: res.slice(blockTypes.length), numOuts: main };
}

// --- jvp / linearize / vjp ---------------------------------------------------------------------

/** Check a tangent (or cotangent) against the type JAX expects for it; `null` where the primal is not inexact. */
function tangentFor(op: string, primal: Typed, t: Operand | null | undefined, what: string, mismatch: (got: Tracer) => string): Tracer | null {
  if (!isInexact(primal.aval.dtype)) {
    if (t !== null && t !== undefined) {
      throw traceError(op, `${what} must be null: its primal is ${jaxTypeStr(primal.aval)}, whose tangent type is float0 in JAX (integer and bool values have no tangent here)`);
    }
    return null;
  }
  if (t === null || t === undefined) throw traceError(op, `${what} is missing: its primal is ${jaxTypeStr(primal.aval)}`);
  const tt = operandTracer(op, t);
  if (tt.dtype !== primal.aval.dtype || !sameShape(tt.shape, primal.aval.shape)) throw traceError(op, mismatch(tt));
  return tt;
}

export interface JvpFlatResult {
  outs: Tracer[];
  /** One per output; `null` for outputs that are not inexact (float0 in JAX). */
  tangents: (Tracer | null)[];
  aux: Tracer[];
}

/** `jax.jvp(f, primals, tangents)`: tangents are `null` exactly where primals are not inexact. */
export function jvpFlat(f: FlatAuxFn, primals: readonly Operand[], tangents: readonly (Operand | null)[], opts: FlatOptions = {}): JvpFlatResult {
  const op = opts.op ?? "jvp";
  const ps = primals.map((p) => operandTracer(op, p));
  if (tangents.length !== ps.length) throw traceError(op, `got ${ps.length} primals but ${tangents.length} tangents; primal and tangent arguments to jax.jvp must have the same tree structure`);
  const ts = ps.map((p, i) =>
    tangentFor(op, typeOf(p), tangents[i], `the tangent of ${nameOf(opts, i)}`, (t) =>
      t.dtype !== p.dtype
        ? `primal and tangent arguments to jax.jvp do not match; dtypes must be equal, or in case of int/bool primal dtype the tangent dtype must be float0. Got primal dtype ${p.dtype} and so expected tangent dtype ${p.dtype}, but got tangent dtype ${t.dtype} instead. (At ${nameOf(opts, i)}; the tangent of an int/bool primal is null here.)`
        : `jvp called with different primal and tangent shapes; Got primal shape ${pyShape(p.shape)} and tangent shape as ${pyShape(t.shape)} (at ${nameOf(opts, i)})`,
    ),
  );
  const { body, numAux } = traceAuxBody(op, `${op} body`, ps.map(typeOf), f);
  const closed = closeBody(body);
  const main = closed.outs.length - numAux;
  const outs = closed.outs.slice(0, main);
  const tanTypes = outs.filter((o) => isInexact(o.aval.dtype));
  const res = lax.rawBind(
    "jvp",
    [...closed.captures, ...ps, ...(ts.filter((t) => t !== null) as Tracer[])],
    { body: closed.program, num_consts: closed.captures.length, num_aux: numAux },
    [...outs, ...tanTypes, ...closed.outs.slice(main)].map((t) => ({ aval: t.aval, weak: t.weak })),
  );
  let k = main;
  const tout = outs.map((o) => (isInexact(o.aval.dtype) ? res[k++]! : null));
  return { outs: res.slice(0, main), tangents: tout, aux: res.slice(main + tanTypes.length) };
}

export interface VjpFlatResult {
  outs: Tracer[];
  aux: Tracer[];
  /** The pullback: one cotangent per output (`null` where it is not inexact); one result per primal (`null` where not inexact). */
  vjp: (cts: readonly (Operand | null)[]) => (Tracer | null)[];
}

export interface LinearizeFlatResult {
  outs: Tracer[];
  aux: Tracer[];
  /** The linear map: one tangent per primal (`null` where not inexact); one per output (`null` where not inexact). */
  jvp: (tangents: readonly (Operand | null)[]) => (Tracer | null)[];
}

/** Links between a vjp/linearize equation and the equations applying its linear map: numbered per root program, in trace order. */
const links = new WeakMap<Trace, number>();

function nextLink(): number {
  const root = rootTrace()!;
  const n = links.get(root) ?? 0;
  links.set(root, n + 1);
  return n;
}

/**
 * The `vjp` or `linearize` equation: `f` applied to the primals (JAX
 * returns the outputs at once), keeping the linear map under a link for
 * the equations that apply it (`vjp_call`, `linearize_call`), which take
 * one of its outputs first so they can only come after it. The forward
 * pass runs once, as in JAX.
 */
function forward(prim: "vjp" | "linearize", op: string, f: FlatAuxFn, primals: readonly Operand[]): { ps: Tracer[]; outs: Tracer[]; aux: Tracer[]; closed: Closed; link: number; trace: Trace } {
  const ps = primals.map((p) => operandTracer(op, p));
  const { body, numAux } = traceAuxBody(op, `${op} body`, ps.map(typeOf), f);
  const closed = closeBody(body);
  const main = closed.outs.length - numAux;
  if (main < 1) throw traceError(op, "the function has no array outputs to differentiate");
  const link = nextLink();
  const res = lax.rawBind(
    prim,
    [...closed.captures, ...ps],
    { body: closed.program, num_consts: closed.captures.length, num_aux: numAux, link },
    closed.outs.map((t) => ({ aval: t.aval, weak: t.weak })),
  );
  return { ps, outs: res.slice(0, main), aux: res.slice(main), closed, link, trace: requireTrace(op) };
}

/** The linear map is used where its equation's outputs are visible: in that trace or one nested in it, while it is open. */
function checkLinkScope(op: string, owner: Trace, what: string): void {
  const here = currentTrace();
  let t: Trace | null | undefined = here;
  while (t && t !== owner) t = t.parent;
  if (t !== owner || owner.closed) {
    throw traceError(op, `the ${what} returned by ${op} was called outside the traced function that called ${op} (or after it finished): call it while that function is being traced`);
  }
}

/** `jax.vjp(f, *primals)`: the outputs now; the pullback records a `vjp_call` equation when called. */
export function vjpFlat(f: FlatAuxFn, primals: readonly Operand[], opts: FlatOptions = {}): VjpFlatResult {
  const op = opts.op ?? "vjp";
  const fw = forward("vjp", op, f, primals);
  const outTypes = fw.outs.map(typeOf);
  const vjp = (cts: readonly (Operand | null)[]): (Tracer | null)[] => {
    checkLinkScope(op, fw.trace, "pullback");
    if (!Array.isArray(cts) || cts.length !== fw.outs.length) {
      throw traceError(op, `the pullback takes one cotangent per output of the differentiated function (${fw.outs.length}), got ${Array.isArray(cts) ? cts.length : typeof cts}`);
    }
    const given = outTypes.map((o, i) =>
      tangentFor(op, o, cts[i], `the cotangent of output ${i}`, (t) => `unexpected JAX type (e.g. shape/dtype) for argument to VJP function: got ${jaxTypeStr(t.aval)}, but expected ${jaxTypeStr(o.aval)} because the corresponding output of the differentiated function had JAX type ${jaxTypeStr(o.aval)}`),
    );
    const nc = fw.closed.captures.length;
    checkReverse(op, "vjp", fw.closed.program, fw.closed.program.inputs.map((a, i) => i >= nc && isInexact(a.dtype)));
    const res = lax.rawBind(
      "vjp_call",
      [fw.outs[0]!, ...(given.filter((g) => g !== null) as Tracer[])],
      { link: fw.link },
      fw.ps.filter((p) => isInexact(p.dtype)).map((p) => ({ aval: p.aval, weak: p.weak })),
    );
    let k = 0;
    return fw.ps.map((p) => (isInexact(p.dtype) ? res[k++]! : null));
  };
  return { outs: fw.outs, aux: fw.aux, vjp };
}

/** `jax.linearize(f, *primals)`: the outputs now; the linear map records a `linearize_call` equation when called. */
export function linearizeFlat(f: FlatAuxFn, primals: readonly Operand[], opts: FlatOptions = {}): LinearizeFlatResult {
  const op = opts.op ?? "linearize";
  const fw = forward("linearize", op, f, primals);
  const jvp = (tangents: readonly (Operand | null)[]): (Tracer | null)[] => {
    checkLinkScope(op, fw.trace, "linear function");
    if (!Array.isArray(tangents) || tangents.length !== fw.ps.length) {
      throw traceError(op, `the linearized function takes one tangent per primal (${fw.ps.length}), got ${Array.isArray(tangents) ? tangents.length : typeof tangents}`);
    }
    const given = fw.ps.map((p, i) =>
      tangentFor(op, typeOf(p), tangents[i], `the tangent of ${nameOf(opts, i)}`, (t) => `the tangent of ${nameOf(opts, i)} is ${jaxTypeStr(t.aval)}, but its primal is ${jaxTypeStr(p.aval)}; tangents must have their primal's shape and dtype`),
    );
    const res = lax.rawBind(
      "linearize_call",
      [fw.outs[0]!, ...(given.filter((g) => g !== null) as Tracer[])],
      { link: fw.link },
      fw.outs.filter((o) => isInexact(o.dtype)).map((t) => ({ aval: t.aval, weak: t.weak })),
    );
    let k = 0;
    return fw.outs.map((o) => (isInexact(o.dtype) ? res[k++]! : null));
  };
  return { outs: fw.outs, aux: fw.aux, jvp };
}

// --- vmap ---------------------------------------------------------------------------------------

export interface VmapFlatOptions extends FlatOptions {
  /** Per argument: the axis to map over (negative counts from the end), or null to broadcast it. */
  inAxes: readonly (number | null)[];
  /** Per output, given the number of outputs once the body is traced: where the batch axis goes, or null (the output must not be batched). */
  outAxes: (numOuts: number) => readonly (number | null)[];
  axisSize?: number;
  axisName?: string | null;
  /** How each output reads in messages (default `[k]`). */
  outNames?: (k: number) => string;
}

/** `jax.vmap(f, in_axes, out_axes, axis_name, axis_size)` on flat lists. */
export function vmapFlat(f: FlatFn, args: readonly Operand[], opts: VmapFlatOptions): Tracer[] {
  const op = opts.op ?? "vmap";
  const ops = args.map((a) => operandTracer(op, a));
  if (opts.inAxes.length !== ops.length) throw traceError(op, `in_axes has ${opts.inAxes.length} entries for ${ops.length} arguments`);
  const axes = opts.inAxes.map((ax, i) => {
    if (ax === null) return null;
    const t = ops[i]!;
    if (!Number.isInteger(ax)) throw traceError(op, `in_axes for ${nameOf(opts, i)} must be an integer or null, got ${String(ax)}`);
    const norm = ax < 0 ? ax + t.ndim : ax;
    if (norm < 0 || norm >= t.ndim) {
      const min = ax >= 0 ? ax + 1 : -ax;
      throw traceError(op, `vmap was requested to map its argument along axis ${ax}, which implies that its rank should be at least ${min}, but is only ${t.ndim} (its shape is ${pyShape(t.shape)}) (at ${nameOf(opts, i)})`);
    }
    return norm;
  });
  const sizes: { size: number; i: number }[] = [];
  axes.forEach((ax, i) => {
    if (ax !== null) sizes.push({ size: ops[i]!.shape[ax]!, i });
  });
  const distinct = [...new Set([...sizes.map((s) => s.size), ...(opts.axisSize !== undefined ? [opts.axisSize] : [])])];
  if (distinct.length === 0) throw traceError(op, "vmap must have at least one non-None value in in_axes or axis_size must be specified");
  if (distinct.length > 1) throw traceError(op, inconsistentSizes(sizes, axes, ops, opts));
  const size = distinct[0]!;
  if (!Number.isInteger(size) || size < 0) throw traceError(op, `axis_size must be a non-negative integer, got ${size}`);
  const types = ops.map((t, i): Typed => {
    const ax = axes[i];
    if (ax === null || ax === undefined) return typeOf(t);
    return { aval: { dtype: t.dtype, shape: t.shape.filter((_, d) => d !== ax) }, weak: t.weak };
  });
  // axis_name binds a named axis of this size inside the body: lax.psum(x, name) and the other collectives reduce over the batch.
  const axisEnv = opts.axisName !== undefined && opts.axisName !== null ? { [opts.axisName]: size } : undefined;
  const closed = closeBody(traceBody(op, `${op} body`, types, f, axisEnv));
  const n = closed.outs.length;
  const rawOut = opts.outAxes(n);
  if (rawOut.length !== n) throw traceError(op, `out_axes has ${rawOut.length} entries for ${n} outputs`);
  const outName = opts.outNames ?? ((k: number) => `[${k}]`);
  const outAxes = rawOut.map((ax, k) => {
    if (ax === null) return null;
    const rank = closed.outs[k]!.aval.shape.length + 1;
    const norm = ax < 0 ? ax + rank : ax;
    if (!Number.isInteger(ax) || norm < 0 || norm >= rank) throw traceError(op, `axis ${ax} is out of bounds for array of dimension ${rank} (at vmap out_axes${outName(k)})`);
    return norm;
  });
  const nc = closed.captures.length;
  const batched = flowsTo(closed.program, closed.program.inputs.map((_, i) => i >= nc && axes[i - nc] !== null), "batch");
  outAxes.forEach((ax, k) => {
    if (ax === null && batched[k]) {
      throw traceError(
        op,
        opts.axisName !== undefined && opts.axisName !== null
          ? `vmap has mapped output (axis_name=${opts.axisName}) but out_axes is None (at vmap out_axes${outName(k)})`
          : `at vmap out_axes${outName(k)}, got axis spec None but output was batched on axis 0`,
      );
    }
  });
  return lax.rawBind(
    "vmap",
    [...closed.captures, ...ops],
    { body: closed.program, num_consts: nc, in_axes: axes, out_axes: outAxes, axis_size: size, axis_name: opts.axisName ?? null },
    closed.outs.map((t, k) => {
      const ax = outAxes[k];
      const shape = [...t.aval.shape];
      if (ax !== null && ax !== undefined) shape.splice(ax, 0, size);
      return { aval: { dtype: t.aval.dtype, shape }, weak: t.weak };
    }),
  );
}

function inconsistentSizes(sizes: readonly { size: number; i: number }[], axes: readonly (number | null)[], ops: readonly Tracer[], opts: VmapFlatOptions): string {
  const counts = new Map<number, number>();
  for (const s of sizes) counts.set(s.size, (counts.get(s.size) ?? 0) + 1);
  const order = [...counts.entries()].sort((a, b) => b[1] - a[1]);
  const lines = ["vmap got inconsistent sizes for array axes to be mapped:"];
  if (opts.axisSize !== undefined) lines.push(`  * the \`axis_size\` argument was ${opts.axisSize};`);
  order.forEach(([size, count], k) => {
    const first = sizes.find((s) => s.size === size)!;
    const ex = `${nameOf(opts, first.i)} of type ${jaxTypeStr(ops[first.i]!.aval)}`;
    const ax = axes[first.i];
    if (count === 1) lines.push(`  * one axis had size ${size}: axis ${ax} of ${ex};`);
    else if (k === 0) lines.push(`  * most axes (${count} of them) had size ${size}, e.g. axis ${ax} of ${ex};`);
    else lines.push(`  * some axes (${count} of them) had size ${size}, e.g. axis ${ax} of ${ex};`);
  });
  return lines.join("\n").replace(/;$/, "");
}

// --- checkpoint --------------------------------------------------------------------------------

/** The policies of `jax.checkpoint_policies`, by their JAX names. */
export const CHECKPOINT_POLICIES = [
  "everything_saveable",
  "nothing_saveable",
  "dots_saveable",
  "checkpoint_dots",
  "dots_with_no_batch_dims_saveable",
  "checkpoint_dots_with_no_batch_dims",
  "save_only_these_names",
  "save_any_names_but_these",
  "save_anything_except_these_names",
] as const;
export type CheckpointPolicyName = (typeof CHECKPOINT_POLICIES)[number];
const NAMED_POLICIES: readonly string[] = ["save_only_these_names", "save_any_names_but_these", "save_anything_except_these_names"];

export interface CheckpointFlatOptions extends FlatOptions {
  preventCse?: boolean;
  policy?: CheckpointPolicyName | null;
  /** The names a named policy (`save_only_these_names`, ...) takes. */
  policyNames?: readonly string[];
}

/** `jax.checkpoint(f, prevent_cse, policy)` (remat) on flat lists. */
export function checkpointFlat(f: FlatFn, args: readonly Operand[], opts: CheckpointFlatOptions = {}): Tracer[] {
  const op = opts.op ?? "checkpoint";
  const policy = opts.policy ?? null;
  const names = [...(opts.policyNames ?? [])];
  if (policy !== null && !(CHECKPOINT_POLICIES as readonly string[]).includes(policy)) {
    throw traceError(op, `unknown policy ${JSON.stringify(policy)}; jax.checkpoint_policies has ${CHECKPOINT_POLICIES.join(", ")}`);
  }
  if (names.length > 0 && (policy === null || !NAMED_POLICIES.includes(policy))) throw traceError(op, `policy ${policy} takes no names`);
  for (const n of names) checkName(op, n);
  const ops = args.map((a) => operandTracer(op, a));
  const closed = closeBody(traceBody(op, `${op} body`, ops.map(typeOf), f));
  return lax.rawBind(
    "checkpoint",
    [...closed.captures, ...ops],
    { body: closed.program, prevent_cse: opts.preventCse ?? true, policy, policy_names: names },
    closed.outs.map((t) => ({ aval: t.aval, weak: t.weak })),
  );
}

/** An axis or checkpoint name, as the IR carries it: printable ASCII, 1 to 128 characters. */
export function checkName(op: string, name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || name.length > 128 || !/^[\x20-\x7e]*$/.test(name)) {
    throw traceError(op, `a name must be a string of 1 to 128 printable ASCII characters, got ${JSON.stringify(name)}`);
  }
  return name;
}

/** `jax.ad_checkpoint.checkpoint_name(x, name)`: names a value for a checkpoint policy. */
export function checkpointName(x: Tracer | Concrete, name: string): Tracer {
  const t = asTracer("checkpoint_name", x);
  return lax.rawBind("checkpoint_name", [t], { name: checkName("checkpoint_name", name) }, [{ aval: t.aval, weak: t.weak }])[0]!;
}

// --- custom_jvp / custom_vjp --------------------------------------------------------------------

/**
 * How deep a custom function may appear inside its own rules with its rule
 * attached. JAX traces a rule only when it differentiates, so a rule may
 * call its own function (`primal_out = f(x)`, as `relu` and `logaddexp`
 * do); here every rule is traced when the function is called, so the
 * nesting stops after this many levels, where the function is recorded
 * plain. Derivatives up to this order are JAX's exactly.
 */
export const CUSTOM_RULE_DEPTH = 3;
const ruleDepth = new Map<object, number>();

/** Run `trace` with `key` one level deeper inside its own rules. */
function inRule<T>(key: object | undefined, trace: () => T): T {
  if (key === undefined) return trace();
  const d = ruleDepth.get(key) ?? 0;
  ruleDepth.set(key, d + 1);
  try {
    return trace();
  } finally {
    if (d === 0) ruleDepth.delete(key);
    else ruleDepth.set(key, d);
  }
}

/** Whether a custom function called now is past CUSTOM_RULE_DEPTH inside its own rules (it is then recorded plain). */
function tooDeep(key: object | undefined): boolean {
  return key !== undefined && (ruleDepth.get(key) ?? 0) >= CUSTOM_RULE_DEPTH;
}

/** Custom functions take literals as operands too (the library passes `0.0` to logaddexp as JAX does). */
function customOperand(op: string, x: Operand | LitOperand): In {
  return isLitOperand(x) ? x : operandTracer(op, x);
}

export interface CustomFlatOptions extends FlatOptions {
  /** The custom function's identity: its calls inside its own rules nest at most CUSTOM_RULE_DEPTH deep. */
  key?: object;
}

/** The function applied in the current trace, as its outputs (past the depth limit). */
function plainCall(op: string, fun: FlatFn, ops: readonly In[]): Tracer[] {
  const args = ops.map((o) => (o instanceof Tracer ? o : lax.broadcastInDim(o, [], [])));
  return checkList(op, fun(args), "the function's result").map((o) => inlineOut(op, o));
}

function sameTyped(a: Typed, b: Typed): boolean {
  return a.aval.dtype === b.aval.dtype && sameShape(a.aval.shape, b.aval.shape);
}

/** A body output as the type to give it: a weak output of the right shape is converted to the wanted dtype. */
function fitOutputs(op: string, body: Body, want: readonly Typed[], from: number, what: (k: number, got: Typed) => string): void {
  want.forEach((w, k) => {
    const got = typeOf(body.outs[from + k]!);
    if (sameTyped(got, w)) return;
    if (got.weak && sameShape(got.aval.shape, w.aval.shape)) {
      body.trace.run(() => {
        const o = body.outs[from + k]!;
        body.outs[from + k] = isLitOperand(o) ? lax.retypeLiteral(o, w.aval.dtype, false) : lax.convertElementType(o, w.aval.dtype);
      });
    }
    else throw traceError(op, what(k, got));
  });
}

/**
 * `jax.custom_jvp`: `fun(args)` with the derivative rule
 * `jvp(primals, tangents) -> [outs, tangentOuts]` (tangents `null` where
 * the primal is not inexact; a `null` tangent output is zero).
 */
export function customJvpFlat(
  fun: FlatFn,
  jvp: (primals: Tracer[], tangents: (Tracer | null)[]) => readonly [readonly BodyOut[], readonly (BodyOut | null)[]],
  args: readonly (Operand | LitOperand)[],
  opts: CustomFlatOptions = {},
): Tracer[] {
  const op = opts.op ?? "custom_jvp";
  const ops = args.map((a) => customOperand(op, a));
  if (tooDeep(opts.key)) return plainCall(op, fun, ops);
  const types = ops.map(typeOf);
  const call = closeBody(traceBody(op, `${op} function`, types, fun));
  const inexactIn = types.map((t) => isInexact(t.aval.dtype));
  const inexactOut = call.outs.map((t) => isInexact(t.aval.dtype));
  const tanTypes = types.filter((_, i) => inexactIn[i]);
  const n = call.outs.length;
  const rule = traceBody(op, `${op} rule`, [...types, ...tanTypes], (a) => inRule(opts.key, () => {
    const ps = a.slice(0, types.length);
    let k = types.length;
    const ts = types.map((_, i) => (inexactIn[i] ? a[k++]! : null));
    const r = jvp(ps, ts);
    if (!Array.isArray(r) || r.length !== 2) throw traceError(op, "the jvp rule must return [primalOutputs, tangentOutputs]");
    const po = checkList(op, r[0], "the rule's primal outputs");
    const to = checkList(op, r[1], "the rule's tangent outputs") as readonly (BodyOut | null)[];
    if (po.length !== n || to.length !== n) {
      throw traceError(op, `Custom JVP rule must produce primal and tangent outputs with equal container (pytree) structures: the function returns ${n} arrays, the rule ${po.length} primal and ${to.length} tangent outputs`);
    }
    const tans: BodyOut[] = [];
    to.forEach((t, j) => {
      if (!inexactOut[j]) return;
      tans.push(t === null || t === undefined ? zerosOf(call.outs[j]!) : t);
    });
    return [...po, ...tans];
  }));
  fitOutputs(op, rule, call.outs, 0, (k, got) => `the jvp rule's primal output ${k} is ${jaxTypeStr(got.aval)} but the function returns ${jaxTypeStr(call.outs[k]!.aval)}; they must agree`);
  const tanOut = call.outs.filter((_, j) => inexactOut[j]);
  fitOutputs(op, rule, tanOut, n, (k, got) => `Custom JVP rule must produce primal and tangent outputs with corresponding shapes and dtypes. Expected ${jaxTypeStr(tanOut[k]!.aval)} (tangent type of ${jaxTypeStr(tanOut[k]!.aval)}) but got ${jaxTypeStr(got.aval)}.`);
  const closedRule = closeBody(rule);
  return lax.rawBind(
    "custom_jvp_call",
    [...call.captures, ...closedRule.captures, ...ops],
    { call: call.program, jvp: closedRule.program, num_call_consts: call.captures.length, num_jvp_consts: closedRule.captures.length },
    call.outs.map((t) => ({ aval: t.aval, weak: t.weak })),
  );
}

/**
 * `jax.custom_vjp`: `fun(args)`, with `fwd(args) -> [outs, residuals]` and
 * `bwd(residuals, cotangents) -> argCotangents` (cotangents `null` where
 * the value is not inexact; a `null` result is zero).
 */
export function customVjpFlat(
  fun: FlatFn,
  fwd: (args: Tracer[]) => readonly [readonly BodyOut[], readonly BodyOut[]],
  bwd: (residuals: Tracer[], cts: (Tracer | null)[]) => readonly (BodyOut | null)[],
  args: readonly (Operand | LitOperand)[],
  opts: CustomFlatOptions & { funName?: string; fwdName?: string } = {},
): Tracer[] {
  const op = opts.op ?? "custom_vjp";
  const fname = opts.funName ?? "fun";
  const fwdName = opts.fwdName ?? "fwd";
  const ops = args.map((a) => customOperand(op, a));
  if (tooDeep(opts.key)) return plainCall(op, fun, ops);
  const types = ops.map(typeOf);
  const call = closeBody(traceBody(op, `${op} function`, types, fun));
  const n = call.outs.length;
  let numRes = 0;
  const fwdBody = traceBody(op, `${op} fwd`, types, (a) => {
    const r = inRule(opts.key, () => fwd(a));
    if (!Array.isArray(r) || r.length !== 2) {
      throw traceError(op, `Custom VJP fwd rule ${fwdName} for function ${fname} must produce a pair (list or tuple of length two) where the first element represents the primal output (equal to those of the custom_vjp-decorated function ${fname}) and the second element represents residuals (i.e. values stored from the forward pass for use on the backward pass)`);
    }
    const po = checkList(op, r[0], "fwd's primal outputs");
    const res = checkList(op, r[1], "fwd's residuals");
    if (po.length !== n) throw traceError(op, `Custom VJP fwd rule ${fwdName} for function ${fname} must produce primal outputs with the structure of the custom_vjp-decorated function's output: it returns ${po.length} arrays, the function ${n}`);
    numRes = res.length;
    return [...po, ...res];
  });
  fitOutputs(op, fwdBody, call.outs, 0, (k, got) => `Custom VJP fwd rule ${fwdName} for function ${fname} must produce a pair (list or tuple of length two) where the first element represents the primal output (equal to the output of the custom_vjp-decorated function ${fname}) and the second element represents residuals, but instead the fwd rule output's first element had shapes/dtypes of ${jaxTypeStr(got.aval)} at output ${k} while the custom_vjp-decorated function ${fname} had ${jaxTypeStr(call.outs[k]!.aval)}`);
  const fwdClosed = closeBody(fwdBody);
  const resTypes = fwdClosed.outs.slice(n, n + numRes);
  const inexactOut = call.outs.map((t) => isInexact(t.aval.dtype));
  const ctTypes = call.outs.filter((_, j) => inexactOut[j]);
  const inexactIn = types.map((t) => isInexact(t.aval.dtype));
  const wantGrads = types.filter((_, i) => inexactIn[i]);
  const bwdBody = traceBody(op, `${op} bwd`, [...resTypes, ...ctTypes], (a) => {
    const res = a.slice(0, numRes);
    let k = numRes;
    const cts = call.outs.map((_, j) => (inexactOut[j] ? a[k++]! : null));
    const g = checkList(op, inRule(opts.key, () => bwd(res, cts)), "bwd's result") as readonly (BodyOut | null)[];
    if (g.length !== types.length) {
      throw traceError(op, `Custom VJP bwd rule must produce an output with the same container (pytree) structure as the args tuple of the primal function, and in particular must produce a tuple of length equal to the number of arguments to the primal function, but got ${g.length} cotangents for ${types.length} arguments.`);
    }
    const out: BodyOut[] = [];
    g.forEach((x, i) => {
      if (!inexactIn[i]) return;
      out.push(x === null || x === undefined ? zerosOf(types[i]!) : x);
    });
    return out;
  });
  fitOutputs(op, bwdBody, wantGrads, 0, (k, got) => {
    const i = inexactIn.map((b, j) => (b ? j : -1)).filter((j) => j >= 0)[k]!;
    return `Custom VJP bwd rule attached to ${fname} must produce an output with the same type as the args tuple of the primal function, but at output[${i}] (${nameOf(opts, i)}) the bwd rule produced an output of type ${jaxTypeStr(got.aval)} corresponding to an input of type ${jaxTypeStr(types[i]!.aval)}`;
  });
  const bwdClosed = closeBody(bwdBody);
  return lax.rawBind(
    "custom_vjp_call",
    [...call.captures, ...fwdClosed.captures, ...bwdClosed.captures, ...ops],
    {
      call: call.program,
      fwd: fwdClosed.program,
      bwd: bwdClosed.program,
      num_call_consts: call.captures.length,
      num_fwd_consts: fwdClosed.captures.length,
      num_bwd_consts: bwdClosed.captures.length,
    },
    call.outs.map((t) => ({ aval: t.aval, weak: t.weak })),
  );
}

