/**
 * JAX's transformations of TypeScript functions, with JAX's names,
 * signatures and semantics: `grad`, `valueAndGrad`, `jvp`, `vjp`,
 * `linearize`, `jacfwd`, `jacrev`, `hessian`, `vmap`, `checkpoint`
 * (remat), `customJvp`, `customVjp`. Arguments and results are pytrees.
 *
 * Every transformation is one equation of the program with the function
 * as a sub-program; the sidecar applies JAX's own transformation to it
 * (transforms-flat.ts, program/rules.py). They nest to any depth and
 * compose with `jit`, `filterScan`, `filterCond` and `pyCall`.
 *
 * Both worlds, like lerax's utilities: inside a traced function a
 * transformed function returns tracers at once; at top level it runs as a
 * jitted program (cached per function, options and signature) and returns
 * a Promise of DeviceArrays: `await grad(loss)(params, batch)`.
 *
 * Where JAX has float0 (the tangent or cotangent of an integer or bool
 * value) these functions take and give `null`. Leaves that are not arrays
 * (strings, functions, PyRefs) stay in TypeScript as static values where a
 * function's argument may be anything (the arguments grad does not
 * differentiate, vmap's unmapped arguments, outputs and aux); in a
 * differentiated argument JAX refuses them and so do these functions. JS
 * numbers in a differentiated argument are weakly typed scalars, as Python
 * scalars are (so `grad(f)(3)` is grad of an int32 input: an error, as in
 * JAX).
 */

import { describe } from "../../values/describe.js";
import { flattenWithPath, keystr, type KeyEntry, type KeyPath, type TreeDef, unflatten } from "../../values/tree.js";
import { Module } from "../../values/module.js";
import { currentTrace, isArrayLeaf } from "../core.js";
import { isJsScalar } from "../dtypes.js";
import { traceError } from "../errors.js";
import { jit, type Jitted } from "../jit.js";
import type { Staged } from "../staged.js";
import type { ArrayLeaf, DeviceResult, Fn, TracerTree } from "../types.js";
import { Tracer } from "../tracer.js";
import type { BodyOut, Operand } from "./control.js";
import {
  checkpointFlat,
  type CheckpointPolicyName,
  customJvpFlat,
  customVjpFlat,
  gradFlat,
  jacFlat,
  type JacKind,
  jvpFlat,
  linearizeFlat,
  vjpFlat,
  vmapFlat,
} from "./transforms-flat.js";

export { CHECKPOINT_POLICIES, checkpointName, type CheckpointPolicyName } from "./transforms-flat.js";

// --- types ------------------------------------------------------------------------------------

/** What a transformed function accepts where `f` takes `T`: array leaves of either world (or JS numbers). */
export type Lift<T> = T extends ArrayLeaf
  ? ArrayLeaf | number
  : T extends Fn | string | boolean | bigint | symbol | null | undefined
    ? T
    : T extends readonly unknown[]
      ? { [K in keyof T]: Lift<T[K]> }
      : T extends object
        ? { [K in keyof T]: Lift<T[K]> }
        : T;

/** The argument trees `argnums` picks: one tree for a number, a tuple of trees for a list. */
export type Picked<A extends readonly unknown[], N> = N extends number
  ? A[N]
  : N extends readonly number[]
    ? { [K in keyof N]: N[K] extends number ? A[N[K]] : never }
    : A[0];

/** A result in both worlds: tracers inside a trace, a Promise of DeviceArrays at top level. */
export type Both<Args, T> = Staged<Args, TracerTree<T>, DeviceResult<T>>;

// --- top level: each transformed function is a jitted program there -------------------------

type AnyJitted = Jitted<unknown[], unknown>;
const jits = new WeakMap<object, Map<string, AnyJitted>>();

/** One jitted function per (function, options): a second `grad(f)` reuses the first one's programs. */
export function cachedJit(owner: object, key: string, name: string, fn: (...args: unknown[]) => unknown): AnyJitted {
  let byKey = jits.get(owner);
  if (!byKey) jits.set(owner, (byKey = new Map()));
  let j = byKey.get(key);
  if (!j) {
    j = jit(fn, { name }) as AnyJitted;
    byKey.set(key, j);
  }
  return j;
}

const fnName = (f: unknown): string => (typeof f === "function" && f.name) || "fun";

function checkFn(op: string, f: unknown): void {
  if (typeof f !== "function") throw traceError(op, `expected a function to transform, got ${describe(f, "kind")}`);
}

// --- flattening arguments -----------------------------------------------------------------------

/** `args[0]['w']`: how a leaf of the argument list reads in messages (JAX writes `args` too). */
function argPath(path: KeyPath): string {
  return `args${keystr(path)}`;
}

export interface FlatArgs {
  treedef: TreeDef;
  leaves: unknown[];
  /** Per leaf: the positional argument it belongs to. */
  leafArg: number[];
  /** Per leaf: the operand it became, or -1 (static). */
  slots: number[];
  operands: Operand[];
  /** Per operand: the positional argument it belongs to, its path and how it reads in messages. */
  argOf: number[];
  paths: KeyPath[];
  names: string[];
}

type Role = "operand" | "static";

/**
 * Split an argument list into array operands and static leaves. `role`
 * decides for non-array leaves; array leaves are always operands.
 */
export function flattenArgs(args: readonly unknown[], role: (arg: number, leaf: unknown, path: KeyPath) => Role): FlatArgs {
  const { leaves, treedef } = flattenWithPath(args);
  const out: FlatArgs = { treedef, leaves: [], leafArg: [], slots: [], operands: [], argOf: [], paths: [], names: [] };
  for (const { path, value } of leaves) {
    const arg = (path[0] as { index: number }).index;
    out.leaves.push(value);
    out.leafArg.push(arg);
    if (isArrayLeaf(value) || role(arg, value, path) === "operand") {
      out.slots.push(out.operands.length);
      out.operands.push(value as Operand);
      out.argOf.push(arg);
      out.paths.push(path);
      out.names.push(argPath(path));
    } else out.slots.push(-1);
  }
  return out;
}

/** The argument list with the operands replaced by `xs`. */
export function rebuildArgs(fa: FlatArgs, xs: readonly unknown[]): unknown[] {
  return unflatten(
    fa.treedef,
    fa.leaves.map((l, i) => (fa.slots[i]! >= 0 ? xs[fa.slots[i]!] : l)),
  ) as unknown[];
}

/**
 * Argument `a` as a tree: each operand leaf replaced by `leafFor(operand
 * index)`, each static leaf by `other(leaf)`. (The leaves of one argument
 * are a contiguous run of the argument list's leaves, in the same order.)
 */
export function argTree(fa: FlatArgs, args: readonly unknown[], a: number, leafFor: (operand: number) => unknown, other: (leaf: unknown) => unknown = (l) => l): unknown {
  const mine: unknown[] = [];
  fa.leaves.forEach((l, i) => {
    if (fa.leafArg[i] === a) mine.push(fa.slots[i]! >= 0 ? leafFor(fa.slots[i]!) : other(l));
  });
  return unflatten(flattenWithPath(args[a]).treedef, mine);
}

/** A JS scalar or array in a differentiated argument is an operand; anything else is refused, as JAX refuses it. */
export function diffRole(op: string, diff: (arg: number) => boolean): (arg: number, leaf: unknown, path: KeyPath) => Role {
  return (arg, leaf, path) => {
    if (!diff(arg)) return "static";
    if (isJsScalar(leaf)) return "operand";
    throw traceError(op, `Argument ${describe(leaf)} at ${argPath(path)} is not a valid JAX type: differentiated arguments hold arrays and numbers only (keep static values in a Module's static fields or in another argument)`);
  };
}

// --- outputs ----------------------------------------------------------------------------------

export interface FlatOut {
  treedef: TreeDef;
  leaves: unknown[];
  /** Per leaf: its index among the array outputs, or -1 (static). */
  slots: number[];
  arrays: BodyOut[];
  paths: KeyPath[];
}

/** Split an output tree: array leaves are outputs of the body, the rest stays here. */
export function flattenOut(tree: unknown, scalarsAreArrays = false): FlatOut {
  const { leaves, treedef } = flattenWithPath(tree);
  const out: FlatOut = { treedef, leaves: leaves.map((l) => l.value), slots: [], arrays: [], paths: [] };
  for (const { path, value } of leaves) {
    if (isArrayLeaf(value) || (scalarsAreArrays && isJsScalar(value))) {
      out.slots.push(out.arrays.length);
      out.arrays.push(value as BodyOut);
      out.paths.push(path);
    } else out.slots.push(-1);
  }
  return out;
}

export function rebuildOut(fo: FlatOut, xs: readonly unknown[]): unknown {
  return unflatten(
    fo.treedef,
    fo.leaves.map((l, i) => (fo.slots[i]! >= 0 ? xs[fo.slots[i]!] : l)),
  );
}

/** Makes `null` a leaf when flattening, so a tree with `null` where another has an array still matches it. */
const isNone = (x: unknown): boolean => x === null || x === undefined;

/** Per leaf of `like` flattened with `null` as a leaf: its array output slot, or -1. */
function slotsWithNone(fo: FlatOut): { treedef: TreeDef; slots: number[] } {
  const byPath = new Map(fo.paths.map((p, k) => [keystr(p), k]));
  const f = flattenWithPath(rebuildOut(fo, fo.arrays.map(() => 0)), { isLeaf: isNone });
  return { treedef: f.treedef, slots: f.leaves.map((l) => byPath.get(keystr(l.path)) ?? -1) };
}

/** A tree shaped like the output `fo` (with `null` allowed at any leaf): its values at the array outputs. */
function matchOut(op: string, fo: FlatOut, tree: unknown, message: (want: TreeDef, got: TreeDef) => string): (Operand | null)[] {
  const want = slotsWithNone(fo);
  const got = flattenWithPath(tree, { isLeaf: isNone });
  if (!want.treedef.equals(got.treedef)) throw traceError(op, message(want.treedef, got.treedef));
  const res: (Operand | null)[] = fo.arrays.map(() => null);
  want.slots.forEach((k, i) => {
    if (k >= 0) res[k] = (got.leaves[i]!.value ?? null) as Operand | null;
  });
  return res;
}

export function pair(op: string, r: unknown, what: string): [unknown, unknown] {
  if (!Array.isArray(r) || r.length !== 2) throw traceError(op, `with hasAux the function must return [${what}, aux] (a JS array of two), got ${describe(r, "kind")}`);
  return [r[0], r[1]];
}

// --- grad / valueAndGrad ----------------------------------------------------------------------

export interface GradOptions {
  /** Which positional arguments to differentiate: a number (the gradient is that argument's tree) or a list (a list of trees). Default 0. */
  argnums?: number | readonly number[];
  /** The function returns `[value, aux]`; aux comes back beside the gradient. */
  hasAux?: boolean;
  /** Complex inputs and outputs, differentiated as a holomorphic function. */
  holomorphic?: boolean;
}

function argnumList(op: string, argnums: number | readonly number[] | undefined, n: number): number[] {
  const list = argnums === undefined ? [0] : typeof argnums === "number" ? [argnums] : [...argnums];
  for (const a of list) {
    if (!Number.isInteger(a) || a < 0) throw traceError(op, `argnums must be non-negative integers, got ${JSON.stringify(argnums)}`);
  }
  const max = Math.max(...list);
  if (max >= n) {
    throw traceError(
      op,
      `differentiating with respect to argnums=${JSON.stringify(argnums ?? 0)} requires at least ${max + 1} positional arguments to be passed by the caller, but got only ${n} positional arguments.`,
    );
  }
  if (new Set(list).size !== list.length) throw traceError(op, `argnums ${JSON.stringify(argnums)} names an argument twice`);
  return list;
}

function gradTree(op: string, f: Fn, opts: GradOptions, withValue: boolean, args: unknown[]): unknown {
  const argnums = argnumList(op, opts.argnums, args.length);
  const fa = flattenArgs(args, diffRole(op, (a) => argnums.includes(a)));
  const flatArgnums = argnums.flatMap((a) => fa.argOf.flatMap((x, k) => (x === a ? [k] : [])));
  let auxOut: FlatOut | null = null;
  const r = gradFlat(
    (xs) => {
      const res = (f as (...a: unknown[]) => unknown)(...rebuildArgs(fa, xs));
      const [out, aux] = opts.hasAux ? pair(op, res, "value") : [res, null];
      if (!isArrayLeaf(out) && !isJsScalar(out)) {
        throw traceError(op, `Gradient only defined for scalar-output functions. Output was ${describe(out, "kind")}: return one scalar array${opts.hasAux ? " as the first element" : ""}`);
      }
      auxOut = opts.hasAux ? flattenOut(aux) : null;
      return [[out as BodyOut], auxOut?.arrays ?? []];
    },
    fa.operands,
    { argnums: flatArgnums, holomorphic: opts.holomorphic, withValue, op, names: fa.names },
  );
  let k = 0;
  const trees = argnums.map((a) => argTree(fa, args, a, () => r.grads[k++]));
  const g = typeof opts.argnums === "object" ? trees : trees[0];
  const aux = auxOut === null ? undefined : rebuildOut(auxOut, r.aux);
  if (withValue) return [opts.hasAux ? [r.value, aux] : r.value, g];
  return opts.hasAux ? [g, aux] : g;
}

type GradValue<A extends readonly unknown[], N> = Picked<A, N>;

/**
 * `jax.grad(f, argnums, has_aux, holomorphic)`: the gradient of a scalar
 * function with respect to `args[argnums]`, shaped like those arguments.
 * With `hasAux`, `f` returns `[value, aux]` and the result is
 * `[gradient, aux]`.
 */
export function grad<A extends unknown[], R, const N extends number | readonly number[] = 0, H extends boolean = false>(
  f: (...args: A) => R,
  opts: GradOptions & { argnums?: N; hasAux?: H } = {},
): <B extends Lift<A>>(...args: B) => Both<B, H extends true ? [GradValue<A, N>, R extends readonly [unknown, infer X] ? X : never] : GradValue<A, N>> {
  checkFn("grad", f);
  const name = `grad(${fnName(f)})`;
  return cachedJit(f, `grad${JSON.stringify(opts)}`, name, (...args) => gradTree("grad", f as Fn, opts, false, args)) as never;
}

/**
 * `jax.value_and_grad(f, argnums, has_aux, holomorphic)`: `[value,
 * gradient]` (with `hasAux`, `[[value, aux], gradient]`).
 */
export function valueAndGrad<A extends unknown[], R, const N extends number | readonly number[] = 0, H extends boolean = false>(
  f: (...args: A) => R,
  opts: GradOptions & { argnums?: N; hasAux?: H } = {},
): <B extends Lift<A>>(...args: B) => Both<B, [R, GradValue<A, N>]> {
  checkFn("valueAndGrad", f);
  const name = `valueAndGrad(${fnName(f)})`;
  return cachedJit(f, `valueAndGrad${JSON.stringify(opts)}`, name, (...args) => gradTree("valueAndGrad", f as Fn, opts, true, args)) as never;
}

// --- jacfwd / jacrev / hessian ------------------------------------------------------------------

export interface JacOptions extends GradOptions {}

function jacTree(kind: JacKind, f: Fn, opts: JacOptions, args: unknown[]): unknown {
  const op = kind;
  const argnums = argnumList(op, opts.argnums, args.length);
  const fa = flattenArgs(args, diffRole(op, (a) => argnums.includes(a)));
  const flatArgnums = argnums.flatMap((a) => fa.argOf.flatMap((x, k) => (x === a ? [k] : [])));
  let out: FlatOut | null = null;
  let auxOut: FlatOut | null = null;
  const r = jacFlat(
    kind,
    (xs) => {
      const res = (f as (...a: unknown[]) => unknown)(...rebuildArgs(fa, xs));
      const [o, aux] = opts.hasAux ? pair(op, res, "output") : [res, null];
      out = flattenOut(o, true);
      auxOut = opts.hasAux ? flattenOut(aux) : null;
      return [out.arrays, auxOut?.arrays ?? []];
    },
    fa.operands,
    { argnums: flatArgnums, holomorphic: opts.holomorphic, op, names: fa.names },
  );
  const o = out as unknown as FlatOut;
  const nArg = flatArgnums.length;
  // Blocks come [output][argnum leaf] (hessian: [output][argnum leaf][argnum leaf]).
  const byArgnums = (leafBlock: (j: number) => unknown): unknown => {
    let j = 0;
    const trees = argnums.map((a) => argTree(fa, args, a, () => leafBlock(j++)));
    return typeof opts.argnums === "object" ? trees : trees[0];
  };
  const perOut = o.arrays.map((_, k) => {
    if (kind !== "hessian") return byArgnums((j) => r.blocks[k * nArg + j]);
    return byArgnums((j1) => byArgnums((j2) => r.blocks[(k * nArg + j1) * nArg + j2]));
  });
  const jac = rebuildOut(o, perOut);
  const aux = auxOut === null ? undefined : rebuildOut(auxOut, r.aux);
  return opts.hasAux ? [jac, aux] : jac;
}

function jacobianOf(kind: JacKind, f: Fn, opts: JacOptions): AnyJitted {
  checkFn(kind, f);
  return cachedJit(f, `${kind}${JSON.stringify(opts)}`, `${kind}(${fnName(f)})`, (...args) => jacTree(kind, f, opts, args));
}

/** `jax.jacfwd(f, argnums, has_aux, holomorphic)`: the Jacobian by forward mode; each output leaf holds the argnums' trees of blocks `out.shape + arg.shape`. */
export function jacfwd<A extends unknown[], R>(f: (...args: A) => R, opts: JacOptions = {}): <B extends Lift<A>>(...args: B) => Both<B, unknown> {
  return jacobianOf("jacfwd", f as Fn, opts) as never;
}

/** `jax.jacrev(f, argnums, has_aux, holomorphic)`: the Jacobian by reverse mode (same layout as jacfwd). */
export function jacrev<A extends unknown[], R>(f: (...args: A) => R, opts: JacOptions = {}): <B extends Lift<A>>(...args: B) => Both<B, unknown> {
  return jacobianOf("jacrev", f as Fn, opts) as never;
}

/** `jax.hessian(f, argnums, has_aux, holomorphic)`: `jacfwd(jacrev(f))`, blocks `out.shape + arg1.shape + arg2.shape`. */
export function hessian<A extends unknown[], R>(f: (...args: A) => R, opts: JacOptions = {}): <B extends Lift<A>>(...args: B) => Both<B, unknown> {
  return jacobianOf("hessian", f as Fn, opts) as never;
}

// --- jvp / vjp / linearize ------------------------------------------------------------------------

export interface AuxOptions {
  /** The function returns `[output, aux]`. */
  hasAux?: boolean;
}

/** Primals as operands (array leaves and JS numbers; `null` subtrees allowed), with their tangents' leaves in the same order. */
function primalsFlat(op: string, primals: readonly unknown[]): FlatArgs {
  return flattenArgs(primals, diffRole(op, () => true));
}

/** The tangent tree's leaves matched to the primals' operands: `null` where JAX would have float0 (or the primal is static). */
function tangentLeaves(op: string, fa: FlatArgs, tangents: unknown, what: string): (Operand | null)[] {
  const p = flattenWithPath(unflatten(fa.treedef, fa.leaves), { isLeaf: isNone });
  const t = flattenWithPath(tangents, { isLeaf: isNone });
  if (!p.treedef.equals(t.treedef)) {
    throw traceError(op, `primal and ${what} arguments to jax.${op} must have the same tree structure; primals have tree structure ${p.treedef} whereas ${what}s have tree structure ${t.treedef}.`);
  }
  const out: (Operand | null)[] = [];
  p.leaves.forEach((l, i) => {
    if (l.value === null || l.value === undefined) return;
    const tv = t.leaves[i]!.value;
    if (tv !== null && tv !== undefined && !isArrayLeaf(tv) && !isJsScalar(tv)) {
      throw traceError(op, `the ${what} at ${argPath(t.leaves[i]!.path)} is ${describe(tv, "kind")}; ${what}s are arrays, numbers or null`);
    }
    out.push((tv ?? null) as Operand | null);
  });
  return out;
}

function jvpTree(f: Fn, primals: unknown[], tangents: unknown[], opts: AuxOptions): unknown {
  const op = "jvp";
  if (!Array.isArray(primals) || !Array.isArray(tangents)) {
    throw traceError(op, `primal and tangent arguments to jax.jvp must be tuples or lists; found ${describe(primals, "kind")} and ${describe(tangents, "kind")}.`);
  }
  const fa = primalsFlat(op, primals);
  const ts = tangentLeaves(op, fa, tangents, "tangent");
  let out: FlatOut | null = null;
  let auxOut: FlatOut | null = null;
  const r = jvpFlat(
    (xs) => {
      const res = (f as (...a: unknown[]) => unknown)(...rebuildArgs(fa, xs));
      const [o, aux] = opts.hasAux ? pair(op, res, "output") : [res, null];
      out = flattenOut(o, true);
      auxOut = opts.hasAux ? flattenOut(aux) : null;
      return [out.arrays, auxOut?.arrays ?? []];
    },
    fa.operands,
    ts,
    { op, names: fa.names },
  );
  const o = out as unknown as FlatOut;
  const res: unknown[] = [rebuildOut(o, r.outs), rebuildOut(o, r.tangents)];
  if (opts.hasAux) res.push(rebuildOut(auxOut as unknown as FlatOut, r.aux));
  return res;
}

/**
 * `jax.jvp(f, primals, tangents, has_aux)`: `[f(...primals), tangentOut]`
 * (with `hasAux`, `[out, tangentOut, aux]`). Tangents have the primals'
 * structure, with `null` at integer and bool leaves.
 */
export function jvp<A extends unknown[], R>(f: (...args: A) => R, primals: Lift<A>, tangents: unknown[], opts: AuxOptions = {}): Both<Lift<A>, [R, R]> {
  checkFn("jvp", f);
  const run = cachedJit(f, `jvp${JSON.stringify(opts)}`, `jvp(${fnName(f)})`, (ps, ts) => jvpTree(f as Fn, ps as unknown[], ts as unknown[], opts));
  return run(primals, tangents) as never;
}

interface Pullback {
  out: FlatOut;
  aux: unknown;
  fa: FlatArgs;
  vjp: (cts: readonly (Operand | null)[]) => (Tracer | null)[];
  outs: Tracer[];
}

function vjpInTrace(op: string, f: Fn, primals: unknown[], hasAux: boolean, linear: boolean): Pullback & { jvp?: (ts: readonly (Operand | null)[]) => (Tracer | null)[] } {
  const fa = primalsFlat(op, primals);
  let out: FlatOut | null = null;
  let auxOut: FlatOut | null = null;
  const body = (xs: Tracer[]): readonly [readonly BodyOut[], readonly BodyOut[]] => {
    const res = (f as (...a: unknown[]) => unknown)(...rebuildArgs(fa, xs));
    const [o, aux] = hasAux ? pair(op, res, "output") : [res, null];
    out = flattenOut(o, true);
    auxOut = hasAux ? flattenOut(aux) : null;
    return [out.arrays, auxOut?.arrays ?? []];
  };
  if (linear) {
    const r = linearizeFlat(body, fa.operands, { op, names: fa.names });
    const o = out as unknown as FlatOut;
    return { out: o, aux: auxOut === null ? undefined : rebuildOut(auxOut, r.aux), fa, vjp: () => [], outs: r.outs, jvp: r.jvp };
  }
  const r = vjpFlat(body, fa.operands, { op, names: fa.names });
  const o = out as unknown as FlatOut;
  return { out: o, aux: auxOut === null ? undefined : rebuildOut(auxOut, r.aux), fa, vjp: r.vjp, outs: r.outs };
}

/** The cotangent tree's array leaves matched to the outputs: `null` allowed where the output is not inexact. */
function cotangentLeaves(op: string, out: FlatOut, ct: unknown): (Operand | null)[] {
  return matchOut(op, out, ct, (want, got) => `unexpected tree structure: the argument to a VJP function returned by vjp must match the pytree structure of the differentiated function's output, ${want}, but got ${got}`);
}

function pullTree(op: string, f: Fn, primals: unknown[], hasAux: boolean, ct: unknown): unknown[] {
  const p = vjpInTrace(op, f, primals, hasAux, false);
  const cts = p.vjp(cotangentLeaves(op, p.out, ct));
  return primals.map((_, a) => argTree(p.fa, primals, a, (k) => cts[k], () => null));
}

/**
 * `jax.vjp(f, *primals)`: `[f(...primals), pullback]`; `pullback(ct)`
 * returns one cotangent tree per primal (`null` at integer and bool
 * leaves). With `vjp.withOptions({hasAux: true})`: `[out, pullback, aux]`.
 * At top level the outputs are DeviceArrays and the pullback runs its own
 * program (a Promise).
 */
export function vjp<A extends unknown[], R>(f: (...args: A) => R, ...primals: Lift<A>): VjpResult<Lift<A>, R> {
  return vjpWith({}, f as Fn, primals as unknown[]) as VjpResult<Lift<A>, R>;
}
vjp.withOptions = (opts: AuxOptions) =>
  <A extends unknown[], R>(f: (...args: A) => R, ...primals: Lift<A>): VjpResult<Lift<A>, R> =>
    vjpWith(opts, f as Fn, primals as unknown[]) as VjpResult<Lift<A>, R>;

export type VjpResult<Args, R> = Staged<
  Args,
  [TracerTree<R>, (ct: unknown) => unknown[], ...unknown[]],
  [DeviceResult<R>, (ct: unknown) => Promise<unknown[]>, ...unknown[]]
>;

function vjpWith(opts: AuxOptions, f: Fn, primals: unknown[]): unknown {
  const op = "vjp";
  checkFn(op, f);
  const hasAux = opts.hasAux ?? false;
  if (currentTrace() !== undefined) {
    const p = vjpInTrace(op, f, primals, hasAux, false);
    const pullback = (ct: unknown): unknown[] => {
      const cts = p.vjp(cotangentLeaves(op, p.out, ct));
      return primals.map((_, a) => argTree(p.fa, primals, a, (k) => cts[k], () => null));
    };
    const res: unknown[] = [rebuildOut(p.out, p.outs), pullback];
    if (hasAux) res.push(p.aux);
    return res;
  }
  const fwd = cachedJit(f, `vjp-fwd${hasAux}`, `vjp(${fnName(f)})`, (...ps) => (f as (...a: unknown[]) => unknown)(...ps));
  const pull = cachedJit(f, `vjp-bwd${hasAux}`, `vjp(${fnName(f)}) pullback`, (ps, ct) => pullTree(op, f, ps as unknown[], hasAux, ct));
  return (async () => {
    const r = await fwd(...primals);
    const [out, aux] = hasAux ? (r as [unknown, unknown]) : [r, undefined];
    const pullback = (ct: unknown): Promise<unknown[]> => pull(primals, ct) as Promise<unknown[]>;
    return hasAux ? [out, pullback, aux] : [out, pullback];
  })();
}

/**
 * `jax.linearize(f, *primals)`: `[f(...primals), fJvp]` where
 * `fJvp(...tangents)` is the Jacobian-vector product at the primals
 * (tangents `null` at integer and bool leaves). With
 * `linearize.withOptions({hasAux: true})`: `[out, fJvp, aux]`.
 */
export function linearize<A extends unknown[], R>(f: (...args: A) => R, ...primals: Lift<A>): LinearizeResult<Lift<A>, R> {
  return linearizeWith({}, f as Fn, primals as unknown[]) as LinearizeResult<Lift<A>, R>;
}
linearize.withOptions = (opts: AuxOptions) =>
  <A extends unknown[], R>(f: (...args: A) => R, ...primals: Lift<A>): LinearizeResult<Lift<A>, R> =>
    linearizeWith(opts, f as Fn, primals as unknown[]) as LinearizeResult<Lift<A>, R>;

export type LinearizeResult<Args, R> = Staged<
  Args,
  [TracerTree<R>, (...tangents: unknown[]) => TracerTree<R>, ...unknown[]],
  [DeviceResult<R>, (...tangents: unknown[]) => Promise<DeviceResult<R>>, ...unknown[]]
>;

function pushTree(op: string, f: Fn, primals: unknown[], hasAux: boolean, tangents: unknown[]): unknown {
  const p = vjpInTrace(op, f, primals, hasAux, true);
  const ts = tangentLeaves(op, p.fa, tangents, "tangent");
  return rebuildOut(p.out, p.jvp!(ts));
}

function linearizeWith(opts: AuxOptions, f: Fn, primals: unknown[]): unknown {
  const op = "linearize";
  checkFn(op, f);
  const hasAux = opts.hasAux ?? false;
  if (currentTrace() !== undefined) {
    const p = vjpInTrace(op, f, primals, hasAux, true);
    const fJvp = (...tangents: unknown[]): unknown => rebuildOut(p.out, p.jvp!(tangentLeaves(op, p.fa, tangents, "tangent")));
    const res: unknown[] = [rebuildOut(p.out, p.outs), fJvp];
    if (hasAux) res.push(p.aux);
    return res;
  }
  const fwd = cachedJit(f, `linearize-fwd${hasAux}`, `linearize(${fnName(f)})`, (...ps) => (f as (...a: unknown[]) => unknown)(...ps));
  const push = cachedJit(f, `linearize-jvp${hasAux}`, `linearize(${fnName(f)}) jvp`, (ps, ts) => pushTree(op, f, ps as unknown[], hasAux, ts as unknown[]));
  return (async () => {
    const r = await fwd(...primals);
    const [out, aux] = hasAux ? (r as [unknown, unknown]) : [r, undefined];
    const fJvp = (...tangents: unknown[]): Promise<unknown> => push(primals, tangents);
    return hasAux ? [out, fJvp, aux] : [out, fJvp];
  })();
}

// --- vmap ------------------------------------------------------------------------------------------

/** An axis spec leaf: an axis, null (not mapped), or (equinox's filters) a function of the leaf giving one. */
export type AxisSpec = number | null | ((leaf: unknown) => number | null);

export interface VmapOptions {
  /** Per positional argument (a JS array), or one spec for all: a tree prefix of the argument whose leaves are axes or null. Default 0. */
  inAxes?: unknown;
  /** A tree prefix of the output whose leaves are axes or null. Default 0. */
  outAxes?: unknown;
  /** The name collectives use for the mapped axis. */
  axisName?: string;
  /** The size of the mapped axis: required when nothing is mapped, else checked. */
  axisSize?: number;
}

function isSpecLeaf(x: unknown): x is AxisSpec {
  return x === null || x === undefined || typeof x === "number" || typeof x === "function";
}

/**
 * The spec that applies at `path` of a value: `spec` read as a tree prefix
 * (JAX's flatten_axes), descending until it reaches an axis, null or a
 * function. `checkPrefix` has checked the containers already.
 */
function specAt(op: string, what: string, spec: unknown, path: KeyPath, leaf: unknown): number | null {
  let s = spec;
  for (const e of path) {
    if (isSpecLeaf(s)) break;
    s = (s as Record<string | number, unknown>)[e.kind === "index" ? e.index : e.kind === "key" ? e.key : e.name];
  }
  if (!isSpecLeaf(s)) throw traceError(op, `${what} specification must be a tree prefix of the corresponding value, but at ${keystr(path) || "the root"} it has ${describe(s, "kind")} where the value has a leaf`);
  const v = typeof s === "function" ? s(leaf) : s;
  if (v !== null && v !== undefined && !Number.isInteger(v)) throw traceError(op, `${what} at ${keystr(path) || "the root"} gave ${describe(v)}; an axis is an integer or null`);
  return v ?? null;
}

/** Check the spec's containers against the value's: same list lengths, same dict keys (or a Module's fields). */
function checkPrefix(op: string, what: string, spec: unknown, value: unknown, path: KeyEntry[] = []): void {
  if (isSpecLeaf(spec)) return;
  const fail = (): never => {
    throw traceError(op, `${what} specification must be a tree prefix of the corresponding value: at ${keystr(path) || "the root"} the specification is ${describe(spec, "kind")} but the value is ${describe(value, "kind")}`);
  };
  if (Array.isArray(spec)) {
    if (!Array.isArray(value) || value.length !== spec.length) fail();
    spec.forEach((s, i) => checkPrefix(op, what, s, (value as unknown[])[i], [...path, { kind: "index", index: i }]));
    return;
  }
  if (typeof spec !== "object" || spec === null || spec instanceof Module || typeof value !== "object" || value === null || Array.isArray(value)) fail();
  const isModule = value instanceof Module;
  const keys = isModule ? Module.fieldsOf(value as Module).filter((f) => !f.static).map((f) => f.name) : Object.keys(value as object);
  const specKeys = Object.keys(spec as object);
  if (specKeys.length !== keys.length || specKeys.some((k) => !keys.includes(k))) fail();
  for (const k of specKeys) {
    checkPrefix(op, what, (spec as Record<string, unknown>)[k], (value as Record<string, unknown>)[k], [...path, isModule ? { kind: "attr", name: k } : { kind: "key", key: k }]);
  }
}

function vmapTree(op: string, f: Fn, opts: VmapOptions, args: unknown[], defaults: { inAxes: unknown; outAxes: unknown }): unknown {
  const rawIn = opts.inAxes === undefined ? defaults.inAxes : opts.inAxes;
  // A JS array is the tuple of per-argument specs; anything else applies to every argument.
  const perArg = Array.isArray(rawIn) ? rawIn : args.map(() => rawIn);
  if (perArg.length !== args.length) {
    throw traceError(op, `vmap in_axes must be an int, None, or a tuple of entries corresponding to the positional arguments passed to the function, but got a list of ${perArg.length} for ${args.length} arguments`);
  }
  perArg.forEach((s, i) => checkPrefix(op, "vmap in_axes", s, args[i], [{ kind: "index", index: i }]));
  const fa = flattenArgs(args, (arg, leaf, path) => {
    const ax = specAt(op, "vmap in_axes", perArg[arg], path.slice(1), leaf);
    if (ax === null) return "static";
    if (isJsScalar(leaf)) {
      throw traceError(op, `vmap was requested to map its argument along axis ${ax}, which implies that its rank should be at least ${ax >= 0 ? ax + 1 : -ax}, but is only 0 (its shape is ()) (at ${argPath(path)}, a JS ${typeof leaf})`);
    }
    throw traceError(op, `${argPath(path)} is ${describe(leaf, "kind")}, not an array, so it cannot be mapped along axis ${ax}: give it in_axes null`);
  });
  const inAxes = fa.paths.map((p, k) => specAt(op, "vmap in_axes", perArg[fa.argOf[k]!], p.slice(1), fa.operands[k]));
  let out: FlatOut | null = null;
  const rawOut = opts.outAxes === undefined ? defaults.outAxes : opts.outAxes;
  const res = vmapFlat(
    (xs) => {
      const r = (f as (...a: unknown[]) => unknown)(...rebuildArgs(fa, xs));
      out = flattenOut(r);
      return out.arrays;
    },
    fa.operands,
    {
      op,
      names: fa.names,
      inAxes,
      axisSize: opts.axisSize,
      axisName: opts.axisName ?? null,
      outAxes: () => {
        const o = out as unknown as FlatOut;
        const tree = rebuildOut(o, o.arrays);
        checkPrefix(op, "vmap out_axes", rawOut, tree);
        return o.paths.map((p, k) => specAt(op, "vmap out_axes", rawOut, p, o.arrays[k]));
      },
      outNames: (k) => keystr((out as unknown as FlatOut).paths[k]!),
    },
  );
  return rebuildOut(out as unknown as FlatOut, res);
}

/**
 * `jax.vmap(f, in_axes, out_axes, axis_name, axis_size)`: `f` mapped over
 * an axis of its arguments. `inAxes` is one spec for all arguments or a
 * JS array with one per argument, each a tree prefix of that argument
 * with axes (negative counts from the end) or null at its leaves; `outAxes`
 * a prefix of the output. Non-array leaves stay static (an unmapped JS
 * number too); static outputs come back as they are.
 */
export function vmap<A extends unknown[], R>(f: (...args: A) => R, opts: VmapOptions = {}): <B extends Lift<A>>(...args: B) => Both<B, R> {
  checkFn("vmap", f);
  return vmapWith("vmap", f as Fn, opts, { inAxes: 0, outAxes: 0 }) as never;
}

/** vmap with the defaults of the caller (equinox's filterVmap maps arrays only). */
export function vmapWith(op: string, f: Fn, opts: VmapOptions, defaults: { inAxes: unknown; outAxes: unknown }): AnyJitted {
  const key = `${op}${JSON.stringify({ axisName: opts.axisName, axisSize: opts.axisSize })}`;
  // Specs may hold functions (equinox's filters), which JSON cannot key: key by identity.
  const owner = specOwner(f, opts);
  return cachedJit(owner, key, `${op}(${fnName(f)})`, (...args) => vmapTree(op, f, opts, args, defaults));
}

const specOwners = new WeakMap<Fn, Map<unknown, Map<unknown, object>>>();
function specOwner(f: Fn, opts: VmapOptions): object {
  let a = specOwners.get(f);
  if (!a) specOwners.set(f, (a = new Map()));
  const inKey = typeof opts.inAxes === "object" || typeof opts.inAxes === "function" ? opts.inAxes : JSON.stringify(opts.inAxes ?? "default");
  let b = a.get(inKey);
  if (!b) a.set(inKey, (b = new Map()));
  const outKey = typeof opts.outAxes === "object" || typeof opts.outAxes === "function" ? opts.outAxes : JSON.stringify(opts.outAxes ?? "default");
  let o = b.get(outKey);
  if (!o) b.set(outKey, (o = {}));
  return o;
}

// --- checkpoint ------------------------------------------------------------------------------------

/** A policy: a name of `jax.checkpoint_policies`, or a named policy with its names. */
export type CheckpointPolicy = CheckpointPolicyName | { name: "save_only_these_names" | "save_any_names_but_these" | "save_anything_except_these_names"; names: readonly string[] };

/** `jax.checkpoint_policies`, by JAX's names. */
export const checkpointPolicies = {
  everything_saveable: "everything_saveable",
  nothing_saveable: "nothing_saveable",
  dots_saveable: "dots_saveable",
  checkpoint_dots: "checkpoint_dots",
  dots_with_no_batch_dims_saveable: "dots_with_no_batch_dims_saveable",
  checkpoint_dots_with_no_batch_dims: "checkpoint_dots_with_no_batch_dims",
  save_only_these_names: (...names: string[]): CheckpointPolicy => ({ name: "save_only_these_names", names }),
  save_any_names_but_these: (...names: string[]): CheckpointPolicy => ({ name: "save_any_names_but_these", names }),
  save_anything_except_these_names: (...names: string[]): CheckpointPolicy => ({ name: "save_anything_except_these_names", names }),
} as const;

export interface CheckpointOptions {
  /** JAX's `prevent_cse` (default true). */
  preventCse?: boolean;
  /** What may be saved for the backward pass (default: nothing, everything is recomputed). */
  policy?: CheckpointPolicy | null;
}

function checkpointTree(f: Fn, opts: CheckpointOptions, args: unknown[]): unknown {
  const op = "checkpoint";
  const fa = flattenArgs(args, () => "static");
  let out: FlatOut | null = null;
  const p = opts.policy ?? null;
  const res = checkpointFlat(
    (xs) => {
      out = flattenOut((f as (...a: unknown[]) => unknown)(...rebuildArgs(fa, xs)));
      return out.arrays;
    },
    fa.operands,
    { op, names: fa.names, preventCse: opts.preventCse, policy: typeof p === "object" && p !== null ? p.name : p, policyNames: typeof p === "object" && p !== null ? p.names : [] },
  );
  return rebuildOut(out as unknown as FlatOut, res);
}

/**
 * `jax.checkpoint(f, prevent_cse, policy)` (`jax.remat`): `f` whose
 * intermediate values are recomputed in the backward pass instead of
 * stored, except those the policy saves.
 */
export function checkpoint<A extends unknown[], R>(f: (...args: A) => R, opts: CheckpointOptions = {}): <B extends Lift<A>>(...args: B) => Both<B, R> {
  checkFn("checkpoint", f);
  return cachedJit(f, `checkpoint${JSON.stringify(opts)}`, `checkpoint(${fnName(f)})`, (...args) => checkpointTree(f as Fn, opts, args)) as never;
}

// --- customJvp / customVjp ---------------------------------------------------------------------------

/** A function with a custom derivative rule: call it like `f`; `defjvp` / `defvjp` set the rule. */
export type CustomJvp<A extends unknown[], R> = (<B extends Lift<A>>(...args: B) => Both<B, R>) & {
  /** Set the rule: `jvp(primals, tangents) -> [out, tangentOut]`, primals and tangents as JS arrays of the arguments. */
  defjvp(rule: (primals: TracerTree<A>, tangents: unknown[]) => readonly [unknown, unknown]): CustomJvp<A, R>;
};

export type CustomVjp<A extends unknown[], R> = (<B extends Lift<A>>(...args: B) => Both<B, R>) & {
  /** Set the rules: `fwd(...args) -> [out, residuals]`, `bwd(residuals, ct) -> [one cotangent tree per argument]`. */
  defvjp(fwd: (...args: TracerTree<A>) => readonly [unknown, unknown], bwd: (residuals: any, ct: any) => readonly unknown[]): CustomVjp<A, R>;
};

/**
 * `jax.custom_jvp(f)` with its rule (`customJvp(f, rule)` or
 * `customJvp(f).defjvp(rule)`): `rule(primals, tangents)` returns
 * `[out, tangentOut]` with `out` equal to `f(...primals)`. Tangents are
 * `null` at integer and bool leaves and at static leaves (static leaves of
 * the arguments, like JAX's `nondiff_argnums`, reach the rule as they are);
 * a `null` tangent output is zero. The rule is TypeScript, traced like `f`.
 */
export function customJvp<A extends unknown[], R>(f: (...args: A) => R, rule?: (primals: TracerTree<A>, tangents: unknown[]) => readonly [unknown, unknown]): CustomJvp<A, R> {
  checkFn("customJvp", f);
  let jvpRule = rule;
  const owner = {};
  const call = (...args: unknown[]): unknown => {
    if (jvpRule === undefined) {
      const e = traceError("customJvp", `No JVP defined for custom_jvp function ${fnName(f)} using defjvp.`);
      if (currentTrace() !== undefined) throw e;
      return Promise.reject(e);
    }
    const r = jvpRule;
    return cachedJit(owner, "call", `customJvp(${fnName(f)})`, (...a) => customJvpTree(f as Fn, r, a, owner))(...args);
  };
  const g = call as CustomJvp<A, R>;
  g.defjvp = (r) => {
    jvpRule = r;
    jits.delete(owner);
    return g;
  };
  Object.defineProperty(g, "name", { value: `customJvp(${fnName(f)})` });
  return g;
}

function customJvpTree(f: Fn, rule: (primals: never, tangents: unknown[]) => readonly [unknown, unknown], args: unknown[], key: object): unknown {
  const op = "customJvp";
  const fa = flattenArgs(args, () => "static");
  let out: FlatOut | null = null;
  const res = customJvpFlat(
    (xs) => {
      out = flattenOut((f as (...a: unknown[]) => unknown)(...rebuildArgs(fa, xs)), true);
      return out.arrays;
    },
    (ps, ts) => {
      const primals = rebuildArgs(fa, ps);
      const tangents = args.map((_, a) => argTree(fa, args, a, (k) => ts[k], () => null));
      const r = rule(primals as never, tangents);
      if (!Array.isArray(r) || r.length !== 2) throw traceError(op, `the jvp rule of ${fnName(f)} must return [primalOut, tangentOut], got ${describe(r, "kind")}`);
      const o = out as unknown as FlatOut;
      const po = flattenOut(r[0], true);
      if (!po.treedef.equals(o.treedef)) {
        throw traceError(op, `Custom JVP rule must produce primal and tangent outputs with equal container (pytree) structures: ${fnName(f)} returns ${o.treedef}, the rule's primal output is ${po.treedef}`);
      }
      const tangentOut = matchOut(op, o, r[1], (_w, got) => `Custom JVP rule must produce primal and tangent outputs with equal container (pytree) structures, but got ${po.treedef} and ${got} respectively.`) as (BodyOut | null)[];
      return [po.arrays, tangentOut];
    },
    fa.operands,
    { op, names: fa.names, key },
  );
  return rebuildOut(out as unknown as FlatOut, res);
}

/**
 * `jax.custom_vjp(f)` with its rules (`customVjp(f, fwd, bwd)` or
 * `customVjp(f).defvjp(fwd, bwd)`): `fwd(...args)` returns `[out,
 * residuals]` (any pytree), `bwd(residuals, ct)` a JS array with one
 * cotangent tree per argument (`null` for zero, and at integer, bool and
 * static leaves). The rules are TypeScript, traced like `f`.
 */
export function customVjp<A extends unknown[], R>(
  f: (...args: A) => R,
  fwd?: (...args: TracerTree<A>) => readonly [unknown, unknown],
  bwd?: (residuals: any, ct: any) => readonly unknown[],
): CustomVjp<A, R> {
  checkFn("customVjp", f);
  let rules = fwd && bwd ? { fwd: fwd as Fn, bwd: bwd as Fn } : undefined;
  const owner = {};
  const call = (...args: unknown[]): unknown => {
    if (rules === undefined) {
      const e = traceError("customVjp", `No VJP defined for custom_vjp function ${fnName(f)} using defvjp.`);
      if (currentTrace() !== undefined) throw e;
      return Promise.reject(e);
    }
    const r = rules;
    return cachedJit(owner, "call", `customVjp(${fnName(f)})`, (...a) => customVjpTree(f as Fn, r.fwd, r.bwd, a, owner))(...args);
  };
  const g = call as CustomVjp<A, R>;
  g.defvjp = (fw, bw) => {
    rules = { fwd: fw as Fn, bwd: bw as Fn };
    jits.delete(owner);
    return g;
  };
  Object.defineProperty(g, "name", { value: `customVjp(${fnName(f)})` });
  return g;
}

function customVjpTree(f: Fn, fwd: Fn, bwd: Fn, args: unknown[], key: object): unknown {
  const op = "customVjp";
  const fa = flattenArgs(args, () => "static");
  let out: FlatOut | null = null;
  let resOut: FlatOut | null = null;
  const res = customVjpFlat(
    (xs) => {
      out = flattenOut((f as (...a: unknown[]) => unknown)(...rebuildArgs(fa, xs)), true);
      return out.arrays;
    },
    (xs) => {
      const r = (fwd as (...a: unknown[]) => unknown)(...rebuildArgs(fa, xs));
      if (!Array.isArray(r) || r.length !== 2) {
        throw traceError(op, `Custom VJP fwd rule ${fnName(fwd)} for function ${fnName(f)} must produce a pair (list or tuple of length two) where the first element represents the primal output and the second element represents residuals, but instead of a pair the fwd rule ${fnName(fwd)} produced ${describe(r, "kind")}.`);
      }
      const po = flattenOut(r[0], true);
      const o = out as unknown as FlatOut;
      if (!po.treedef.equals(o.treedef)) {
        throw traceError(op, `Custom VJP fwd rule ${fnName(fwd)} for function ${fnName(f)} must produce a pair (list or tuple of length two) where the first element represents the primal output (equal to the output of the custom_vjp-decorated function ${fnName(f)}), but instead the fwd rule output's first element had container/pytree structure ${po.treedef} while the custom_vjp-decorated function ${fnName(f)} had output container/pytree structure ${o.treedef}.`);
      }
      resOut = flattenOut(r[1]);
      return [po.arrays, resOut.arrays];
    },
    (res, cts) => {
      const ro = resOut as unknown as FlatOut;
      const o = out as unknown as FlatOut;
      const residuals = rebuildOut(ro, res);
      const ct = rebuildOut(o, cts);
      const g = (bwd as (r: unknown, c: unknown) => unknown)(residuals, ct);
      if (!Array.isArray(g) || g.length !== args.length) {
        throw traceError(op, `Custom VJP bwd rule must produce an output with the same container (pytree) structure as the args tuple of the primal function, and in particular must produce a tuple of length equal to the number of arguments to the primal function, but got ${describe(g, "kind")} for ${args.length} arguments.`);
      }
      // One tree per argument, matched to the arguments' operands (null: zero).
      const flat: (BodyOut | null)[] = fa.operands.map(() => null);
      g.forEach((tree, a) => {
        if (tree === null || tree === undefined) return;
        const want = flattenWithPath(args[a], { isLeaf: isNone });
        const got = flattenWithPath(tree, { isLeaf: isNone });
        if (!want.treedef.equals(got.treedef)) {
          throw traceError(op, `Custom VJP bwd rule must produce an output with the same container (pytree) structure as the args tuple of the primal function: argument ${a} is ${want.treedef}, the bwd rule gave ${got.treedef}`);
        }
        // The argument's leaves, None leaves included, in order: operands take the bwd rule's values.
        let j = 0;
        fa.leaves.forEach((_, i) => {
          if (fa.leafArg[i] !== a) return;
          while (want.leaves[j] !== undefined && isNone(want.leaves[j]!.value)) j++;
          const v = got.leaves[j++]?.value;
          if (fa.slots[i]! >= 0) flat[fa.slots[i]!] = (v ?? null) as BodyOut | null;
        });
      });
      return flat;
    },
    fa.operands,
    { op, names: fa.names, funName: fnName(f), fwdName: fnName(fwd), key },
  );
  return rebuildOut(out as unknown as FlatOut, res);
}

export type { Tracer };
