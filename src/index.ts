/**
 * jaxbridge: drive real JAX from TypeScript. This file is the public API,
 * name by name: what the README and docs/ teach. Expert entry points (the
 * flat tracer, the program IR, the wire's op table, file-format helpers)
 * are `jaxbridge/internal` (src/internal.ts), which may change between
 * releases. test/api.test.ts lists every name here, so adding one is a
 * decision.
 */

// Values: host arrays, device arrays, Python objects, modules.
export { NDArray, array, zerosHost, type Shape } from "./values/ndarray.js";
export type { DType } from "./values/dtype.js";
export { DeviceArray } from "./values/device-array.js";
export { PyRef, RemoteModule } from "./values/remote.js";
export { Module } from "./values/module.js";
export { setPrintOptions, getPrintOptions, resetPrintOptions, withPrintOptions, type PrintOptions } from "./values/format.js";

// Errors: every one the bridge raises.
export { JaxBridgeError, BridgeInputError, SidecarError, SidecarDiedError, ProtocolError, DeadlineError, AbortedError, type RemoteCause } from "./values/errors.js";
export { SessionClosedError, AuthError, SidecarRestartedError } from "./values/errors.js";
export { TraceError, TracerConversionError } from "./trace/errors.js";
export { SerializationError, FingerprintMismatchError } from "./io/eqx-file.js";

// Pytrees, as jax.tree_util and equinox have them.
export {
  TreeDef,
  TreeStructureError,
  keystr,
  flatten,
  flattenWithPath,
  unflatten,
  treeLeaves,
  treeStructure,
  treeMap,
  treeMapWithPath,
  partition,
  combine,
  treeEqual,
  firstDifference,
  isArray,
  type KeyEntry,
  type KeyPath,
} from "./values/tree.js";

// Sessions with a sidecar.
export { connect, Session, kw, type ConnectOptions, type CallOptions, type RequestOptions, type SidecarInfo } from "./session/session.js";
export type { PyProxy } from "./session/session.js";
export { PROTOCOL_VERSION } from "./wire/protocol.js";
export { loadCurveKeys } from "./wire/keys.js";
export type { CurveClientKeys } from "./wire/transport.js";
// Meshes, PartitionSpecs and shardings (`jax.sharding`), and makeMesh.
export * as sharding from "./session/sharding.js";
// Several sidecars as one multi-process JAX job (jax.distributed).
export * as cluster from "./cluster/index.js";

// TypeScript functions traced and compiled by JAX.
export { jnp, lax, nn, random, shardMap } from "./trace/lib/index.js";
export { Tracer } from "./trace/tracer.js";
export { jit, programStats, type Jitted, type JitOptions } from "./trace/jit.js";
export { pyCall, pyMethod } from "./trace/pycall.js";

// JAX's transformations, and equinox's filtered ones.
export { grad, valueAndGrad, jvp, vjp, linearize, jacfwd, jacrev, hessian, vmap, checkpoint, checkpointPolicies, checkpointName, customJvp, customVjp } from "./trace/lib/transforms.js";
export { filterGrad, filterValueAndGrad, filterVmap, filterJit, isInexactArray, ifArray } from "./equinox/filters.js";

// lerax's utilities.
export { filterCond, filterScan, unstackPytree, polyakAverage, leraxCacheStats, type ScanCallOptions } from "./lerax/utils.js";
export { callbackWrapper, callbackWithNumpyWrapper, callbackWithListWrapper, printCallback, type CallbackOptions } from "./lerax/callbacks.js";

// Optimizers and schedules, as optax has them.
export * as optax from "./optim/index.js";

// Files and tables: .eqx checkpoints, Arrow, NPY.
export { Serializable } from "./io/serializable.js";
export { serializeRemote, deserializeRemote } from "./io/remote-serialize.js";
export { toArrow, fromArrow, putArrow, getArrow, writeArrowFile, readArrowFile } from "./io/arrow.js";
export { loadNpy } from "./io/npy.js";
