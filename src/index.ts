/**
 * jaxbridge: drive real JAX from TypeScript. This file is the whole public
 * API; everything else in src/ is internal.
 */
export * from "./values/dtype.js";
export { NDArray, array, zerosHost, shapeSize, type Shape, type Scalar, type NestedArray, type Complex } from "./values/ndarray.js";
export { DeviceArray } from "./values/device-array.js";
export { PyRef, RemoteModule } from "./values/remote.js";
export type { PyProxy } from "./session/py-proxy.js";
export * from "./values/errors.js";
export { formatNDArray, formatSummary, setPrintOptions, getPrintOptions, resetPrintOptions, withPrintOptions, type PrintOptions } from "./values/format.js";
export { Module, type ModuleField, type ModuleClass } from "./values/module.js";
export {
  type KeyEntry,
  type KeyPath,
  type TreeNode,
  type Difference,
  type Filter,
  type IsLeaf,
  type FlattenOptions,
  TreeDef,
  TreeStructureError,
  keystr,
  flatten,
  flattenWithPath,
  unflatten,
  treeLeaves,
  treeStructure,
  treedefEqual,
  treeMap,
  treeMapWithPath,
  partition,
  combine,
  treeEqual,
  firstDifference,
  isArray,
  isNode,
} from "./values/tree.js";
export {
  connect,
  Session,
  kw,
  Kwargs,
  getDefaultSession,
  resolveSession,
  type ConnectOptions,
  type CallOptions,
  type SidecarInfo,
  type DeviceInfo,
  type RequestOptions,
  type DeviceTree,
  type HostTree,
} from "./session/session.js";
export { PROTOCOL_VERSION } from "./wire/protocol.js";
export { callbackWrapper, callbackWithNumpyWrapper, callbackWithListWrapper, printCallback, toScijs, type CallbackOptions } from "./lerax/callbacks.js";
export type { CallbackStats, EventRequestOptions, ShardingSpec } from "./session/session.js";
export type { CurveClientKeys } from "./wire/transport.js";
export {
  toArrow,
  fromArrow,
  putArrow,
  getArrow,
  getArrowIPC,
  toIPC,
  writeArrowFile,
  readArrowFile,
  ArrowFileWriter,
  parseKeyPath,
  tableFromIPC,
  tableToIPC,
  DTYPE_KEY,
  SHAPE_KEY,
  type FromArrowOptions,
  type IPCFormat,
} from "./io/arrow.js";
export { jnp, lax, nn, random } from "./trace/lib/index.js";
export { Tracer } from "./trace/tracer.js";
export { TraceError, TracerConversionError } from "./trace/errors.js";
export { traceFlat, type InputSpec, type TraceOptions, type Traced } from "./trace/trace.js";
export { pyCall, pyMethod, PyShapesNeeded, resolvePyShapes, type PyCallRequest, type PyCallShapes } from "./trace/pycall.js";
export { condFlat, switchFlat, scanFlat, whileFlat, foriLoopFlat, type ScanOptions } from "./trace/lib/control.js";
export { type FilterScanOptions } from "./lerax/filter.js";
// lerax's utilities, one function each for traced code and top level (see ../lerax.ts).
export {
  filterCond,
  filterScan,
  unstackPytree,
  polyakAverage,
  leraxCacheStats,
  type TopLevelOptions,
  type ScanCallOptions,
  type UnstackOptions,
  type TracerTree,
  type DeviceResult,
  type Stacked,
  type Staged,
  type HasTracer,
  type MayHaveTracer,
  type HasDevice,
  type ScanResult,
  type CondResult,
  type UnstackResult,
  type PolyakResult,
} from "./lerax/utils.js";
export {
  jit,
  runProgram,
  programStats,
  type Jitted,
  type JitOptions,
  type JitCallOptions,
  type JitStats,
  type ProgramStats,
  type RunOptions,
  type RunResult,
} from "./trace/jit.js";
export { encodeProgram, decodeProgram, printProgram, sha256Hex, IR_VERSION, type Program, type SubProgram, type Eqn, type Aval, type Literal } from "./trace/ir.js";
export { resultType, promoteTypes, TypePromotionError } from "./trace/dtypes.js";
export { encodeNpy, encodeNpyHeader, decodeNpy, decodeNpyHeader, loadNpy, npyDescr, NpyFormatError, type NpyHeader, type NpyExpect } from "./io/npy.js";
export {
  Serializable,
  structureFingerprint,
  canonicalStructure,
  serialiseLeaves,
  deserialiseLeaves,
  serializeTree,
  deserializeTree,
  STRUCTURE_FORMAT,
  STRUCTURE_VERSION,
  type SerializeOptions,
  type DeserializeOptions,
  type DeserialiseLeavesOptions,
  type DevicePutter,
} from "./io/serializable.js";
export { SerializationError, FingerprintMismatchError, eqxPath, FINGERPRINT_BYTES } from "./io/eqx-file.js";
export { serializeRemote, deserializeRemote, type RemoteSerializeOptions } from "./io/remote-serialize.js";
export { loadCurveKeys, loadKeyPair, loadPublicKey, parseCertificate, formatCertificate, generateKeyPair, writeKeyPair, curveFromEnv, isZ85Key, CURVE_ENV, type KeyPair, type Certificate, type CurveFiles, type WrittenKeys } from "./wire/keys.js";
