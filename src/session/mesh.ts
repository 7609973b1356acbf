/**
 * Meshes over a session's devices: `makeMesh`, as `jax.make_mesh` makes
 * them on CPU and GPU (the first devices, in order), and the older
 * `devicePut` form `{mesh: {shape, axes}, spec}` turned into the
 * NamedSharding it always meant.
 */
import { Mesh, NamedSharding, PartitionSpec, ShardingError, type AxisType } from "../values/sharding.js";
import type { DeviceInfo, MeshSpec, SpecList } from "../wire/ops.js";

export interface MakeMeshOptions {
  /** The devices to lay out (ids or the `hello` reply's entries), in order; default: the session's, first ones first. */
  devices?: readonly (number | DeviceInfo)[];
  /** Default Auto for every axis (JAX's make_mesh defaults to Explicit, which shard_map refuses for inputs it did not shard itself). */
  axisTypes?: readonly AxisType[];
}

/**
 * A mesh of `prod(axisSizes)` devices: the first ones of `devices` (default
 * `available`), in order. On TPU, `jax.make_mesh` orders devices by the
 * chips' topology instead: build that mesh in Python, or pass its device
 * ids to `new Mesh(...)`.
 */
export function meshOver(available: readonly DeviceInfo[], axisSizes: readonly number[], axisNames: readonly string[], opts: MakeMeshOptions = {}): Mesh {
  const devices = (opts.devices ?? available).map((d) => (typeof d === "number" ? d : d.id));
  const n = axisSizes.reduce((a, b) => a * b, 1);
  if (n > devices.length) throw new ShardingError(`makeMesh: axis sizes [${axisSizes.join(", ")}] need ${n} devices, there are ${devices.length} (${devices.join(", ")}); a CPU sidecar gets more with connect({numCpuDevices})`);
  return Mesh.fromIds(devices.slice(0, n), axisSizes, axisNames, opts.axisTypes ? { axisTypes: opts.axisTypes } : {});
}

/** The older `devicePut` form: a mesh over the first `prod(shape)` devices and a spec of bare names. */
export function legacySharding(available: readonly DeviceInfo[], mesh: MeshSpec, spec: SpecList): NamedSharding {
  if (!Array.isArray(mesh?.shape) || !Array.isArray(mesh?.axes) || mesh.shape.length !== mesh.axes.length) {
    throw new ShardingError(`devicePut: mesh must be {shape: [sizes], axes: [names]} of equal length, got ${JSON.stringify(mesh)}`);
  }
  return new NamedSharding(meshOver(available, mesh.shape, mesh.axes), new PartitionSpec(...spec));
}
