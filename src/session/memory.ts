/**
 * Memory a user can reason about, now that eager chains make intermediates:
 *
 * - `await jb.tidy(async () => ...)` frees every DeviceArray made while it
 *   runs, except those in its result (they move to the enclosing scope) and
 *   those passed to `jb.keep`. Built on `AsyncLocalStorage`
 *   (values/array-scope.ts), so it follows the function across `await`s and
 *   into the promises it starts, which `tf.tidy` could not.
 * - `using scope = jb.scope()` does the same for the rest of a block: the
 *   arrays made until the block ends are freed then, except those passed to
 *   `scope.keep(x)` (which move to the enclosing scope) or to `jb.keep`. It
 *   enters its frame for the current execution context, so code that runs
 *   in that context while the block is open (a caller that did not await
 *   the function holding the block) counts in it too; `tidy` has no such
 *   reach.
 * - `jb.memory()` (Session.memory) is the sidecar's own accounting (the
 *   `memory` op): arrays, bytes per device and the peak; `jb.sync()` waits
 *   until every operation dispatched so far has run.
 *
 * Freeing an array whose producing request has not run yet is safe: the
 * free is sent after that request and the sidecar runs them in order.
 */
import { ArrayFrame, type Disposable, frames, kept } from "../values/array-scope.js";
import { DeviceArray } from "../values/device-array.js";
import { flatten } from "../values/tree.js";

/** Free every array `frame` counted except `spare`, which moves to the enclosing open frame. */
function closeFrame(frame: ArrayFrame, spare: ReadonlySet<Disposable>): void {
  frame.closed = true;
  const outer = frame.parent?.open();
  for (const a of frame.made) {
    if (spare.has(a)) outer?.made.add(a);
    else if (!kept.has(a)) a.dispose();
  }
  frame.made.clear();
}

/** The DeviceArrays in a value (a pytree of any depth), e.g. what a tidy function returned. */
function deviceArraysIn(value: unknown): Set<Disposable> {
  const out = new Set<Disposable>();
  if (value instanceof DeviceArray) out.add(value);
  else if (value !== null && typeof value === "object") {
    for (const leaf of flatten(value).leaves) if (leaf instanceof DeviceArray) out.add(leaf);
  }
  return out;
}

/**
 * Run `fn` and free every DeviceArray made while it runs (across its
 * `await`s), except those in its result and those passed to `keep`.
 * Returned arrays belong to the enclosing tidy or scope, if any.
 */
export async function tidy<T>(fn: () => T | Promise<T>): Promise<T> {
  const frame = new ArrayFrame(frames.getStore()?.open());
  let result: T;
  try {
    result = await frames.run(frame, fn);
  } catch (e) {
    closeFrame(frame, new Set());
    throw e;
  }
  closeFrame(frame, deviceArraysIn(result));
  return result;
}

/** A block's scope of arrays (`using scope = jb.scope()`); see the module comment. */
export class ArrayScope implements Disposable {
  readonly #frame: ArrayFrame;
  readonly #enclosing: ArrayFrame | undefined;
  readonly #spare = new Set<Disposable>();

  constructor() {
    this.#enclosing = frames.getStore();
    this.#frame = new ArrayFrame(this.#enclosing?.open());
    frames.enterWith(this.#frame);
  }

  /** Keep `value`'s DeviceArrays past this scope: they move to the enclosing scope (or to no scope). Returns `value`. */
  keep<T>(value: T): T {
    for (const a of deviceArraysIn(value)) this.#spare.add(a);
    return value;
  }

  /** DeviceArrays made in this scope so far and not freed with it. */
  get size(): number {
    return this.#frame.made.size;
  }

  /** Free the scope's arrays (what `using` calls at the end of the block). Idempotent. */
  dispose(): void {
    if (this.#frame.closed) return;
    closeFrame(this.#frame, this.#spare);
    if (frames.getStore() === this.#frame) frames.enterWith(this.#enclosing!);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** `using scope = jb.scope()`: free the DeviceArrays made until the block ends. */
export function scope(): ArrayScope {
  return new ArrayScope();
}

/** Exempt `value`'s DeviceArrays from every tidy and scope (they are freed by `dispose()` or when dropped). Returns `value`. */
export function keep<T>(value: T): T {
  for (const a of deviceArraysIn(value)) kept.add(a);
  return value;
}
