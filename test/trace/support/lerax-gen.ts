/**
 * Generated pytrees and typed expressions for the lerax cross-checks: one
 * description renders both as TypeScript values / functions (jnp calls on
 * tracers) and as Python source (the same jnp calls), so a random case can
 * run through jaxbridge and through lerax and be compared leaf by leaf.
 */
import type { DType } from "../../../src/values/dtype.js";
import { NDArray } from "../../../src/values/ndarray.js";
import { jnp } from "../../../src/trace/lib/index.js";
import { pick, randInt, randomArray } from "./oracle.js";

export type Rand = () => number;
export type Key = string | number;

export interface Spec {
  dtype: DType;
  shape: number[];
}

export type Template =
  | { kind: "array"; spec: Spec; id: number }
  | { kind: "static"; value: string | number | boolean }
  | { kind: "none" }
  | { kind: "list"; items: Template[] }
  | { kind: "dict"; entries: [string, Template][] };

export const isFloat = (d: DType): boolean => d.startsWith("float") || d === "bfloat16";
export const isInt = (d: DType): boolean => d.startsWith("int") || d.startsWith("uint");

// --- templates ---------------------------------------------------------------------------------

/** Builds templates and keeps the arrays their array leaves stand for (`args[id]` in Python). */
export class Arrays {
  readonly list: NDArray[] = [];
  constructor(readonly r: Rand) {}
  add(spec: Spec, opts: { lo?: number; hi?: number } = {}): Template {
    const id = this.list.length;
    const lo = opts.lo ?? (isInt(spec.dtype) ? -5 : -2);
    const hi = opts.hi ?? (isInt(spec.dtype) ? 5 : 2);
    this.list.push(randomArray(this.r, spec.dtype, spec.shape, { lo, hi }));
    return { kind: "array", spec, id };
  }
}

const KEYS = ["a", "b", "cfg", "h", "k", "m", "params", "s", "w", "z"];
const STATICS: (string | number | boolean)[] = ["tanh", "relu", "tag", 3, 7, -2, 0.5, 1.25, true, false];

/** A random tree: arrays from `specs()`, some static leaves and None, nested up to `depth`. */
export function randomTemplate(r: Rand, arrays: Arrays, specs: () => Spec, opts: { depth?: number; statics?: boolean; minArrays?: number } = {}): Template {
  const depth = opts.depth ?? 2;
  const statics = opts.statics ?? true;
  const leaf = (): Template => {
    const u = r();
    if (!statics || u < 0.6) return arrays.add(specs());
    if (u < 0.9) return { kind: "static", value: pick(r, STATICS) };
    return { kind: "none" };
  };
  const node = (d: number): Template => {
    if (d === 0 || r() < 0.35) return leaf();
    if (r() < 0.5) {
      const n = randInt(r, 1, 3);
      return { kind: "list", items: Array.from({ length: n }, () => node(d - 1)) };
    }
    const keys = [...KEYS].sort(() => r() - 0.5).slice(0, randInt(r, 1, 3));
    return { kind: "dict", entries: keys.map((k) => [k, node(d - 1)] as [string, Template]) };
  };
  let t = node(depth);
  // Make sure there are arrays to compute with.
  const min = opts.minArrays ?? 1;
  while (arrayLeaves(t).length < min) t = { kind: "dict", entries: [["x" + arrayLeaves(t).length, arrays.add(specs())], ["y", t]] };
  return t;
}

export interface LeafRef {
  path: Key[];
  spec: Spec;
}

export function arrayLeaves(t: Template, path: Key[] = []): LeafRef[] {
  switch (t.kind) {
    case "array":
      return [{ path, spec: t.spec }];
    case "list":
      return t.items.flatMap((c, i) => arrayLeaves(c, [...path, i]));
    case "dict":
      return t.entries.flatMap(([k, c]) => arrayLeaves(c, [...path, k]));
    default:
      return [];
  }
}

export function staticNumbers(t: Template, path: Key[] = []): { path: Key[]; value: number }[] {
  switch (t.kind) {
    case "static":
      return typeof t.value === "number" ? [{ path, value: t.value }] : [];
    case "list":
      return t.items.flatMap((c, i) => staticNumbers(c, [...path, i]));
    case "dict":
      return t.entries.flatMap(([k, c]) => staticNumbers(c, [...path, k]));
    default:
      return [];
  }
}

export function staticPaths(t: Template, path: Key[] = []): Key[][] {
  switch (t.kind) {
    case "static":
      return [path];
    case "list":
      return t.items.flatMap((c, i) => staticPaths(c, [...path, i]));
    case "dict":
      return t.entries.flatMap(([k, c]) => staticPaths(c, [...path, k]));
    default:
      return [];
  }
}

/** The TypeScript value of a template: NDArrays (or the given replacement per array id) and statics. */
export function tsValue(t: Template, arrays: readonly unknown[]): unknown {
  switch (t.kind) {
    case "array":
      return arrays[t.id];
    case "static":
      return t.value;
    case "none":
      return null;
    case "list":
      return t.items.map((c) => tsValue(c, arrays));
    case "dict":
      return Object.fromEntries(t.entries.map(([k, c]) => [k, tsValue(c, arrays)]));
  }
}

export function pyLiteral(v: string | number | boolean | null): string {
  if (v === null) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "float('nan')";
    if (!Number.isFinite(v)) return v > 0 ? "float('inf')" : "float('-inf')";
    return String(v);
  }
  return JSON.stringify(v);
}

/** Python source for a template; array leaves are `args[id]` (`arg(id)` lets the caller choose). */
export function pySource(t: Template, arg: (id: number) => string = (id) => `args[${id}]`): string {
  switch (t.kind) {
    case "array":
      return arg(t.id);
    case "static":
      return pyLiteral(t.value);
    case "none":
      return "None";
    case "list":
      return `[${t.items.map((c) => pySource(c, arg)).join(", ")}]`;
    case "dict":
      return `{${t.entries.map(([k, c]) => `${JSON.stringify(k)}: ${pySource(c, arg)}`).join(", ")}}`;
  }
}

// --- expressions -------------------------------------------------------------------------------

export type Expr =
  | { k: "ref"; root: string; path: Key[]; t: Spec }
  | { k: "sref"; root: string; path: Key[]; value: number }
  | { k: "num"; v: number }
  | { k: "call"; fn: keyof typeof FNS; args: Expr[] }
  | { k: "astype"; a: Expr; dtype: DType };

/** jnp functions by their TypeScript name, with the Python name. */
const FNS = {
  tanh: "tanh",
  sin: "sin",
  abs: "abs",
  negative: "negative",
  add: "add",
  subtract: "subtract",
  multiply: "multiply",
  maximum: "maximum",
  minimum: "minimum",
  greater: "greater",
  logicalNot: "logical_not",
  where: "where",
  sum: "sum",
} as const;

export interface Scope {
  refs: { root: string; path: Key[]; t: Spec }[];
  statics: { root: string; path: Key[]; value: number }[];
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** A random expression of exactly type `t`, built from the scope's arrays. */
export function genExpr(r: Rand, t: Spec, scope: Scope, depth = 2): Expr {
  const sameShapeRefs = scope.refs.filter((x) => sameShape(x.t.shape, t.shape));
  const base = (): Expr => {
    const exact = sameShapeRefs.filter((x) => x.t.dtype === t.dtype);
    if (exact.length && r() < 0.7) return { k: "ref", ...pick(r, exact) };
    if (sameShapeRefs.length) {
      const from = pick(r, sameShapeRefs);
      return convert({ k: "ref", ...from }, from.t.dtype, t.dtype);
    }
    // Only scalars can come from other shapes: a full sum (whose dtype jnp.sum decides), converted.
    if (t.shape.length !== 0) throw new Error(`no array of shape [${t.shape}] in scope`);
    const any = pick(r, scope.refs);
    const summed: Expr = { k: "call", fn: "sum", args: [{ k: "ref", ...any }] };
    return t.dtype === "bool" ? { k: "call", fn: "greater", args: [summed, { k: "num", v: 0 }] } : { k: "astype", a: summed, dtype: t.dtype };
  };
  if (depth <= 0) return base();
  const u = r();
  const sub = () => genExpr(r, t, scope, depth - 1);
  if (isFloat(t.dtype)) {
    if (u < 0.2) return { k: "call", fn: pick(r, ["tanh", "sin", "abs", "negative"] as const), args: [sub()] };
    if (u < 0.5) {
      const other: Expr = r() < 0.5 ? sub() : scope.statics.length && r() < 0.5 ? { k: "sref", ...pick(r, scope.statics) } : { k: "num", v: pick(r, [0.5, -1.5, 0.25, 2.5]) };
      return { k: "call", fn: pick(r, ["add", "subtract", "multiply", "maximum"] as const), args: r() < 0.5 ? [sub(), other] : [other, sub()] };
    }
    if (u < 0.6) return { k: "call", fn: "where", args: [genExpr(r, { dtype: "bool", shape: t.shape }, scope, depth - 1), sub(), sub()] };
    if (u < 0.7 && t.shape.length === 0) {
      const from = pick(r, scope.refs.filter((x) => x.t.dtype === t.dtype).concat(sameShapeRefs.filter((x) => x.t.dtype === t.dtype)));
      if (from) return { k: "call", fn: "sum", args: [{ k: "ref", ...from }] };
    }
    return base();
  }
  if (isInt(t.dtype)) {
    if (u < 0.35) return { k: "call", fn: "add", args: [sub(), { k: "num", v: pick(r, [1, -2, 3]) }] };
    if (u < 0.5) return { k: "call", fn: pick(r, ["maximum", "minimum", "subtract"] as const), args: [sub(), sub()] };
    if (u < 0.6) return { k: "call", fn: "where", args: [genExpr(r, { dtype: "bool", shape: t.shape }, scope, depth - 1), sub(), sub()] };
    return base();
  }
  // bool
  if (u < 0.3) return { k: "call", fn: "logicalNot", args: [sub()] };
  if (u < 0.6) {
    const ft: Spec = { dtype: pick(r, sameShapeRefs.filter((x) => isFloat(x.t.dtype)).map((x) => x.t.dtype).concat(["float32"])), shape: t.shape };
    return { k: "call", fn: "greater", args: [genExpr(r, ft, scope, depth - 1), { k: "num", v: pick(r, [0, 0.5, -0.25]) }] };
  }
  return base();
}

function convert(e: Expr, from: DType, to: DType): Expr {
  if (from === to) return e;
  if (to === "bool") return { k: "call", fn: "greater", args: [e, { k: "num", v: 0 }] };
  return { k: "astype", a: e, dtype: to };
}

/** Evaluate an expression with jnp on the values bound to each root. */
export function evalTs(e: Expr, env: Record<string, unknown>): unknown {
  switch (e.k) {
    case "ref":
    case "sref":
      return getPath(env[e.root], e.path);
    case "num":
      return e.v;
    case "astype":
      return jnp.astype(evalTs(e.a, env) as jnp.ArrayLike, e.dtype);
    case "call": {
      const args = e.args.map((a) => evalTs(a, env));
      const f = (jnp as unknown as Record<string, (...a: unknown[]) => unknown>)[e.fn]!;
      return f(...args);
    }
  }
}

export function pyExpr(e: Expr, roots: Record<string, string> = {}): string {
  switch (e.k) {
    case "ref":
    case "sref":
      return `${roots[e.root] ?? e.root}${e.path.map((p) => `[${JSON.stringify(p)}]`).join("")}`;
    case "num":
      return pyLiteral(e.v);
    case "astype":
      return `jnp.astype(${pyExpr(e.a, roots)}, ${JSON.stringify(e.dtype)})`;
    case "call":
      return `jnp.${FNS[e.fn]}(${e.args.map((a) => pyExpr(a, roots)).join(", ")})`;
  }
}

export function getPath(v: unknown, path: readonly Key[]): unknown {
  let cur = v;
  for (const p of path) cur = (cur as Record<Key, unknown>)[p];
  return cur;
}

/** A tree of expressions: a template whose array leaves are replaced by expressions. */
export type ExprTree = { kind: "expr"; e: Expr } | { kind: "static"; value: string | number | boolean } | { kind: "none" } | { kind: "list"; items: ExprTree[] } | { kind: "dict"; entries: [string, ExprTree][] } | { kind: "num"; v: number };

/** The template with each array leaf replaced by a generated expression of the same type. */
export function exprTreeFor(r: Rand, t: Template, scope: Scope, depth = 2): ExprTree {
  switch (t.kind) {
    case "array":
      return { kind: "expr", e: genExpr(r, t.spec, scope, depth) };
    case "static":
      return { kind: "static", value: t.value };
    case "none":
      return { kind: "none" };
    case "list":
      return { kind: "list", items: t.items.map((c) => exprTreeFor(r, c, scope, depth)) };
    case "dict":
      return { kind: "dict", entries: t.entries.map(([k, c]) => [k, exprTreeFor(r, c, scope, depth)]) };
  }
}

export function evalTree(t: ExprTree, env: Record<string, unknown>): unknown {
  switch (t.kind) {
    case "expr":
      return evalTs(t.e, env);
    case "num":
      return t.v;
    case "static":
      return t.value;
    case "none":
      return null;
    case "list":
      return t.items.map((c) => evalTree(c, env));
    case "dict":
      return Object.fromEntries(t.entries.map(([k, c]) => [k, evalTree(c, env)]));
  }
}

export function pyTree(t: ExprTree, roots: Record<string, string> = {}): string {
  switch (t.kind) {
    case "expr":
      return pyExpr(t.e, roots);
    case "num":
      return pyLiteral(t.v);
    case "static":
      return pyLiteral(t.value);
    case "none":
      return "None";
    case "list":
      return `[${t.items.map((c) => pyTree(c, roots)).join(", ")}]`;
    case "dict":
      return `{${t.entries.map(([k, c]) => `${JSON.stringify(k)}: ${pyTree(c, roots)}`).join(", ")}}`;
  }
}

/** Replace the static leaf at `path` (an error case: static carry or branch outputs that differ). */
export function changeStatic(t: ExprTree, path: readonly Key[]): ExprTree {
  if (path.length === 0) {
    if (t.kind !== "static") throw new Error("not a static leaf");
    const v = t.value;
    return { kind: "static", value: typeof v === "number" ? v + 1 : typeof v === "boolean" ? !v : `${v}!` };
  }
  const [head, ...rest] = path;
  if (t.kind === "list") return { kind: "list", items: t.items.map((c, i) => (i === head ? changeStatic(c, rest) : c)) };
  if (t.kind === "dict") return { kind: "dict", entries: t.entries.map(([k, c]) => [k, k === head ? changeStatic(c, rest) : c]) };
  throw new Error("path does not lead to a static leaf");
}

/** Scope entries for the array leaves of a template bound to `root` (`dropLead` for scanned xs). */
export function scopeOf(root: string, t: Template, dropLead = false): Scope {
  return {
    refs: arrayLeaves(t).map((l) => ({ root, path: l.path, t: { dtype: l.spec.dtype, shape: dropLead ? l.spec.shape.slice(1) : l.spec.shape } })),
    statics: staticNumbers(t).map((s) => ({ root, ...s })),
  };
}

export function mergeScopes(...s: Scope[]): Scope {
  return { refs: s.flatMap((x) => x.refs), statics: s.flatMap((x) => x.statics) };
}
