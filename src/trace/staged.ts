/**
 * The types of calls that work in both worlds: inside a traced function
 * they return trees of Tracers at once, at top level a Promise of trees of
 * DeviceArrays. A call's result type is chosen from its argument types
 * (see README.md in this folder, "Types"). Types only: shared by the
 * transformations (lib/transforms.ts), lerax's utilities, the equinox
 * filters and the optimizers; the tree-mapping types they return
 * (TracerTree, DeviceResult) are jit's, in types.ts.
 */

import type { DeviceArray } from "../values/device-array.js";
import type { Tracer } from "./tracer.js";
import type { ArrayLeaf, Fn, Primitive } from "./types.js";

/**
 * Whether a tree type certainly holds a Tracer (the call is inside a traced
 * function): a leaf typed exactly `Tracer`. A leaf typed as a union
 * (`NDArray | Tracer`) does not count, so such trees type as top-level calls.
 */
export type HasTracer<T> = 0 extends 1 & T
  ? false
  : [T] extends [never]
    ? false
    : [T] extends [Tracer]
      ? true
      : T extends ArrayLeaf | Fn | Primitive
        ? false
        : T extends readonly unknown[]
          ? true extends { [K in keyof T]: HasTracer<T[K]> }[number]
            ? true
            : false
          : T extends object
            ? true extends { [K in keyof T]-?: HasTracer<T[K]> }[keyof T]
              ? true
              : false
            : false;

/**
 * Whether a tree type may hold a Tracer: some leaf's type includes
 * `Tracer` in a union (`NDArray | Tracer`, a Module field meant for both
 * worlds) or is `any`.
 */
export type MayHaveTracer<T> = 0 extends 1 & T
  ? true
  : [T] extends [never]
    ? false
    : Tracer extends T
      ? true
      : T extends ArrayLeaf | Fn | Primitive
        ? false
        : T extends readonly unknown[]
          ? true extends { [K in keyof T]: MayHaveTracer<T[K]> }[number]
            ? true
            : false
          : T extends object
            ? true extends { [K in keyof T]-?: MayHaveTracer<T[K]> }[keyof T]
              ? true
              : false
            : false;

/**
 * The result of a call that returns `Sync` inside a traced function and a
 * Promise of `Async` at top level: `Sync` when the arguments certainly hold
 * tracers, a Promise when they certainly do not, and both at once when the
 * types cannot tell (use it directly inside a trace, `await` it outside).
 */
export type Staged<Args, Sync, Async> =
  HasTracer<Args> extends true ? Sync : MayHaveTracer<Args> extends true ? Sync & Promise<Async> : Promise<Async>;

/** Whether a tree type may hold a DeviceArray. */
export type HasDevice<T> = 0 extends 1 & T
  ? false
  : T extends DeviceArray
    ? true
    : T extends ArrayLeaf | Fn | Primitive
      ? false
      : T extends readonly unknown[]
        ? true extends { [K in keyof T]: HasDevice<T[K]> }[number]
          ? true
          : false
        : T extends object
          ? true extends { [K in keyof T]-?: HasDevice<T[K]> }[keyof T]
            ? true
            : false
          : false;

/** Stacked outputs of a scan: every leaf (JS scalars included) became an array. */
export type Stacked<T, A> = T extends ArrayLeaf | number | boolean | bigint
  ? A
  : T extends readonly unknown[]
    ? { [K in keyof T]: Stacked<T[K], A> }
    : T extends Fn | Primitive
      ? T
      : T extends object
        ? { [K in keyof T]: Stacked<T[K], A> }
        : T;
