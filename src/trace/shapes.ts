/** Shape arithmetic for the tracer: broadcasting, axes, reshapes. */

import { traceError } from "./errors.js";

export type Shape = readonly number[];

export const showShape = (s: Shape): string => `[${s.join(", ")}]`;

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function prod(s: Shape): number {
  let n = 1;
  for (const d of s) n *= d;
  return n;
}

/** NumPy broadcasting of several shapes, or a TraceError naming the op and every shape. */
export function broadcastShapes(op: string, shapes: readonly Shape[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: number[] = new Array(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const k = rank - s.length + i;
      const d = s[i]!;
      const o = out[k]!;
      if (o === 1) out[k] = d;
      else if (d !== 1 && d !== o) {
        throw traceError(op, `shapes ${shapes.map(showShape).join(" and ")} cannot be broadcast together (axis ${k - rank} has sizes ${o} and ${d})`);
      }
    }
  }
  return out;
}

/** A possibly negative axis made non-negative, or a TraceError. */
export function normAxis(op: string, axis: number, ndim: number): number {
  if (!Number.isInteger(axis) || axis < -ndim || axis >= ndim) {
    throw traceError(op, `axis ${axis} is out of bounds for an array of rank ${ndim}`);
  }
  return axis < 0 ? axis + ndim : axis;
}

export function normAxes(op: string, axes: number | readonly number[] | null | undefined, ndim: number): number[] {
  if (axes === null || axes === undefined) return [...Array(ndim).keys()];
  const list = typeof axes === "number" ? [axes] : [...axes];
  const out = list.map((a) => normAxis(op, a, ndim));
  if (new Set(out).size !== out.length) throw traceError(op, `repeated axis in ${JSON.stringify(list)}`);
  return out;
}

export function checkShape(op: string, shape: Shape): number[] {
  if (!Array.isArray(shape)) throw traceError(op, `shape must be an array of integers, got ${typeof shape}`);
  for (const d of shape) if (!Number.isSafeInteger(d) || d < 0) throw traceError(op, `shape ${JSON.stringify(shape)} has a dimension that is not a non-negative integer`);
  return [...shape];
}

/** Resolve one -1 in a reshape target. */
export function resolveShape(op: string, size: number, shape: Shape): number[] {
  const out = [...shape];
  const free = out.indexOf(-1);
  if (free !== out.lastIndexOf(-1)) throw traceError(op, `can only infer one dimension, got ${showShape(shape)}`);
  if (free >= 0) {
    const known = prod(out.filter((_, k) => k !== free));
    if (known === 0 || size % known !== 0) throw traceError(op, `cannot reshape an array of size ${size} into shape ${showShape(shape)}`);
    out[free] = size / known;
  }
  checkShape(op, out);
  if (prod(out) !== size) throw traceError(op, `cannot reshape an array of size ${size} into shape ${showShape(shape)}`);
  return out;
}
