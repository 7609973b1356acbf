/**
 * lerax's callback utilities: compiled code calls back into TypeScript.
 *
 * `callbackWrapper(fn, {ordered, partitioned})` returns a function to call
 * inside traced code (jit, filterScan, filterCond bodies) with any pytree of
 * arrays and static values. It records one `callback` equation whose inputs
 * are the array leaves; the sidecar lowers it to `jax.debug.callback`. At run
 * time each invocation becomes an event sent to this session, which calls
 * `fn` with the arguments rebuilt: arrays as host `NDArray`s, static leaves
 * exactly as they were passed (they never left TypeScript).
 *
 * - The program names a callback by its position in the traced program
 *   (first seen = 0), never by the JS function: the bytes and hash do not
 *   depend on function identity, and the TypeScript side keeps the table.
 * - `ordered: true`: `fn` sees events in program order across the whole
 *   call (inside scans and conds too), each call awaited before the next.
 *   Unordered callbacks may run concurrently; none is lost.
 * - A top-level call resolves only after every event was delivered and every
 *   `fn` returned (a returned promise is awaited); if `fn` throws or rejects,
 *   the call rejects with that error once the sidecar finished the run.
 * - `chunk` (default 128): inside a scan the program holds up to that many
 *   events back and hands them to the host in one call (the sidecar's
 *   chunking.py), which is what makes ordered callbacks fast; `chunk: 1`
 *   delivers each event live. Order, arrays and errors are unchanged.
 * - `partitioned: true` delivers each local shard of a sharded array (one
 *   event per shard); `false` the whole (gathered) array. JAX refuses
 *   `ordered` callbacks on programs over several devices.
 * - Difference from lerax: a JS number is static (as a Python float is for
 *   `eqx.is_array`), so it reaches `fn` as the number; `jax.debug.callback`
 *   would turn a Python int into an array. Pass an array to get an array.
 *
 * Outside a traced function the wrapper just calls `fn` now (as lerax's
 * wrapper does eagerly), converting NDArray leaves as its variant says.
 */

import ndarray from "ndarray";
import type { NdArray } from "ndarray";
import { NDArray, type NestedArray } from "../values/ndarray.js";
import { flatten, isArray, unflatten, type TreeDef } from "../values/tree.js";
import type { HostCallback } from "../session/callback-events.js";
import { asTracer, bind, currentTrace, rootTrace } from "../trace/core.js";
import type { Tracer } from "../trace/tracer.js";
import { dtypeInfo } from "../values/dtype.js";

export interface CallbackOptions {
  /** Deliver in program order, each awaited before the next (default false). */
  ordered?: boolean;
  /** Deliver local shards instead of gathered arrays (default false). */
  partitioned?: boolean;
  /**
   * Inside a scan, how many of this callback's events the compiled program
   * may hold back and hand to the host at once (default
   * `DEFAULT_CALLBACK_CHUNK`). Events, their arrays and their order are the
   * same; they only arrive up to one chunk later. `1` delivers each event
   * as its step runs (the opt-out, for a callback that must see each step
   * live). See src/trace/README.md, "Callback chunks".
   */
  chunk?: number;
}

/**
 * Events held back per host call in a scan: at the 50,000+ events/s the
 * chunks reach, a scan of cheap steps delivers hundreds of times a second,
 * and a scan of 1 ms steps about 8 times a second (a progress bar still moves).
 */
export const DEFAULT_CALLBACK_CHUNK = 128;

/** Above this a chunk's stacked arguments would rarely fit the device; the sidecar caps by bytes too. */
const MAX_CALLBACK_CHUNK = 1 << 20;

type AnyFn = (...args: never[]) => unknown;

function makeWrapper(fn: AnyFn, opts: CallbackOptions, convert: (a: NDArray) => unknown, name: string): (...args: unknown[]) => void {
  if (typeof fn !== "function") throw new TypeError(`${name}: fn must be a function`);
  const ordered = opts.ordered === true;
  const partitioned = opts.partitioned === true;
  const chunk = opts.chunk ?? DEFAULT_CALLBACK_CHUNK;
  if (!Number.isSafeInteger(chunk) || chunk < 1 || chunk > MAX_CALLBACK_CHUNK) {
    throw new RangeError(`${name}: option chunk must be an integer from 1 (each event live) to ${MAX_CALLBACK_CHUNK}, got ${String(opts.chunk)}`);
  }
  const wrapped = (...args: unknown[]): void => {
    const { leaves, treedef } = flatten(args);
    if (currentTrace() === undefined) {
      // Eager, as lerax's wrapper is outside jit.
      (fn as (...a: unknown[]) => unknown)(...(unflatten(treedef, leaves.map((l) => (l instanceof NDArray ? convert(l) : l))) as unknown[]));
      return;
    }
    const root = rootTrace()!;
    const slots: number[] = [];
    const operands: Tracer[] = [];
    leaves.forEach((l, i) => {
      if (isArray(l)) {
        slots.push(i);
        operands.push(asTracer(name, l as never));
      }
    });
    const id = root.callbacks.length;
    root.callbacks.push(hostCallback(fn, ordered, treedef, leaves, slots, convert));
    bind("callback", operands, { callback: id, ordered, partitioned, chunk }, []);
  };
  Object.defineProperty(wrapped, "name", { value: `${name}(${fn.name || "fn"})` });
  return wrapped;
}

function hostCallback(fn: AnyFn, ordered: boolean, treedef: TreeDef, leaves: readonly unknown[], slots: readonly number[], convert: (a: NDArray) => unknown): HostCallback {
  // Keep only static leaves: tracers must not outlive their trace.
  const statics = leaves.map((l, i) => (slots.includes(i) ? undefined : l));
  return {
    ordered,
    deliver(arrays: NDArray[]): unknown {
      if (arrays.length !== slots.length) throw new Error(`callback event carries ${arrays.length} arrays, the call site passed ${slots.length}`);
      const rebuilt = [...statics];
      slots.forEach((slot, k) => (rebuilt[slot] = convert(arrays[k]!)));
      return (fn as (...a: unknown[]) => unknown)(...(unflatten(treedef, rebuilt) as unknown[]));
    },
  };
}

/** `lerax.utils.callback_wrapper`: `fn` receives host `NDArray`s and the static leaves as they were. */
export function callbackWrapper<A extends unknown[]>(fn: (...args: A) => unknown, opts: CallbackOptions = {}): (...args: unknown[]) => void {
  return makeWrapper(fn as AnyFn, opts, (a) => a, "callbackWrapper");
}

/**
 * `lerax.utils.callback_with_numpy_wrapper`: array leaves arrive as scijs
 * `ndarray` views. scijs rather than @stdlib/ndarray: it is small (one file,
 * no dependency tree), the de-facto standard n-d view type of the JS
 * ecosystem (ndarray-ops, ndarray-pack, zeros, ...), and its constructor
 * wraps an existing TypedArray with shape and strides without copying.
 * The view shares the NDArray's TypedArray (zero-copy); float16/bfloat16
 * (no native TypedArray on Node 20) are decoded into a Float32Array copy;
 * complex arrays are viewed as float pairs with a trailing axis of 2.
 */
export function callbackWithNumpyWrapper(fn: (...args: never[]) => unknown, opts: CallbackOptions = {}): (...args: unknown[]) => void {
  return makeWrapper(fn as AnyFn, opts, toScijs, "callbackWithNumpyWrapper");
}

export function toScijs(a: NDArray): NdArray {
  const shape = [...a.shape];
  if (a.dtype === "float16" || a.dtype === "bfloat16") {
    const out = new Float32Array(a.size);
    for (let i = 0; i < a.size; i++) out[i] = a.flatItem(i) as number;
    return ndarray(out, shape);
  }
  if (dtypeInfo(a.dtype).lanes === 2) return ndarray(a.data as never, [...shape, 2]);
  return ndarray(a.data as never, shape);
}

/**
 * `lerax.utils.callback_with_list_wrapper`: array leaves arrive as nested JS
 * arrays, numpy's `tolist()`: booleans, numbers; 64-bit integers as numbers
 * when exactly representable (|x| <= 2^53 - 1) and as BigInt otherwise; half
 * floats decoded; complex as `{re, im}`. A 0-d array becomes a scalar.
 */
export function callbackWithListWrapper(fn: (...args: never[]) => unknown, opts: CallbackOptions = {}): (...args: unknown[]) => void {
  return makeWrapper(fn as AnyFn, opts, (a): NestedArray => a.toList(), "callbackWithListWrapper");
}

/** `console.log` through the list wrapper, ordered: `printCallback("loss", loss)` inside traced code. */
export const printCallback: (...args: unknown[]) => void = callbackWithListWrapper((...args: unknown[]) => console.log(...args), { ordered: true });
