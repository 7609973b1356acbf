import { inspect } from "node:util";
import type { DType } from "./dtype.js";
import { itemsize } from "./dtype.js";
import type { NDArray, Shape } from "./ndarray.js";
import { shapeSize } from "./ndarray.js";
import { JaxBridgeError } from "./errors.js";
import { describeAs } from "./describe.js";
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
  /** The id of the device a handle names by its string form (`cpu:0`), for an array on one device. */
  deviceId?(device: string): number | undefined;
}

/**
 * A handle to a `jax.Array` that lives in the sidecar, on its device.
 * Results of calls come back as DeviceArrays so that data stays on the
 * accelerator between calls; `toHost()` fetches it.
 *
 * Free it with `dispose()` or `await using`; a FinalizationRegistry frees
 * handles that were dropped without either, batched with other frees.
 */
export class DeviceArray {
  readonly handle: number;
  readonly dtype: DType;
  readonly shape: Shape;
  /** The JAX device as a string, e.g. `cpu:0`, `cuda:0`, or `sharded(4)`. */
  readonly device: string;
  readonly owner: HandleOwner;
  #disposed = false;

  constructor(owner: HandleOwner, handle: number, dtype: DType, shape: Shape, device: string, layout?: WireLayout) {
    this.owner = owner;
    this.handle = handle;
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.device = device;
    this.#layout = layout;
    registry.register(this, { owner, handle }, this);
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

  /** Fetch the array's contents from the device. */
  async toHost(opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<NDArray> {
    if (this.#disposed) throw new JaxBridgeError(`DeviceArray ${this.handle} (${this.dtype}[${this.shape.join(", ")}]) was disposed`);
    return this.owner.fetch(this, opts);
  }

  /** Release the device memory. Idempotent; frees are batched on the wire. */
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
    return `DeviceArray(${this.dtype}[${this.shape.join(", ")}], device=${this.device}, handle=${this.handle}${this.#disposed ? ", disposed" : ""})`;
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
