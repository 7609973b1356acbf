/**
 * equinox's filtered transformations: `filterGrad`, `filterValueAndGrad`,
 * `filterVmap`, `filterJit`. They take any pytree, a `Module` included,
 * and decide by leaf what to transform, as equinox does:
 *
 * - `filterGrad(f)(x, ...args)` differentiates with respect to the inexact
 *   array leaves of the first argument only (`eqx.is_inexact_array`). The
 *   gradient has `x`'s structure, `null` where equinox has None: integer
 *   and bool arrays, JS numbers (a Python float is not an array), and every
 *   other non-array leaf. A Module's static fields stay in the structure.
 *   A RemoteModule's gradient is a RemoteModule of the same Python
 *   structure with DeviceArrays in it (its PyRefs, the functions inside
 *   the Python module, become `null`, as equinox gives None there), so it
 *   can be sent back to Python like the module itself.
 * - `filterVmap(f, {inAxes, outAxes})` maps every array leaf along axis 0
 *   by default (`eqx.if_array(0)`) and leaves everything else alone.
 * - `filterJit` is `jit`: array leaves are traced, every other leaf is
 *   static, which is equinox's rule.
 *
 * Each works inside traced functions (returning tracers) and at top level
 * (a jitted program, a Promise of DeviceArrays).
 */

import { isInexact } from "../values/dtype.js";
import { isArray } from "../values/tree.js";
import { isArrayLeaf } from "../trace/core.js";
import { traceError } from "../trace/errors.js";
import { jit } from "../trace/jit.js";
import type { Staged } from "../trace/staged.js";
import type { DeviceResult, Fn, TracerTree } from "../trace/types.js";
import { gradFlat } from "../trace/lib/transforms-flat.js";
import { argTree, type AxisSpec, cachedJit, flattenArgs, flattenOut, type FlatOut, type Lift, pair, rebuildArgs, rebuildOut, vmapWith, type VmapOptions } from "../trace/lib/transforms.js";

/** `eqx.is_inexact_array`: an array (tracer, host or device) of a floating or complex dtype. */
export function isInexactArray(x: unknown): boolean {
  return isArrayLeaf(x) && isInexact(x.dtype);
}

/** `eqx.if_array(axis)`: an axis spec that maps array leaves along `axis` and leaves the rest unmapped. */
export function ifArray(axis: number): (leaf: unknown) => number | null {
  return (leaf) => (isArray(leaf) ? axis : null);
}

/** A gradient tree as equinox returns it: the argument's structure, arrays where it had inexact arrays, `null` elsewhere. */
export type FilterGradOf<T> = T extends readonly unknown[] ? { [K in keyof T]: FilterGradOf<T[K]> } : T extends object ? { [K in keyof T]: FilterGradOf<T[K]> | null } : null;

const fnName = (f: unknown): string => (typeof f === "function" && f.name) || "fun";

export interface FilterGradOptions {
  /** `f` returns `[value, aux]`. */
  hasAux?: boolean;
}

function filterGradTree(op: string, f: Fn, opts: FilterGradOptions, withValue: boolean, args: unknown[]): unknown {
  if (args.length === 0) throw traceError(op, "the function needs at least one argument: the first is the one differentiated");
  // Every array leaf is an operand; only the inexact ones of the first argument are differentiated.
  const fa = flattenArgs(args, () => "static");
  const diff = fa.operands.map((o, k) => fa.argOf[k] === 0 && isInexactArray(o));
  const argnums = diff.flatMap((d, k) => (d ? [k] : []));
  let auxOut: FlatOut | null = null;
  const call = (xs: unknown[]) => {
    const res = (f as (...a: unknown[]) => unknown)(...rebuildArgs(fa, xs));
    const [out, aux] = opts.hasAux ? pair(op, res, "value") : [res, null];
    auxOut = opts.hasAux ? flattenOut(aux) : null;
    return [out, auxOut?.arrays ?? []] as const;
  };
  if (argnums.length === 0) {
    // Nothing to differentiate (equinox: a gradient of all None); the value is still computed.
    const [out, auxArrays] = call(fa.operands as unknown[]);
    const grads = argTree(fa, args, 0, () => null, () => null);
    const aux = auxOut === null ? undefined : rebuildOut(auxOut, auxArrays as unknown[]);
    const v = opts.hasAux ? [out, aux] : out;
    return withValue ? [v, grads] : opts.hasAux ? [grads, aux] : grads;
  }
  const r = gradFlat(
    (xs) => {
      const [out, auxArrays] = call(xs);
      if (!isArrayLeaf(out) && typeof out !== "number") {
        throw traceError(op, `Gradient only defined for scalar-output functions. Output was not an array: return one scalar array${opts.hasAux ? " as the first element" : ""}`);
      }
      return [[out as never], auxArrays];
    },
    fa.operands,
    { argnums, withValue, op, names: fa.names },
  );
  const slot = new Map(argnums.map((k, i) => [k, i]));
  const grads = argTree(fa, args, 0, (k) => (slot.has(k) ? r.grads[slot.get(k)!] : null), () => null);
  const aux = auxOut === null ? undefined : rebuildOut(auxOut, r.aux);
  if (withValue) return [opts.hasAux ? [r.value, aux] : r.value, grads];
  return opts.hasAux ? [grads, aux] : grads;
}

type FilterArgs<A extends unknown[]> = { [K in keyof A]: Lift<A[K]> | A[K] };

/**
 * `eqx.filter_value_and_grad(f, has_aux)`: `[value, grads]` where `grads`
 * has the first argument's structure with the gradient at each inexact
 * array leaf and `null` everywhere else (with `hasAux`, `[[value, aux],
 * grads]`).
 */
export function filterValueAndGrad<A extends unknown[], R>(
  f: (...args: A) => R,
  opts: FilterGradOptions = {},
): <B extends FilterArgs<A>>(...args: B) => Staged<B, [TracerTree<R>, TracerTree<FilterGradOf<A[0]>>], [DeviceResult<R>, DeviceResult<FilterGradOf<A[0]>>]> {
  if (typeof f !== "function") throw traceError("filterValueAndGrad", "expected a function to transform");
  return cachedJit(f, `filterValueAndGrad${JSON.stringify(opts)}`, `filterValueAndGrad(${fnName(f)})`, (...args) =>
    filterGradTree("filterValueAndGrad", f as Fn, opts, true, args),
  ) as never;
}

/**
 * `eqx.filter_grad(f, has_aux)`: the gradient with respect to the inexact
 * array leaves of the first argument, shaped like it (`null` at every
 * other leaf). With `hasAux`, `[grads, aux]`.
 */
export function filterGrad<A extends unknown[], R>(
  f: (...args: A) => R,
  opts: FilterGradOptions = {},
): <B extends FilterArgs<A>>(...args: B) => Staged<B, TracerTree<FilterGradOf<A[0]>>, DeviceResult<FilterGradOf<A[0]>>> {
  if (typeof f !== "function") throw traceError("filterGrad", "expected a function to transform");
  return cachedJit(f, `filterGrad${JSON.stringify(opts)}`, `filterGrad(${fnName(f)})`, (...args) => filterGradTree("filterGrad", f as Fn, opts, false, args)) as never;
}

export interface FilterVmapOptions extends Omit<VmapOptions, "inAxes" | "outAxes"> {
  /** One spec for all arguments or a JS array with one per argument; leaves are axes, null, or functions of the leaf (`ifArray(0)`, the default). */
  inAxes?: AxisSpec | readonly unknown[] | Record<string, unknown>;
  /** A prefix of the output; default `ifArray(0)`. Non-array outputs are returned as they are. */
  outAxes?: AxisSpec | readonly unknown[] | Record<string, unknown>;
}

/**
 * `eqx.filter_vmap(f, in_axes, out_axes, axis_name, axis_size)`: vmap
 * whose specs may be functions of each leaf; by default every array leaf
 * is mapped along axis 0 and everything else is left as it is.
 */
export function filterVmap<A extends unknown[], R>(f: (...args: A) => R, opts: FilterVmapOptions = {}): <B extends FilterArgs<A>>(...args: B) => Staged<B, TracerTree<R>, DeviceResult<R>> {
  if (typeof f !== "function") throw traceError("filterVmap", "expected a function to transform");
  return vmapWith("filterVmap", f as Fn, opts as VmapOptions, { inAxes: ifArray(0), outAxes: ifArray(0) }) as never;
}

/** `eqx.filter_jit(f)`: `jit`, whose rule is equinox's (array leaves traced, every other leaf static). */
export const filterJit = jit;
