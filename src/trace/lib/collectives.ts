/**
 * Collectives over named axes, as `jax.lax` has them: `psum`, `pmean`,
 * `pmax`, `pmin`, `allGather`, `psumScatter`, `ppermute`, `allToAll`,
 * `axisIndex`, and `axisSize`. Each is one equation naming its axes; the
 * sidecar lowers it with the `jax.lax` function of the same name, so it
 * means what it means in JAX wherever the axis is bound: a `shardMap` body
 * (its mesh's axes, shapes per shard) or a `vmap` body with an `axisName`.
 * Shapes are inferred here, from the axis sizes the enclosing traces bind
 * (core.ts: `Trace.axisEnv`).
 *
 * The reductions take a pytree and record one equation for all its arrays,
 * as `jax.lax.psum` does with a tree; the others map over a tree's arrays.
 */
import { describe } from "../../values/describe.js";
import { flattenWithPath, keystr, unflatten } from "../../values/tree.js";
import type { DType } from "../../values/dtype.js";
import { asTracer, axisSize as boundSize, bind, bind1, isArrayLeaf, requireTrace } from "../core.js";
import { showAval } from "../ir.js";
import { Tracer } from "../tracer.js";
import { traceError } from "../errors.js";
import { kindOf } from "../dtypes.js";
import { normAxis } from "../shapes.js";

/** One axis name, or several (treated as one axis of their product size, major first). */
export type AxisName = string | readonly string[];

const PRINTABLE = /^[\x20-\x7e]+$/;

function axisNames(op: string, axisName: AxisName): string[] {
  const names = typeof axisName === "string" ? [axisName] : Array.isArray(axisName) ? [...axisName] : null;
  if (names === null || names.length === 0 || !names.every((n) => typeof n === "string" && PRINTABLE.test(n))) {
    throw traceError(op, `axisName must be an axis name or a non-empty list of names (printable ASCII), got ${describe(axisName, "kind")}`);
  }
  if (new Set(names).size !== names.length) throw traceError(op, `axisName names an axis twice: ${names.join(", ")}`);
  return names;
}

/** The array leaves of a tree as tracers of the current trace, and how to put results back. */
function arrayLeaves(op: string, x: unknown): { tracers: Tracer[]; rebuild: (outs: readonly Tracer[]) => unknown } {
  const { leaves, treedef } = flattenWithPath(x);
  const tracers = leaves.map(({ path, value }) => {
    if (!isArrayLeaf(value)) throw traceError(op, `takes arrays; ${keystr(path) || "the argument"} is ${describe(value, "kind")}`);
    return asTracer(op, value);
  });
  return { tracers, rebuild: (outs) => unflatten(treedef, outs) };
}

function reduction<T>(prim: string, x: T, axisName: AxisName, outDType: (t: Tracer) => DType): T {
  const names = axisNames(prim, axisName);
  boundSize(prim, names);
  const { tracers, rebuild } = arrayLeaves(prim, x);
  if (tracers.length === 0) return x;
  const outs = bind(prim, tracers, { axes: names }, tracers.map((t) => ({ aval: { dtype: outDType(t), shape: t.shape }, weak: t.weak })));
  return rebuild(outs) as T;
}

const numeric = (prim: string) => (t: Tracer): DType => {
  const k = kindOf(t.dtype);
  if (prim === "psum" && k === "b") return "int32"; // jax.lax.psum sums bools as int32
  if (k === "b" || ((prim === "pmax" || prim === "pmin") && k === "c")) throw traceError(prim, `does not accept ${showAval(t.aval)}`);
  return t.dtype;
};

/** `lax.psum(x, axisName)`: the sum over the named axes, on every member (a pytree: one all-reduce for all its arrays). Bools sum as int32. */
export function psum<T>(x: T, axisName: AxisName): T {
  return reduction("psum", x, axisName, numeric("psum"));
}

/**
 * `lax.pmean(x, axisName)`: psum, then divided by the axis size. Integers
 * and bools come out as floats, as `v / n` makes them in JAX: float64 for
 * 64-bit integers, float32 for the rest.
 */
export function pmean<T>(x: T, axisName: AxisName): T {
  return reduction("pmean", x, axisName, (t) => {
    const k = kindOf(t.dtype);
    if (k === "f" || k === "c") return t.dtype;
    return t.dtype === "int64" || t.dtype === "uint64" ? "float64" : "float32";
  });
}

/** `lax.pmax(x, axisName)`: the maximum over the named axes. */
export function pmax<T>(x: T, axisName: AxisName): T {
  return reduction("pmax", x, axisName, numeric("pmax"));
}

/** `lax.pmin(x, axisName)`: the minimum over the named axes. */
export function pmin<T>(x: T, axisName: AxisName): T {
  return reduction("pmin", x, axisName, numeric("pmin"));
}

/** Apply a one-array collective to each array of a tree. */
function perLeaf<T>(op: string, x: T, one: (t: Tracer) => Tracer): T {
  const { tracers, rebuild } = arrayLeaves(op, x);
  return rebuild(tracers.map(one)) as T;
}

/**
 * `lax.allGather(x, axisName, {axis, tiled, to})`: every member's `x`,
 * stacked along a new axis `axis` (or concatenated along it with `tiled`).
 * `to: "invarying"` declares the result the same on every member (JAX's
 * `to='invarying'`), so it may leave a shardMap with an unsplit out spec.
 */
export function allGather<T>(x: T, axisName: AxisName, opts: { axis?: number; tiled?: boolean; to?: "varying" | "invarying" } = {}): T {
  const op = "all_gather";
  const names = axisNames(op, axisName);
  const n = boundSize(op, names);
  const tiled = opts.tiled ?? false;
  const to = opts.to ?? "varying";
  if (to !== "varying" && to !== "invarying") throw traceError(op, `to must be "varying" or "invarying", got ${describe(to)}`);
  return perLeaf(op, x, (t) => {
    const axis = normAxis(op, opts.axis ?? 0, tiled ? t.ndim : t.ndim + 1);
    const shape = [...t.shape];
    if (tiled) shape[axis] = shape[axis]! * n;
    else shape.splice(axis, 0, n);
    return bind1(op, [t], { axis_name: names, all_gather_dimension: axis, tiled, to }, { dtype: t.dtype, shape, weak: t.weak });
  });
}

/**
 * `lax.psumScatter(x, axisName, {scatterDimension, tiled})`: the psum, of
 * which each member keeps its block along `scatterDimension` (whose size
 * must equal the axis size, or with `tiled` be divisible by it).
 */
export function psumScatter<T>(x: T, axisName: AxisName, opts: { scatterDimension?: number; tiled?: boolean } = {}): T {
  const op = "psum_scatter";
  const names = axisNames(op, axisName);
  const n = boundSize(op, names);
  const tiled = opts.tiled ?? false;
  return perLeaf(op, x, (t) => {
    numeric("psum_scatter")(t);
    if (t.ndim === 0) throw traceError(op, `needs an array with an axis to scatter, got ${showAval(t.aval)}`);
    const d = normAxis(op, opts.scatterDimension ?? 0, t.ndim);
    const shape = [...t.shape];
    if (tiled) {
      if (shape[d]! % n !== 0) throw traceError(op, `scatter dimension ${d} of ${showAval(t.aval)} must be divisible by the size ${n} of ${names.join(", ")}`);
      shape[d] = shape[d]! / n;
    } else {
      if (shape[d] !== n) throw traceError(op, `scatter dimension ${d} of ${showAval(t.aval)} must equal the size ${n} of ${names.join(", ")} (or pass tiled: true)`);
      shape.splice(d, 1);
    }
    return bind1(op, [t], { axis_name: names, scatter_dimension: d, tiled }, { dtype: t.dtype, shape, weak: t.weak });
  });
}

/**
 * `lax.ppermute(x, axisName, perm)`: member `src` sends its `x` to member
 * `dst` for each `[src, dst]`; members nobody sends to get zeros.
 */
export function ppermute<T>(x: T, axisName: AxisName, perm: readonly (readonly [number, number])[]): T {
  const op = "ppermute";
  const names = axisNames(op, axisName);
  const n = boundSize(op, names);
  const order = [...requireTrace(op).axisEnv.keys()];
  if (names.some((a, i) => i > 0 && order.indexOf(a) < order.indexOf(names[i - 1]!))) {
    throw traceError(op, `axis names ${names.join(", ")} must come in the mesh's order (${order.filter((a) => names.includes(a)).join(", ")}), as jax.lax.ppermute requires`);
  }
  if (!Array.isArray(perm)) throw traceError(op, `perm must be a list of [source, destination] pairs, got ${describe(perm, "kind")}`);
  const srcs = new Set<number>();
  const dsts = new Set<number>();
  const pairs = perm.map((p, i) => {
    if (!Array.isArray(p) || p.length !== 2 || !p.every((v) => Number.isSafeInteger(v) && v >= 0 && v < n)) {
      throw traceError(op, `perm[${i}] must be a [source, destination] pair of indices below the axis size ${n}, got ${describe(p)}`);
    }
    if (srcs.has(p[0]) || dsts.has(p[1])) throw traceError(op, `perm must be a permutation: ${srcs.has(p[0]) ? `source ${p[0]}` : `destination ${p[1]}`} appears twice`);
    srcs.add(p[0]);
    dsts.add(p[1]);
    return [p[0], p[1]];
  });
  return perLeaf(op, x, (t) => bind1(op, [t], { axis_name: names, perm: pairs }, { dtype: t.dtype, shape: t.shape, weak: t.weak }));
}

/**
 * `lax.allToAll(x, axisName, splitAxis, concatAxis, {tiled})`: each member
 * splits `x` along `splitAxis` into axis-size blocks, sends block `i` to
 * member `i`, and concatenates what it gets along `concatAxis`. Untiled,
 * the split axis must have the axis size and is removed, and a new axis of
 * that size appears at `concatAxis` (counted after the removal), as in JAX.
 */
export function allToAll<T>(x: T, axisName: AxisName, splitAxis: number, concatAxis: number, opts: { tiled?: boolean } = {}): T {
  const op = "all_to_all";
  const names = axisNames(op, axisName);
  const n = boundSize(op, names);
  const tiled = opts.tiled ?? false;
  return perLeaf(op, x, (t) => {
    if (t.ndim === 0) throw traceError(op, `needs an array with axes, got ${showAval(t.aval)}`);
    const split = normAxis(op, splitAxis, t.ndim);
    const concat = normAxis(op, concatAxis, t.ndim);
    let shape = [...t.shape];
    if (tiled) {
      if (shape[split]! % n !== 0) throw traceError(op, `split axis ${split} of ${showAval(t.aval)} must be divisible by the size ${n} of ${names.join(", ")}`);
      shape[split] = shape[split]! / n;
      shape[concat] = shape[concat]! * n;
    } else {
      if (shape[split] !== n) throw traceError(op, `split axis ${split} of ${showAval(t.aval)} must equal the size ${n} of ${names.join(", ")} (or pass tiled: true)`);
      if (split !== concat) {
        shape = shape.filter((_, i) => i !== split);
        shape.splice(concat, 0, n);
      }
    }
    return bind1(op, [t], { axis_name: names, split_axis: split, concat_axis: concat, tiled }, { dtype: t.dtype, shape, weak: t.weak });
  });
}

/** `lax.axisIndex(axisName)`: this member's index along the named axes (an int32 scalar; for several axes, the index in their product, major first). */
export function axisIndex(axisName: AxisName): Tracer {
  const op = "axis_index";
  const names = axisNames(op, axisName);
  boundSize(op, names);
  return bind1(op, [], { axis_name: names }, { dtype: "int32", shape: [] });
}

/** `lax.axisSize(axisName)`: the size of the named axes, a JS number known while tracing. */
export function axisSize(axisName: AxisName): number {
  const op = "axis_size";
  return boundSize(op, axisNames(op, axisName));
}
