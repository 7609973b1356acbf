/**
 * `jax.sharding` for TypeScript, as one namespace of the public API
 * (`import { sharding } from "jaxbridge"`): meshes, PartitionSpecs,
 * shardings, the shards a device array reports, and `makeMesh` over a
 * session's devices. `shardMap` and the collectives (`lax.psum`, ...) are
 * the op library's.
 */
export { Mesh, PartitionSpec, P, NamedSharding, SingleDeviceSharding, OpaqueSharding, ShardingError, type AxisType, type Sharding, type Shard, type SpecEntry, type DeviceGrid } from "../values/sharding.js";
export { makeMesh } from "./session.js";
export type { MakeMeshOptions } from "./mesh.js";
