/**
 * `jaxbridge/internal`: expert entry points, as `eqx.internal` is equinox's.
 * Tracing flat functions by hand, the program IR, the wire's op table, the
 * dtype bit helpers, the file formats' pieces. These may change between
 * releases without notice; the stable API is `jaxbridge` (src/index.ts).
 * Nothing here is also exported there (test/api.test.ts checks both lists).
 */

// Values.
export {
  DTYPES,
  dtypeInfo,
  itemsize,
  isDType,
  isInexact,
  dtypeOfTypedArray,
  float16BitsToNumber,
  bfloat16BitsToNumber,
  numberToFloat16Bits,
  numberToBfloat16Bits,
  type TypedArray,
} from "./values/dtype.js";
export { shapeSize, type Scalar, type NestedArray, type Complex } from "./values/ndarray.js";
export { formatNDArray, formatSummary } from "./values/format.js";
export { describe, describeAs, type Describable } from "./values/describe.js";
export { layoutFromWire, type WireMesh, type WireSpec, type WireSharding, type WireShard, type WireLayout } from "./values/sharding.js";
export { prefixLeaves } from "./values/prefix.js";
export type { ModuleField, ModuleClass } from "./values/module.js";
export {
  treedefEqual,
  isNode,
  registerArrayClass,
  type Shaped,
  type TreeNode,
  type Difference,
  type Filter,
  type IsLeaf,
  type FlattenOptions,
} from "./values/tree.js";

// The wire and the session under the public API.
export { MAX_FRAME_BYTES } from "./wire/protocol.js";
export { sidecarPython, PACKAGE_ROOT } from "./wire/python-env.js";
export { OPS, type Op, type Ops, type Request, type Reply, type AttrEntry, type SidecarStats, type SidecarMemory, type DeviceInfo, type PyCallRequest, type PyCallShapes } from "./wire/ops.js";
export {
  loadKeyPair,
  loadPublicKey,
  parseCertificate,
  formatCertificate,
  generateKeyPair,
  writeKeyPair,
  curveFromEnv,
  isZ85Key,
  CURVE_ENV,
  type KeyPair,
  type Certificate,
  type CurveFiles,
  type WrittenKeys,
} from "./wire/keys.js";
export {
  Kwargs,
  getDefaultSession,
  resolveSession,
  type RequestHook,
  type AbandonedCall,
  type DeviceTree,
  type HostTree,
  type EventRequestOptions,
  type ShardingSpec,
  type CallbackStats,
} from "./session/session.js";

// The tracer, flat and by hand.
export { traceFlat, type InputSpec, type TraceOptions, type Traced } from "./trace/trace.js";
export { PyShapesNeeded, resolvePyShapes } from "./trace/pycall-shapes.js";
export { eagerStats, clearEagerCache } from "./trace/eager.js";
export type { DeviceArrayOptions } from "./values/device-array.js";
export type { ArrayScope } from "./session/memory.js";
export type { Eager, EagerArg, EagerResult } from "./trace/lib/eager/wrap.js";
export { runProgram, programsHeld, type RunOptions, type RunResult, type JitCallOptions, type JitStats, type JitArgs, type ProgramStats } from "./trace/jit.js";
export type { ArgTree, HostResult } from "./trace/types.js";
export { encodeProgram, decodeProgram, printProgram, sha256Hex, IR_VERSION, type Program, type SubProgram, type Eqn, type Aval, type Literal } from "./trace/ir.js";
export { resultType, promoteTypes, TypePromotionError } from "./trace/dtypes.js";
export { condFlat, switchFlat, scanFlat, whileFlat, foriLoopFlat, type ScanOptions, type FlatNames } from "./trace/lib/control.js";
export { installArrayMethods, type ArrayMethods, type AtMethods, type ShardMapOptions } from "./trace/lib/index.js";

// Transformations on flat lists, and the types of the pytree ones.
export {
  gradFlat,
  jacFlat,
  jvpFlat,
  vjpFlat,
  linearizeFlat,
  vmapFlat,
  checkpointFlat,
  customJvpFlat,
  customVjpFlat,
  CHECKPOINT_POLICIES,
  type FlatAuxFn,
  type FlatFn,
  type GradFlatOptions,
  type JacKind,
  type VmapFlatOptions,
  type CheckpointPolicyName,
} from "./trace/lib/transforms-flat.js";
export { flowsTo, type Flow } from "./trace/dependence.js";
export type {
  GradOptions,
  JacOptions,
  AuxOptions,
  VmapOptions,
  AxisSpec,
  CheckpointOptions,
  CheckpointPolicy,
  CustomJvp,
  CustomVjp,
  VjpResult,
  LinearizeResult,
  Lift,
  Both,
  Picked,
} from "./trace/lib/transforms.js";
export type { FilterGradOptions, FilterVmapOptions, FilterGradOf } from "./equinox/filters.js";

// lerax's utilities: the types of their staged results.
export type { FilterScanOptions } from "./lerax/filter.js";
export type {
  TopLevelOptions,
  UnstackOptions,
  TracerTree,
  DeviceResult,
  Stacked,
  Staged,
  HasTracer,
  MayHaveTracer,
  HasDevice,
  ScanResult,
  CondResult,
  UnstackResult,
  PolyakResult,
} from "./lerax/utils.js";
export { toScijs, DEFAULT_CALLBACK_CHUNK } from "./lerax/callbacks.js";

// File formats, piece by piece.
export { FINGERPRINT_BYTES, eqxPath, readEqx, writeEqx } from "./io/eqx-file.js";
export {
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
export type { RemoteSerializeOptions } from "./io/remote-serialize.js";
export { getArrowIPC, toIPC, ArrowFileWriter, parseKeyPath, DTYPE_KEY, SHAPE_KEY, type FromArrowOptions, type IPCFormat } from "./io/arrow.js";
export { encodeNpy, decodeNpy, encodeNpyHeader, decodeNpyHeader, npyDescr, NpyFormatError, type NpyHeader, type NpyExpect } from "./io/npy.js";
