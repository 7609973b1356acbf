import { inspect } from "node:util";
import type { DType } from "./dtype.js";
import { itemsize } from "./dtype.js";
import type { NDArray, Shape } from "./ndarray.js";
import { shapeSize } from "./ndarray.js";
import { JaxBridgeError } from "./errors.js";
import { describeAs } from "./describe.js";
import { trackArray } from "./array-scope.js";
import { layoutFromWire, type Shard, type Sharding, SingleDeviceSharding, type WireLayout } from "./sharding.js";

/**
 * What a DeviceArray needs from the session that made it: fetching its
 * contents and releasing its handle. Kept as an interface so this module does
 * not depend on the session.
 */
export interface HandleOwner {
  readonly instance: string;
  fetch(a: DeviceArray, opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<NDArray>;
  release(id: number): void;
  readonly closed: boolean;
  /** Wait until the sidecar has computed the array (its producing request may have replied on dispatch). */
  blockUntilReady?(a: DeviceArray): Promise<void>;
  /** The id of the device a handle names by its string form (`cpu:0`), for an array on one device. */
  deviceId?(device: string): number | undefined;
}

/** How an eager operation's result comes into being (see DeviceArray, "Pending"). */
export interface DeviceArrayOptions {
  /** Weakly typed, like a JAX array computed from Python scalars only: it takes its partner's dtype in promotion. */
  weak?: boolean;
  /** The request that produces it, when the array exists here before the sidecar made it (a client-chosen handle). */
  produced?: Promise<unknown>;
}

const noop = (): void => {};

/**
 * A handle to a `jax.Array` that lives in the sidecar, on its device.
 * Results of calls come back as DeviceArrays so that data stays on the
 * accelerator between calls; `toHost()` fetches it.
 *
 * Free it with `dispose()` or `await using`; a FinalizationRegistry frees
 * handles that were dropped without either, batched with other frees.
 *
 * Pending: an eager operation (`x.add(1)`, `jnp.sin(x)` outside a traced
 * function) returns its DeviceArray at once, with its dtype and shape, while
 * the request that makes it is still on its way (JAX's asynchronous
 * dispatch). Such an array can be used as an argument at once; `block()`
 * waits for it, `toHost()` waits and fetches, and both reject with the
 * sidecar's error if the request failed (so do the arrays computed from it).
 */
export class DeviceArray {
  readonly handle: number;
  readonly dtype: DType;
  readonly shape: Shape;
  /** The JAX device as a string, e.g. `cpu:0`, `cuda:0`, or `sharded(4)`. */
  readonly device: string;
  readonly owner: HandleOwner;
  #disposed = false;

  constructor(owner: HandleOwner, handle: number, dtype: DType, shape: Shape, device: string, layout?: WireLayout, opts?: DeviceArrayOptions) {
    this.owner = owner;
    this.handle = handle;
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.device = device;
    this.#layout = layout;
    this.weak = opts?.weak === true;
    if (opts?.produced !== undefined) this.#awaitProducer(opts.produced);
    registry.register(this, { owner, handle }, this);
    trackArray(this);
  }

  // --- eager dispatch (issue 15): weak types, the pending and failed states ------------------

  /** Weakly typed (see DeviceArrayOptions.weak); arrays that came back from a call are not. */
  readonly weak: boolean;
  #ready: Promise<void> | undefined;
  #error: Error | undefined;

  #awaitProducer(produced: Promise<unknown>): void {
    const ready = produced.then(
      () => {
        if (this.#ready === ready) this.#ready = undefined;
      },
      (e: unknown) => {
        this.#error = e instanceof Error ? e : new Error(String(e));
        throw this.#error;
      },
    );
    // A failure surfaces where the array is awaited (or used), never as an unhandled rejection.
    ready.catch(noop);
    this.#ready = ready;
  }

  /** The request that makes this array has not been answered yet. */
  get pending(): boolean {
    return this.#ready !== undefined;
  }

  /** Why the request that was to make this array failed, once known (awaiting the array rejects with it). */
  get error(): Error | undefined {
    return this.#error;
  }

  /**
   * Wait until the sidecar has computed this array (`block_until_ready`);
   * rejects with the error of the request that was to make it.
   */
  async block(): Promise<this> {
    if (this.#error !== undefined) throw this.#error;
    if (this.#ready !== undefined) await this.#ready;
    // The reply may have come on dispatch (docs/protocol.md "Readiness"): ask the sidecar to wait.
    await this.owner.blockUntilReady?.(this);
    return this;
  }

  /** JS arithmetic and comparisons cannot see a device array's values: say what to write instead. */
  [Symbol.toPrimitive](hint: string): string {
    if (hint === "string") return this.toString();
    throw new TypeError(
      `${this.toString()} is not a JS number: \`x + 1\`, \`x > 0\` and \`Number(x)\` cannot see its values. ` +
        "Compute on the device with the array methods (x.add(1), x.gt(0), x.mul(y)) or jnp (jnp.add(x, 1)), " +
        "and read values with await x.toHost().",
    );
  }

  // --- sharding (shard): what the sidecar reported of where the array lies ----------------
  // An array on one device carries no layout on the wire; one on several
  // carries its sharding and its addressable shards, turned into values on
  // first use only.
  #layout: WireLayout | undefined;
  #placed: { sharding: Sharding; shards: readonly Shard[] } | undefined;

  #placement(): { sharding: Sharding; shards: readonly Shard[] } {
    if (this.#placed === undefined) {
      if (this.#layout !== undefined) this.#placed = layoutFromWire(this.#layout);
      else {
        const id = this.owner.deviceId?.(this.device);
        if (id === undefined) throw new JaxBridgeError(`DeviceArray ${this.handle}: device ${this.device} is not among its sidecar's devices`);
        const sharding = new SingleDeviceSharding(id);
        this.#placed = { sharding, shards: sharding.shards(this.shape) };
      }
    }
    return this.#placed;
  }

  /** How the array is laid out over devices (JAX's `x.sharding`). Its shape is global. */
  get sharding(): Sharding {
    return this.#placement().sharding;
  }

  /**
   * The shards on this process's devices (JAX's `x.addressable_shards`):
   * device id, the global slice each holds, replica id and shard shape.
   * In a multi-process job the other processes' shards are not listed.
   */
  get addressableShards(): readonly Shard[] {
    return this.#placement().shards;
  }
  // --- end sharding -----------------------------------------------------------------------

  get ndim(): number {
    return this.shape.length;
  }

  get size(): number {
    return shapeSize(this.shape);
  }

  get nbytes(): number {
    return this.size * itemsize(this.dtype);
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** Fetch the array's contents from the device (after the request that makes it, if it is pending). */
  async toHost(opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<NDArray> {
    if (this.#disposed) throw new JaxBridgeError(`DeviceArray ${this.handle} (${this.dtype}[${this.shape.join(", ")}]) was disposed`);
    if (this.#error !== undefined) throw this.#error;
    // The fetch leaves at once, behind the producing request (the sidecar runs them in order);
    // if that request fails, its own error is the one to report.
    const fetched = this.owner.fetch(this, opts);
    if (this.#ready !== undefined) {
      try {
        await this.#ready;
      } catch (e) {
        fetched.catch(noop);
        throw e;
      }
    }
    return fetched;
  }

  /** Release the device memory. Idempotent; frees are batched on the wire (after the request that makes it, if it is pending). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    registry.unregister(this);
    if (!this.owner.closed) this.owner.release(this.handle);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    const state = this.#disposed ? ", disposed" : this.#error !== undefined ? ", failed" : this.#ready !== undefined ? ", pending" : "";
    return `DeviceArray(${this.dtype}[${this.shape.join(", ")}]${this.weak ? ", weak" : ""}, device=${this.device}, handle=${this.handle}${state})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }

  [describeAs](): string {
    return this.toString();
  }
}

const registry = new FinalizationRegistry<{ owner: HandleOwner; handle: number }>(({ owner, handle }) => {
  if (!owner.closed) owner.release(handle);
});
