/**
 * `jax.sharding`'s values in TypeScript: `Mesh` (device ids laid out along
 * named axes), `PartitionSpec` (per array axis, the mesh axes it is split
 * over), `NamedSharding` (the two together), `SingleDeviceSharding`, and the
 * `Shard`s a device array reports. Names and meanings are JAX's.
 *
 * Devices are named by JAX's device ids, never by positions: ids are global
 * in a multi-process job and not dense (process 1's first CPU device is
 * 2048), so a sharding written here means the same devices to every process.
 *
 * Each value has a wire form (docs/protocol.md, "Shardings"), the JSON a
 * program and a request carry and a handle's layout reports.
 */
import { inspect } from "node:util";
import { JaxBridgeError } from "./errors.js";

/** How a mesh axis takes part in typing (JAX's `AxisType`). Auto: shardings are the compiler's business, as `Mesh(...)` makes them. */
export type AxisType = "Auto" | "Explicit";
const AXIS_TYPES: readonly AxisType[] = ["Auto", "Explicit"];

/** One entry of a PartitionSpec as written: a mesh axis, several (split over their product, major first), or null (not split). */
export type SpecEntry = string | readonly string[] | null;

// --- the wire forms -----------------------------------------------------------------------

/** A mesh on the wire: device ids flat in C order over `axis_sizes`. */
export interface WireMesh {
  readonly axis_names: readonly string[];
  readonly axis_sizes: readonly number[];
  readonly axis_types: readonly AxisType[];
  readonly device_ids: readonly number[];
}
/** A PartitionSpec on the wire: per array axis, null or the list of mesh axes. */
export type WireSpec = readonly (readonly string[] | null)[];
export interface WireSharding {
  readonly mesh: WireMesh;
  readonly spec: WireSpec;
}
/** One addressable shard on the wire: device id, `[start, stop]` per axis, replica id. */
export type WireShard = readonly [number, readonly (readonly [number, number])[], number];
/** How an array on several devices lies on them (a handle's fifth field). `mesh`/`spec` are null for a sharding JAX gives no mesh. */
export interface WireLayout {
  readonly mesh: WireMesh | null;
  readonly spec: WireSpec | null;
  readonly shards: readonly WireShard[];
}

export class ShardingError extends JaxBridgeError {}

const fail = (message: string): never => {
  throw new ShardingError(message);
};

// --- PartitionSpec -----------------------------------------------------------------------

/**
 * `PartitionSpec(...entries)` (or `P(...)`): per array axis, the mesh axes
 * it is split over. Trailing axes not named are not split. `P()` is
 * replicated.
 */
export class PartitionSpec {
  /** Each entry as a list of mesh axes (one or more), or null. */
  readonly entries: readonly (readonly string[] | null)[];

  constructor(...entries: SpecEntry[]) {
    const used = new Set<string>();
    this.entries = Object.freeze(
      entries.map((e, i) => {
        if (e === null || e === undefined) return null;
        const names: unknown[] = typeof e === "string" ? [e] : Array.isArray(e) ? [...e] : [e];
        if (!names.every((n) => typeof n === "string" && n.length > 0)) fail(`PartitionSpec entry ${i} must be a mesh axis name, a list of names, or null; got ${inspect(e)}`);
        for (const n of names as string[]) {
          if (used.has(n)) fail(`PartitionSpec uses mesh axis '${n}' twice (entry ${i}); an axis splits at most one array axis`);
          used.add(n);
        }
        return names.length === 0 ? null : Object.freeze(names as string[]);
      }),
    );
  }

  static fromWire(w: WireSpec): PartitionSpec {
    if (!Array.isArray(w)) fail(`a PartitionSpec on the wire is a list, got ${inspect(w)}`);
    return new PartitionSpec(...w);
  }

  get length(): number {
    return this.entries.length;
  }

  /** Every mesh axis the spec names. */
  get axes(): string[] {
    return this.entries.flatMap((e) => e ?? []);
  }

  toWire(): WireSpec {
    return this.entries.map((e) => (e === null ? null : [...e]));
  }

  /** Equal as JAX compares them: trailing nulls do not count (JAX drops them from the specs it reports). */
  equals(other: PartitionSpec): boolean {
    const trim = (s: PartitionSpec) => {
      const e = [...s.entries];
      while (e.length && e[e.length - 1] === null) e.pop();
      return JSON.stringify(e);
    };
    return trim(this) === trim(other);
  }

  toString(): string {
    const one = (e: readonly string[] | null) => (e === null ? "None" : e.length === 1 ? `'${e[0]}'` : `(${e.map((n) => `'${n}'`).join(", ")})`);
    return `P(${this.entries.map(one).join(", ")})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** `P(...)`: a PartitionSpec, as `from jax.sharding import PartitionSpec as P` writes it. */
export function P(...entries: SpecEntry[]): PartitionSpec {
  return new PartitionSpec(...entries);
}

// --- Mesh ---------------------------------------------------------------------------------

/** Device ids nested as deep as the mesh has axes: `[[0, 1], [2, 3]]` is a 2×2 mesh. */
export type DeviceGrid = number | readonly DeviceGrid[];

/**
 * `Mesh(devices, axisNames)`: device ids laid out along named axes.
 * `new Mesh([[0, 1], [2, 3]], ["data", "model"])`; a session's
 * `makeMesh([2, 2], ["data", "model"])` takes its devices in order, as
 * `jax.make_mesh` does on CPU and GPU. Axis types default to Auto, as
 * `jax.sharding.Mesh`'s do.
 */
export class Mesh {
  /** Device ids, flat in C order over the axis sizes. */
  readonly deviceIds: readonly number[];
  readonly axisNames: readonly string[];
  readonly axisSizes: readonly number[];
  readonly axisTypes: readonly AxisType[];

  constructor(devices: DeviceGrid, axisNames: string | readonly string[], opts: { axisTypes?: readonly AxisType[] } = {}) {
    const names = typeof axisNames === "string" ? [axisNames] : [...axisNames];
    const sizes: number[] = [];
    for (let level: DeviceGrid = devices; Array.isArray(level); level = (level as readonly DeviceGrid[])[0]!) sizes.push((level as readonly DeviceGrid[]).length);
    if (sizes.length !== names.length) fail(`Mesh: devices nest ${sizes.length} deep but ${names.length} axis names were given (${names.join(", ")})`);
    const ids: number[] = [];
    const walk = (g: DeviceGrid, depth: number): void => {
      if (depth === sizes.length) {
        if (typeof g !== "number") fail(`Mesh: devices must be device ids nested ${sizes.length} deep, found ${inspect(g)} at depth ${depth}`);
        ids.push(g as number);
        return;
      }
      if (!Array.isArray(g) || g.length !== sizes[depth]) fail(`Mesh: devices must be a regular grid of shape [${sizes.join(", ")}]`);
      for (const x of g as readonly DeviceGrid[]) walk(x, depth + 1);
    };
    walk(devices, 0);
    const m = Mesh.#check(ids, sizes, names, opts.axisTypes ?? names.map(() => "Auto" as const));
    this.deviceIds = m.ids;
    this.axisNames = m.names;
    this.axisSizes = m.sizes;
    this.axisTypes = m.types;
  }

  static #check(ids: readonly number[], sizes: readonly number[], names: readonly string[], types: readonly AxisType[]) {
    if (names.length === 0) fail("Mesh: needs at least one axis");
    if (!names.every((n) => typeof n === "string" && n.length > 0) || new Set(names).size !== names.length) fail(`Mesh: axis names must be distinct non-empty strings, got ${inspect(names)}`);
    if (!sizes.every((s) => Number.isSafeInteger(s) && s > 0)) fail(`Mesh: axis sizes must be positive integers, got [${sizes.join(", ")}]`);
    if (types.length !== names.length || !types.every((t) => AXIS_TYPES.includes(t))) fail(`Mesh: axisTypes must be one of ${AXIS_TYPES.join(", ")} per axis, got ${inspect(types)}`);
    const n = sizes.reduce((a, b) => a * b, 1);
    if (ids.length !== n || !ids.every((i) => Number.isSafeInteger(i) && i >= 0)) fail(`Mesh: needs ${n} device ids for axis sizes [${sizes.join(", ")}], got ${inspect(ids)}`);
    if (new Set(ids).size !== ids.length) fail(`Mesh: device ids must be distinct, got [${ids.join(", ")}]`);
    return { ids: Object.freeze([...ids]), sizes: Object.freeze([...sizes]), names: Object.freeze([...names]), types: Object.freeze([...types]) };
  }

  /** A mesh from flat ids (C order) and axis sizes. */
  static fromIds(ids: readonly number[], axisSizes: readonly number[], axisNames: readonly string[], opts: { axisTypes?: readonly AxisType[] } = {}): Mesh {
    const m = Mesh.#check(ids, axisSizes, axisNames, opts.axisTypes ?? axisNames.map(() => "Auto" as const));
    return new Mesh(gridOf(m.ids, m.sizes), m.names, { axisTypes: m.types });
  }

  static fromWire(w: WireMesh): Mesh {
    if (typeof w !== "object" || w === null) fail(`a mesh on the wire is {axis_names, axis_sizes, axis_types, device_ids}, got ${inspect(w)}`);
    return Mesh.fromIds(w.device_ids, w.axis_sizes, w.axis_names, { axisTypes: w.axis_types });
  }

  /** Number of devices. */
  get size(): number {
    return this.deviceIds.length;
  }

  /** Axis sizes by name (JAX's `mesh.shape`). */
  get shape(): Readonly<Record<string, number>> {
    return Object.freeze(Object.fromEntries(this.axisNames.map((n, i) => [n, this.axisSizes[i]!])));
  }

  /** The size of one axis, or the product of several. */
  axisSize(names: string | readonly string[]): number {
    let n = 1;
    for (const a of typeof names === "string" ? [names] : names) {
      const i = this.axisNames.indexOf(a);
      if (i < 0) fail(`'${a}' is not an axis of the mesh (${this.axisNames.join(", ")})`);
      n *= this.axisSizes[i]!;
    }
    return n;
  }

  /** The device ids nested along the axes (JAX's `mesh.devices`, as ids). */
  get devices(): DeviceGrid {
    return gridOf(this.deviceIds, this.axisSizes);
  }

  /** The coordinates of the device at flat position `k` (C order). */
  coords(k: number): number[] {
    const out = new Array<number>(this.axisSizes.length);
    for (let i = this.axisSizes.length - 1; i >= 0; i--) {
      out[i] = k % this.axisSizes[i]!;
      k = Math.floor(k / this.axisSizes[i]!);
    }
    return out;
  }

  equals(other: Mesh): boolean {
    const same = (a: readonly unknown[], b: readonly unknown[]) => a.length === b.length && a.every((x, i) => x === b[i]);
    return same(this.deviceIds, other.deviceIds) && same(this.axisNames, other.axisNames) && same(this.axisSizes, other.axisSizes) && same(this.axisTypes, other.axisTypes);
  }

  toWire(): WireMesh {
    return { axis_names: [...this.axisNames], axis_sizes: [...this.axisSizes], axis_types: [...this.axisTypes], device_ids: [...this.deviceIds] };
  }

  toString(): string {
    return `Mesh(${this.axisNames.map((n, i) => `'${n}': ${this.axisSizes[i]}`).join(", ")}, axis_types=(${this.axisTypes.join(", ")}${this.axisTypes.length === 1 ? "," : ""}))`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** Flat ids (C order) nested along `sizes`. */
function gridOf(ids: readonly number[], sizes: readonly number[]): DeviceGrid {
  const grid = (at: number, depth: number): DeviceGrid => {
    if (depth === sizes.length) return ids[at]!;
    const stride = sizes.slice(depth + 1).reduce((a, b) => a * b, 1);
    return Array.from({ length: sizes[depth]! }, (_, i) => grid(at + i * stride, depth + 1));
  };
  return grid(0, 0);
}

// --- shardings -----------------------------------------------------------------------------

/** One shard of an array: on which device, which slice of the global array (`[start, stop]` per axis), and which copy it is (0 for the first). */
export interface Shard {
  readonly device: number;
  readonly index: readonly (readonly [number, number])[];
  readonly replicaId: number;
  readonly shape: readonly number[];
}

const shardShapeOf = (index: readonly (readonly [number, number])[]) => index.map(([a, b]) => b - a);

/** `NamedSharding(mesh, spec)`: an array split over a mesh as the spec says. */
export class NamedSharding {
  readonly mesh: Mesh;
  readonly spec: PartitionSpec;

  constructor(mesh: Mesh, spec: PartitionSpec) {
    for (const a of spec.axes) if (!mesh.axisNames.includes(a)) fail(`${spec} names '${a}', which is not an axis of ${mesh}`);
    this.mesh = mesh;
    this.spec = spec;
  }

  static fromWire(w: WireSharding): NamedSharding {
    if (typeof w !== "object" || w === null) fail(`a sharding on the wire is {mesh, spec}, got ${inspect(w)}`);
    return new NamedSharding(Mesh.fromWire(w.mesh), PartitionSpec.fromWire(w.spec));
  }

  get deviceIds(): readonly number[] {
    return this.mesh.deviceIds;
  }

  /** Whether every device holds the whole array. */
  get isFullyReplicated(): boolean {
    return this.spec.axes.every((a) => this.mesh.axisSize(a) === 1);
  }

  /** Check that an array of `shape` can take this sharding (JAX's rule: each split axis divides evenly); returns the shard shape. */
  shardShape(shape: readonly number[]): number[] {
    if (this.spec.length > shape.length) fail(`${this.spec} has ${this.spec.length} entries but the array has rank ${shape.length} (shape [${shape.join(", ")}])`);
    return shape.map((d, i) => {
      const e = this.spec.entries[i];
      if (!e) return d;
      const n = this.mesh.axisSize(e);
      if (d % n !== 0) fail(`${this} splits axis ${i} of an array of shape [${shape.join(", ")}] ${n} ways, but ${d} is not divisible by ${n}`);
      return d / n;
    });
  }

  /** Each device's shard of an array of `shape`, in mesh order (JAX's `devices_indices_map` with the replica ids of `addressable_shards`). */
  shards(shape: readonly number[]): Shard[] {
    const per = this.shardShape(shape);
    const used = new Set(this.spec.axes);
    const m = this.mesh;
    return m.deviceIds.map((device, k) => {
      const c = m.coords(k);
      const at = (names: readonly string[]) => names.reduce((acc, a) => acc * m.axisSize(a) + c[m.axisNames.indexOf(a)]!, 0);
      const index = shape.map((d, i): readonly [number, number] => {
        const e = this.spec.entries[i];
        if (!e) return [0, d];
        const p = at(e);
        return [p * per[i]!, (p + 1) * per[i]!];
      });
      const replicaId = at(m.axisNames.filter((a) => !used.has(a)));
      return { device, index, replicaId, shape: per };
    });
  }

  /** The same layout (JAX's `is_equivalent_to`): same mesh and spec, trailing nulls aside. */
  equals(other: Sharding): boolean {
    return other instanceof NamedSharding && this.mesh.equals(other.mesh) && this.spec.equals(other.spec);
  }

  toWire(): WireSharding {
    return { mesh: this.mesh.toWire(), spec: this.spec.toWire() };
  }

  toString(): string {
    return `NamedSharding(mesh=${this.mesh}, spec=${this.spec})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** An array on one device (JAX's `SingleDeviceSharding`). */
export class SingleDeviceSharding {
  constructor(readonly device: number) {}

  get deviceIds(): readonly number[] {
    return [this.device];
  }

  get isFullyReplicated(): boolean {
    return true;
  }

  shardShape(shape: readonly number[]): number[] {
    return [...shape];
  }

  shards(shape: readonly number[]): Shard[] {
    return [{ device: this.device, index: shape.map((d) => [0, d] as const), replicaId: 0, shape: [...shape] }];
  }

  equals(other: Sharding): boolean {
    return other instanceof SingleDeviceSharding && other.device === this.device;
  }

  toString(): string {
    return `SingleDeviceSharding(device=${this.device})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** A sharding JAX reports without a mesh (a GSPMDSharding, say): only its devices are known here. */
export class OpaqueSharding {
  constructor(readonly deviceIds: readonly number[]) {}

  get isFullyReplicated(): boolean {
    return false;
  }

  equals(other: Sharding): boolean {
    return other instanceof OpaqueSharding && other.deviceIds.length === this.deviceIds.length && other.deviceIds.every((d, i) => d === this.deviceIds[i]);
  }

  toString(): string {
    return `OpaqueSharding(devices=[${this.deviceIds.join(", ")}])`;
  }
}

export type Sharding = NamedSharding | SingleDeviceSharding | OpaqueSharding;

/** A handle's layout as values: its sharding and its addressable shards (this process's). */
export function layoutFromWire(w: WireLayout): { sharding: Sharding; shards: Shard[] } {
  const shards = w.shards.map(([device, index, replicaId]) => ({ device, index: index.map(([a, b]) => [a, b] as const), replicaId, shape: shardShapeOf(index) }));
  const sharding = w.mesh !== null && w.spec !== null ? new NamedSharding(Mesh.fromWire(w.mesh), PartitionSpec.fromWire(w.spec)) : new OpaqueSharding(shards.map((s) => s.device));
  return { sharding, shards };
}
