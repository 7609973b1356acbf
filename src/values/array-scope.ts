/**
 * Where DeviceArrays are counted as they are made, for `jb.tidy` and
 * `jb.scope` (session/memory.ts): an `AsyncLocalStorage` holds the innermost
 * open frame, so an array made after an `await` inside a scope still counts
 * in it (`tf.tidy` could not follow async code; this can). This module only
 * records; the session layer frees.
 */
import { AsyncLocalStorage } from "node:async_hooks";

/** What a frame needs of an array: to free it. */
export interface Disposable {
  dispose(): void;
}

/** One open `tidy` / `scope`: the arrays made while it is current. */
export class ArrayFrame {
  readonly made = new Set<Disposable>();
  closed = false;
  constructor(readonly parent: ArrayFrame | undefined) {}

  /** The nearest open frame from here outwards (a `scope` left by one context may linger in another). */
  open(): ArrayFrame | undefined {
    let f: ArrayFrame | undefined = this;
    while (f !== undefined && f.closed) f = f.parent;
    return f;
  }
}

export const frames = new AsyncLocalStorage<ArrayFrame>();

/** Arrays no frame frees (`jb.keep`). */
export const kept = new WeakSet<Disposable>();

/** Called by every DeviceArray as it is made. */
export function trackArray(a: Disposable): void {
  const f = frames.getStore()?.open();
  if (f !== undefined) f.made.add(a);
}
