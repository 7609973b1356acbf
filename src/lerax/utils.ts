/**
 * lerax's utilities (`lerax.utils`) for TypeScript, usable both inside
 * traced functions and at top level:
 *
 * - `filterCond(pred, trueFun, falseFun, ...args)` and `filterScan(f, init,
 *   xs?, opts)`: inside a traced function (jit, another filterScan's body,
 *   a branch) they record one `cond` / `scan` equation and return the
 *   output tree directly. At top level they trace the branches / body,
 *   run them as one jitted program on the sidecar, and return a Promise of
 *   the output tree with DeviceArrays for array leaves (static leaves stay
 *   in TypeScript and come back as they were).
 * - `unstackPytree(tree, {axis})`: host trees (NDArray leaves) are sliced
 *   here, synchronously (zero-copy views when the axis is the leading one);
 *   trees holding DeviceArrays are unstacked by one jitted program (a
 *   Promise); tracers record slices.
 * - `polyakAverage(online, target, tau)`: inexact array leaves become
 *   `tau * online + (1 - tau) * target`, computed as JAX computes that
 *   expression with a Python float `tau` (a weakly typed scalar, so in the
 *   leaves' dtype); every other leaf comes from `online`. At top level: one
 *   jitted program, a Promise.
 *
 * Top-level calls run on, in order: the `session` option, the session that
 * owns the DeviceArray inputs, the default session. Every top-level call
 * goes through `jit`, cached per function (per pair of functions for
 * filterCond) and per signature: a second call with the same signature does
 * not call the user's functions again, sends only the program's hash, and
 * the sidecar does not recompile. `leraxCacheStats` shows the counters.
 * NDArray inputs travel inside the run request (one message, no separate
 * put); the same NDArray at several leaves travels once.
 */

import { DeviceArray } from "../values/device-array.js";
import { dtypeInfo, isInexact } from "../values/dtype.js";
import { BridgeInputError } from "../values/errors.js";
import { describe } from "../values/describe.js";
import { array, NDArray } from "../values/ndarray.js";
import { PyRef } from "../values/remote.js";
import type { RequestOptions, Session } from "../session/session.js";
import { firstDifference, isArray, flatten, flattenWithPath, keystr, type KeyPath, treeMap, unflatten } from "../values/tree.js";
import { currentTrace, isArrayLeaf } from "../trace/core.js";
import { filterCond as condInTrace, filterScan as scanInTrace, type FilterScanOptions } from "./filter.js";
import * as jnp from "../trace/lib/jnp.js";
import { jit, type Jitted, type JitStats } from "../trace/jit.js";
import { Tracer } from "../trace/tracer.js";
import type { ArrayLeaf, DeviceResult, Fn, Primitive, TracerTree } from "../trace/types.js";

export type { DeviceResult, TracerTree } from "../trace/types.js";

// --- types ---------------------------------------------------------------------------------

export type { HasTracer, MayHaveTracer, Staged, HasDevice, Stacked } from "../trace/staged.js";
import type { HasDevice, HasTracer, Stacked, Staged } from "../trace/staged.js";

/** Options of a top-level call. */
export interface TopLevelOptions extends RequestOptions {
  /** The session to run on (default: the one owning the DeviceArray inputs, else the default session). */
  session?: Session;
  /** Resolve to host arrays (NDArray) instead of DeviceArrays. */
  fetch?: boolean;
}

export type ScanResult<C, X, Y> = Staged<[C, X], [TracerTree<C>, Stacked<Y, Tracer>], [DeviceResult<C>, Stacked<Y, DeviceArray>]>;

export type CondResult<P, A, R> = Staged<[P, A], TracerTree<R>, DeviceResult<R>>;

// --- caches --------------------------------------------------------------------------------

type AnyJitted = Jitted<unknown[], unknown>;

const condJits = new WeakMap<Fn, WeakMap<Fn, AnyJitted>>();
const scanJits = new WeakMap<Fn, Map<string, AnyJitted>>();
let unstackJit: AnyJitted | undefined;
let polyakJit: AnyJitted | undefined;

const ZERO: JitStats = Object.freeze({ traces: 0, hits: 0, calls: 0, programsSent: 0 });

function sumStats(js: Iterable<AnyJitted>): JitStats {
  const out = { ...ZERO };
  for (const j of js) {
    out.traces += j.stats.traces;
    out.hits += j.stats.hits;
    out.calls += j.stats.calls;
    out.programsSent += j.stats.programsSent;
  }
  return out;
}

/**
 * The TypeScript-side cache counters of top-level calls: how many times the
 * user's functions were traced, how many calls were answered from the
 * cache, how many sent the program body. The sidecar's own counters
 * (lowerings, JAX traces) are `programStats(session)`.
 */
export const leraxCacheStats = {
  filterScan(f: Fn): JitStats {
    return sumStats(scanJits.get(f)?.values() ?? []);
  },
  filterCond(trueFun: Fn, falseFun: Fn): JitStats {
    const j = condJits.get(trueFun)?.get(falseFun);
    return j ? { ...j.stats } : { ...ZERO };
  },
  unstackPytree(): JitStats {
    return unstackJit ? { ...unstackJit.stats } : { ...ZERO };
  },
  polyakAverage(): JitStats {
    return polyakJit ? { ...polyakJit.stats } : { ...ZERO };
  },
};

const callOpts = (o: TopLevelOptions) => ({ session: o.session, fetch: o.fetch, signal: o.signal, timeoutMs: o.timeoutMs });

// --- filterCond ----------------------------------------------------------------------------

/**
 * `lerax.utils.filter_cond`: `trueFun(...args)` if `pred` else
 * `falseFun(...args)`. Both branches are traced; their static
 * (non-array) outputs must be equal and their array outputs must agree in
 * structure, shape and dtype. One `lax.cond`: only the taken branch runs.
 *
 * Inside a traced function: returns the output tree. At top level: a
 * Promise of it, with DeviceArrays for array leaves. Options for a top-level
 * call: `filterCond.withOptions({session, fetch})(pred, ...)`.
 */
export function filterCond<P, A extends unknown[], R>(
  pred: P,
  trueFun: (...args: TracerTree<A>) => R,
  falseFun: (...args: TracerTree<A>) => R,
  ...args: A
): CondResult<P, A, R> {
  return condWith({}, pred, trueFun, falseFun, args) as CondResult<P, A, R>;
}

function condWith(o: TopLevelOptions, pred: unknown, trueFun: Fn, falseFun: Fn, args: unknown[]): unknown {
  if (currentTrace() !== undefined) return condInTrace(pred, trueFun as never, falseFun as never, ...(args as never[]));
  if (typeof trueFun !== "function" || typeof falseFun !== "function") {
    return Promise.reject(new BridgeInputError("filterCond: trueFun and falseFun must be functions"));
  }
  let byFalse = condJits.get(trueFun);
  if (!byFalse) condJits.set(trueFun, (byFalse = new WeakMap()));
  let j = byFalse.get(falseFun);
  if (!j) {
    const name = `filterCond(${trueFun.name || "trueFun"}, ${falseFun.name || "falseFun"})`;
    j = jit((p: unknown, a: unknown[]) => condInTrace(p, trueFun as never, falseFun as never, ...(a as never[])), { name }) as AnyJitted;
    byFalse.set(falseFun, j);
  }
  // A JS boolean predicate becomes a bool scalar array, so both values share one program.
  const p = typeof pred === "boolean" ? array(pred, "bool") : pred;
  return j.withOptions(callOpts(o))(p, args);
}

filterCond.withOptions = (o: TopLevelOptions) =>
  <P, A extends unknown[], R>(pred: P, trueFun: (...args: TracerTree<A>) => R, falseFun: (...args: TracerTree<A>) => R, ...args: A): CondResult<P, A, R> =>
    condWith(o, pred, trueFun, falseFun, args) as CondResult<P, A, R>;

// --- filterScan ----------------------------------------------------------------------------

export interface ScanCallOptions extends FilterScanOptions, TopLevelOptions {}

/**
 * `lerax.utils.filter_scan`: `f(carry, x) -> [carry, y]` over the leading
 * axis of `xs` (or `length` steps). Array leaves of the carry are traced;
 * static leaves stay in TypeScript and must come out of `f` unchanged.
 * Returns `[finalCarry, stackedYs]`: directly inside a traced function, as
 * a Promise (DeviceArrays) at top level.
 */
export function filterScan<C, X = null, Y = unknown>(
  f: (carry: TracerTree<C>, x: TracerTree<X>) => readonly [NoInfer<C> | TracerTree<NoInfer<C>>, Y],
  init: C,
  xs?: X | null,
  opts: ScanCallOptions = {},
): ScanResult<C, X, Y> {
  const { length, reverse, unroll, splitTranspose } = opts;
  const scanOpts: FilterScanOptions = {};
  if (length !== undefined) scanOpts.length = length;
  if (reverse !== undefined) scanOpts.reverse = reverse;
  if (unroll !== undefined) scanOpts.unroll = unroll;
  if (splitTranspose !== undefined) scanOpts.splitTranspose = splitTranspose;
  if (currentTrace() !== undefined) return scanInTrace(f as never, init, xs, scanOpts) as ScanResult<C, X, Y>;
  if (typeof f !== "function") return Promise.reject(new BridgeInputError("filterScan: f must be a function")) as ScanResult<C, X, Y>;
  const key = JSON.stringify([length ?? null, reverse ?? false, unroll ?? 1, splitTranspose ?? false]);
  let byOpts = scanJits.get(f as Fn);
  if (!byOpts) scanJits.set(f as Fn, (byOpts = new Map()));
  let j = byOpts.get(key);
  if (!j) {
    j = jit((c: unknown, x: unknown) => scanInTrace(f as never, c, x as never, scanOpts), { name: `filterScan(${f.name || "f"})` }) as AnyJitted;
    byOpts.set(key, j);
  }
  return j.withOptions(callOpts(opts))(init, xs ?? null) as ScanResult<C, X, Y>;
}

// --- unstackPytree -------------------------------------------------------------------------

export interface UnstackOptions extends TopLevelOptions {
  /** The axis to unstack along (default 0; negative counts from each leaf's last axis, as jnp.unstack). */
  axis?: number;
}

export type UnstackResult<T> =
  HasTracer<T> extends true ? TracerTree<T>[] : HasDevice<T> extends true ? Staged<T, TracerTree<T>[], DeviceResult<T>[]> : T[];

interface UnstackPlan {
  leaves: { path: KeyPath; value: ArrayLeaf; axis: number }[];
  /** Position of each flattened leaf: an index into `leaves`, or a PyRef every slice shares. */
  slots: (number | PyRef)[];
  treedef: ReturnType<typeof flatten>["treedef"];
  n: number;
}

function arrayDesc(v: ArrayLeaf): string {
  return `${v.dtype}[${v.shape.join(", ")}]`;
}

/** Check that every leaf is an array with the axis, and that all have the same size along it. */
function planUnstack(tree: unknown, axis: number): UnstackPlan {
  const op = "unstackPytree";
  if (!Number.isInteger(axis)) throw new BridgeInputError(`${op}: axis must be an integer, got ${String(axis)}`);
  const { leaves, treedef } = flattenWithPath(tree);
  const out: UnstackPlan["leaves"] = [];
  const slots: UnstackPlan["slots"] = [];
  for (const { path, value } of leaves) {
    const where = keystr(path) || "the root";
    if (value instanceof PyRef) {
      // A Python object inside a remote module (its activation function): static, as
      // eqx.partition would put it, so every slice shares it.
      slots.push(value);
      continue;
    }
    if (!isArrayLeaf(value)) {
      throw new BridgeInputError(
        `${op}: every leaf must be an array (lerax slices each leaf along the axis); ${where} is ${describe(value)}. ` +
          "Keep static values in a Module's static fields, or leave them out of the tree",
      );
    }
    const nd = value.shape.length;
    if (axis < -nd || axis >= nd) {
      throw new BridgeInputError(`${op}: axis ${axis} is out of bounds for ${where}, which is ${arrayDesc(value)} (${nd} dimension${nd === 1 ? "" : "s"})`);
    }
    slots.push(out.length);
    out.push({ path, value, axis: axis < 0 ? axis + nd : axis });
  }
  if (out.length === 0) throw new BridgeInputError(`${op}: the tree has no array leaves, so there is nothing to unstack (and no size to split into)`);
  const first = out[0]!;
  const n = first.value.shape[first.axis]!;
  const odd = out.filter((l) => l.value.shape[l.axis] !== n);
  if (odd.length > 0) {
    const desc = (l: (typeof out)[number]) => `${keystr(l.path) || "the root"} (${arrayDesc(l.value)}) has ${l.value.shape[l.axis]}`;
    throw new BridgeInputError(
      `${op}: all leaves must have the same size along axis ${axis}, but ${desc(first)}, while ${odd.map(desc).join(", ")}`,
    );
  }
  return { leaves: out, slots, treedef, n };
}

/** Slices of a host array along `axis`: views when every slice is contiguous (axis 0, or all leading sizes 1). */
function sliceHost(a: NDArray, axis: number): NDArray[] {
  const { lanes } = dtypeInfo(a.dtype);
  const shape = a.shape;
  const n = shape[axis]!;
  let outer = 1;
  for (let k = 0; k < axis; k++) outer *= shape[k]!;
  let inner = lanes;
  for (let k = axis + 1; k < shape.length; k++) inner *= shape[k]!;
  const outShape = [...shape.slice(0, axis), ...shape.slice(axis + 1)];
  const data = a.data as unknown as { subarray(b: number, e: number): NDArray["data"]; constructor: new (n: number) => NDArray["data"] };
  const out: NDArray[] = [];
  for (let i = 0; i < n; i++) {
    if (outer === 1) {
      out.push(new NDArray(data.subarray(i * inner, (i + 1) * inner), outShape, a.dtype));
      continue;
    }
    const Ctor = dtypeInfo(a.dtype).ctor;
    const buf = new Ctor(outer * inner) as unknown as { set(src: unknown, at: number): void };
    for (let o = 0; o < outer; o++) buf.set(data.subarray((o * n + i) * inner, (o * n + i + 1) * inner), o * inner);
    out.push(new NDArray(buf as unknown as NDArray["data"], outShape, a.dtype));
  }
  return out;
}

function unstackPlanned(plan: UnstackPlan, slice: (l: UnstackPlan["leaves"][number]) => unknown[]): unknown[] {
  const columns = plan.leaves.map(slice);
  const out: unknown[] = [];
  for (let i = 0; i < plan.n; i++) out.push(unflatten(plan.treedef, plan.slots.map((k) => (typeof k === "number" ? columns[k]![i] : k))));
  return out;
}

/** The traced unstack (inside a trace, and the body of the top-level program). */
function unstackTraced(tree: unknown, axis: number): unknown[] {
  const plan = planUnstack(tree, axis);
  return unstackPlanned(plan, (l) => jnp.unstack(l.value as Tracer, l.axis));
}

/**
 * `lerax.utils.unstack_pytree`: split a tree whose array leaves share a
 * size along `axis` into a JS array of trees of the same structure, one per
 * index. Every leaf must be an array that has the axis (PyRefs, the Python
 * objects inside remote modules, are shared by every slice); leaves of different
 * sizes along it are an error naming each offending leaf and its size
 * (lerax's own check, `~times == times[0]`, never fires).
 *
 * - Host trees (NDArray leaves only): sliced here, returned directly; slices
 *   along a leading axis are views of the input's memory (no copy).
 * - Trees holding DeviceArrays (at top level): one jitted program; a Promise
 *   of trees of DeviceArrays (NDArrays with `fetch`).
 * - Inside a traced function: slices recorded in the program.
 */
export function unstackPytree<T>(tree: T, opts: UnstackOptions = {}): UnstackResult<T> {
  const axis = opts.axis ?? 0;
  const leaves = flatten(tree).leaves;
  const traced = currentTrace() !== undefined;
  // Only a host tree (NDArray leaves) is sliced here; tracers and DeviceArrays take a program.
  const needsProgram = leaves.some((l) => isArray(l) && !(l instanceof NDArray));
  if (traced && needsProgram) return unstackTraced(tree, axis) as UnstackResult<T>;
  if (!needsProgram) {
    // Host: pure TypeScript slicing.
    const plan = planUnstack(tree, axis);
    return unstackPlanned(plan, (l) => sliceHost(l.value as NDArray, l.axis)) as UnstackResult<T>;
  }
  try {
    planUnstack(tree, axis);
  } catch (e) {
    return Promise.reject(e) as UnstackResult<T>;
  }
  unstackJit ??= jit((t: unknown, ax: number) => unstackTraced(t, ax), { name: "unstackPytree" }) as AnyJitted;
  return unstackJit.withOptions(callOpts(opts))(tree, axis) as UnstackResult<T>;
}

// --- polyakAverage -------------------------------------------------------------------------

class Slot {
  constructor(readonly what: string) {}
  toString(): string {
    return this.what;
  }
}
const INEXACT = new Slot("an inexact array");
const OTHER = new Slot("a leaf that is not an inexact array");

function isInexactArray(x: unknown): x is ArrayLeaf {
  return isArrayLeaf(x) && isInexact(x.dtype);
}

/** A leaf as polyakAverage sees it: whether it is an inexact array, then the leaf. */
function polyakRole(x: unknown): string {
  if (isArray(x)) return `${isInexact(x.dtype) ? "an inexact array" : "an array that is not inexact"} (${describe(x)})`;
  return describe(x);
}

/** The pairs of leaves to average, after checking the trees agree (structure and which leaves are inexact arrays). */
function polyakPairs(online: unknown, target: unknown): { treedef: ReturnType<typeof flatten>["treedef"]; pairs: [unknown, unknown, string][] } {
  const op = "polyakAverage";
  const a = flattenWithPath(online);
  const b = flattenWithPath(target);
  const skeleton = (t: unknown) => treeMap((l: unknown) => (isInexactArray(l) ? INEXACT : OTHER), t);
  const d = firstDifference(skeleton(online), skeleton(target));
  if (d !== null) {
    const at = d.path || "the root";
    const la = a.leaves.find((l) => keystr(l.path) === d.path);
    const lb = b.leaves.find((l) => keystr(l.path) === d.path);
    const left = la && lb ? polyakRole(la.value) : d.left;
    const right = la && lb ? polyakRole(lb.value) : d.right;
    throw new BridgeInputError(`${op}: online and target must have the same structure and the same inexact array leaves; at ${at} online has ${left}, target has ${right}`);
  }
  const pairs: [unknown, unknown, string][] = a.leaves.map((l, i) => [l.value, b.leaves[i]!.value, keystr(l.path) || "the root"]);
  for (const [o, t, where] of pairs) {
    if (isInexactArray(o) && isInexactArray(t) && (o.shape.length !== t.shape.length || o.shape.some((s, k) => s !== t.shape[k]))) {
      throw new BridgeInputError(`${op}: at ${where} online is ${arrayDesc(o)} but target is ${arrayDesc(t)}; averaged leaves must have the same shape`);
    }
  }
  return { treedef: a.treedef, pairs };
}

function polyakTraced(online: unknown, target: unknown, tau: unknown): unknown {
  const { treedef, pairs } = polyakPairs(online, target);
  const oneMinus = typeof tau === "number" ? 1 - tau : jnp.subtract(1, tau as jnp.ArrayLike);
  const leaves = pairs.map(([o, t]) =>
    isInexactArray(o) ? jnp.add(jnp.multiply(tau as jnp.ArrayLike, o), jnp.multiply(oneMinus as jnp.ArrayLike, t as ArrayLeaf)) : o,
  );
  return unflatten(treedef, leaves);
}

export type PolyakResult<T, U> = Staged<[T, U], TracerTree<T>, DeviceResult<T>>;

/**
 * `lerax.utils.polyak_average`: a tree like `online` whose inexact array
 * leaves (floating and complex) are `tau * online + (1 - tau) * target`,
 * every other leaf taken from `online`. `tau` is a JS number (a weakly
 * typed scalar: the result keeps the leaves' dtype, as with a Python float)
 * or a scalar array. The trees must have the same structure and the same
 * inexact leaves (an error names the first path where they differ).
 *
 * Inside a traced function: returns the tree. At top level: one jitted
 * program; a Promise of the tree with DeviceArrays.
 */
export function polyakAverage<T, U = T>(online: T, target: U, tau: number | ArrayLeaf, opts: TopLevelOptions = {}): PolyakResult<T, U> {
  if (typeof tau === "number" && !Number.isFinite(tau)) {
    const e = new BridgeInputError(`polyakAverage: tau must be a finite number, got ${tau}`);
    if (currentTrace() !== undefined) throw e;
    return Promise.reject(e) as PolyakResult<T, U>;
  }
  if (currentTrace() !== undefined) return polyakTraced(online, target, tau) as PolyakResult<T, U>;
  try {
    polyakPairs(online, target);
  } catch (e) {
    return Promise.reject(e) as PolyakResult<T, U>;
  }
  polyakJit ??= jit((o: unknown, t: unknown, tau_: unknown) => polyakTraced(o, t, tau_), { name: "polyakAverage" }) as AnyJitted;
  return polyakJit.withOptions(callOpts(opts))(online, target, tau) as PolyakResult<T, U>;
}

