/**
 * Tree types at the boundary of a traced function: what a caller may pass
 * where the function takes a Tracer, what the function sees, and what a
 * top-level call resolves to. Types only; `jit` and lerax's utilities share
 * them.
 */
import type { DeviceArray } from "../values/device-array.js";
import type { NDArray } from "../values/ndarray.js";
import type { Tracer } from "./tracer.js";

/** A leaf that is an array: traced inside a function, host or device outside. */
export type ArrayLeaf = Tracer | NDArray | DeviceArray;
export type Fn = (...args: never[]) => unknown;
export type Primitive = string | number | boolean | bigint | symbol | null | undefined;

/** `T` with every array leaf's type replaced by `L`, functions and primitives kept, arrays and objects mapped. */
export type MapArrayLeaves<T, L> = T extends ArrayLeaf
  ? L
  : T extends Fn | Primitive
    ? T
    : T extends readonly unknown[]
      ? { [K in keyof T]: MapArrayLeaves<T[K], L> }
      : T extends object
        ? { [K in keyof T]: MapArrayLeaves<T[K], L> }
        : T;

/** A tree as a traced function sees it: array leaves are Tracers. */
export type TracerTree<T> = MapArrayLeaves<T, Tracer>;

/** A tree as a top-level call returns it: array leaves are DeviceArrays. */
export type DeviceResult<T> = MapArrayLeaves<T, DeviceArray>;

/** A tree as a top-level call with `fetch: true` returns it: array leaves are NDArrays. */
export type HostResult<T> = MapArrayLeaves<T, NDArray>;

/**
 * What a caller may pass where the traced function takes an array: any
 * array (a host NDArray, a DeviceArray, or a Tracer when the call is inside
 * another trace). Everything else is passed as typed (a static leaf).
 */
export type ArgTree<T> = MapArrayLeaves<T, ArrayLeaf>;
