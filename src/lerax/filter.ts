/**
 * lerax's `filter_cond` and `filter_scan` inside traced functions, on
 * pytrees: array leaves (tracers, DeviceArrays, NDArrays) are traced,
 * everything else is static and stays in TypeScript.
 *
 * - `filterCond(pred, trueFun, falseFun, ...args)`: both branches are traced;
 *   their static outputs must be equal (a TraceError names the first
 *   differing key path and both values, where lerax raises ValueError) and
 *   their array outputs must agree in structure, shape and dtype. One
 *   `cond` equation: only the taken branch runs.
 * - `filterScan(f, init, xs?, opts)`: static parts of the carry stay here and
 *   must come out of `f` unchanged (an error naming the path, where lerax
 *   asserts); `xs` leaves are arrays whose leading axes agree.
 *
 * At top level (outside any trace) these are wired to the session by
 * utils.ts, through jit; here they only build equations.
 */

import { describe, describeAs } from "../values/describe.js";
import { DeviceArray } from "../values/device-array.js";
import { NDArray } from "../values/ndarray.js";
import { combine, firstDifference, flatten, isArray, keystr, partition, type TreeDef, unflatten, flattenWithPath } from "../values/tree.js";
import { isArrayLeaf, requireTrace } from "../trace/core.js";
import { condFlat, type ScanOptions, scanFlat } from "../trace/lib/control.js";
import { traceError } from "../trace/errors.js";
import { isJsScalar } from "../trace/dtypes.js";
import { Tracer } from "../trace/tracer.js";

/** Marks where an array leaf was, so two output trees compare on structure and statics only. */
class ArraySlot {
  [describeAs](): string {
    return "an array";
  }
}
const ARRAY_SLOT = new ArraySlot();

interface Split {
  dynamic: (Tracer | DeviceArray | NDArray)[];
  /** Key path of each dynamic leaf in the tree (`['params'].w`), for errors that name it as JAX does. */
  paths: string[];
  dynDef: TreeDef;
  statics: unknown;
  /** The tree with each array leaf replaced by ARRAY_SLOT: what must agree between branches. */
  skeleton: unknown;
}

function split(tree: unknown): Split {
  const [dyn, statics] = partition(tree, isArray);
  const { leaves, treedef } = flatten(dyn);
  const dynamic = leaves.filter((l) => l !== null && l !== undefined) as (Tracer | DeviceArray | NDArray)[];
  const paths = flattenWithPath(tree)
    .leaves.filter(({ value }) => isArray(value))
    .map(({ path }) => keystr(path));
  const skeleton = combine(unflatten(treedef, leaves.map((l) => (isArrayLeaf(l) ? ARRAY_SLOT : l))), statics);
  return { dynamic, paths, dynDef: treedef, statics, skeleton };
}

/**
 * `lerax.utils.filter_cond` inside a traced function. Returns the output
 * pytree with traced array leaves and the (shared) static leaves. The
 * predicate and the array outputs follow `lax.cond`'s rules (condFlat);
 * errors name an output by its key path in trueFun's output tree.
 */
export function filterCond<A extends unknown[], R>(pred: unknown, trueFun: (...args: A) => R, falseFun: (...args: A) => R, ...args: A): R {
  const op = "filterCond";
  requireTrace(op);
  if (!(isArrayLeaf(pred) || isJsScalar(pred))) {
    throw traceError(op, `Pred type must be either boolean or number, got ${describe(pred, "kind")}`);
  }
  const inSplit = split(args);
  const outs: { trueFun?: Split; falseFun?: Split } = {};
  const run = (fun: (...a: A) => R, name: "trueFun" | "falseFun") => (...ops: Tracer[]) => {
    const rebuilt = combine(unflatten(inSplit.dynDef, ops), inSplit.statics) as A;
    const out = split(fun(...rebuilt));
    outs[name] = out;
    // condFlat traces trueFun first, as lerax calls it first: compare once both exist, before condFlat compares the arrays.
    if (outs.trueFun && outs.falseFun) {
      const diff = firstDifference(outs.trueFun.skeleton, outs.falseFun.skeleton);
      if (diff !== null) {
        throw traceError(
          op,
          `the non-array outputs of trueFun and falseFun must be identical; they differ at ${diff.path || "the top level"}: trueFun gives ${diff.left}, falseFun gives ${diff.right}`,
        );
      }
    }
    return out.dynamic;
  };
  const results = condFlat(pred as Tracer, run(trueFun, "trueFun"), run(falseFun, "falseFun"), inSplit.dynamic, { op, outPath: (k) => outs.trueFun!.paths[k]! });
  const tOut = outs.trueFun!;
  return combine(unflatten(tOut.dynDef, results), tOut.statics) as R;
}

export interface FilterScanOptions extends ScanOptions {}

/**
 * `lerax.utils.filter_scan` inside a traced function: `f(carry, x) -> [carry, y]`.
 * Returns `[finalCarry, stackedYs]`.
 */
export function filterScan<C, X, Y>(f: (carry: C, x: X) => readonly [C, Y], init: C, xs?: X | null, opts: FilterScanOptions = {}): [C, Y] {
  const op = "filterScan";
  requireTrace(op);
  const initSplit = split(init);
  const xsFlat = xs === undefined || xs === null ? { leaves: [] as { path: unknown; value: unknown }[], treedef: flatten(null).treedef } : flattenWithPath(xs);
  const xsLeaves = xsFlat.leaves.map(({ path, value }) => {
    if (!isArrayLeaf(value)) throw traceError(op, `xs leaves must be arrays; xs${keystr(path as never)} is ${describe(value, "kind")}`);
    return value;
  });
  let yDef: TreeDef | null = null;
  const { carry, ys } = scanFlat(
    (c, x) => {
      const carryTree = combine(unflatten(initSplit.dynDef, c), initSplit.statics) as C;
      const xTree = (xs === undefined || xs === null ? xs : unflatten(xsFlat.treedef, x)) as X;
      const r = f(carryTree, xTree);
      if (!Array.isArray(r) || r.length !== 2) throw traceError(op, `f must return [carry, y], got ${describe(r, "kind")}`);
      const out = split(r[0]);
      const diff = firstDifference(initSplit.skeleton, out.skeleton);
      if (diff !== null) {
        throw traceError(
          op,
          `the non-array part of the carry must not change; it differs at ${diff.path || "the top level"}: init has ${diff.left}, f returned ${diff.right}`,
        );
      }
      const yFlat = flattenWithPath(r[1]);
      yDef = yFlat.treedef;
      const yLeaves = yFlat.leaves.map(({ path, value }) => {
        if (isArrayLeaf(value) || isJsScalar(value)) return value;
        throw traceError(op, `y leaves must be arrays (they are stacked); y${keystr(path)} is ${describe(value, "kind")}`);
      });
      return [out.dynamic, yLeaves as (Tracer | DeviceArray | NDArray)[]];
    },
    initSplit.dynamic,
    xsLeaves,
    opts,
    { op, carryPath: (i) => initSplit.paths[i]!, xsName: (i) => `xs${keystr(xsFlat.leaves[i]!.path as never)}` },
  );
  const finalCarry = combine(unflatten(initSplit.dynDef, carry), initSplit.statics) as C;
  return [finalCarry, unflatten(yDef!, ys) as Y];
}
