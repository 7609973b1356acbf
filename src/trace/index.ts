/**
 * The tracer's public surface, for src/index.ts to re-export. Namespaces
 * mirror JAX's: `jnp`, `lax`, `nn`, `random`.
 */

export * as jnp from "./lib/jnp.js";
export * as lax from "./lib/lax.js";
export * as nn from "./lib/nn.js";
export * as random from "./lib/random.js";
export { Tracer } from "./tracer.js";
export { TraceError, TracerConversionError } from "./errors.js";
export { traceFlat, type InputSpec, type TraceOptions, type Traced } from "./trace.js";
export { pyCall, pyMethod, PyShapesNeeded, resolvePyShapes, type PyCallRequest, type PyCallShapes } from "./pycall.js";
export { condFlat, switchFlat, scanFlat, whileFlat, foriLoopFlat, type ScanOptions } from "./lib/control.js";
export { type FilterScanOptions } from "../lerax/filter.js";
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
} from "../lerax/utils.js";
export {
  jit,
  runProgram,
  programStats,
  resolveSession,
  type Jitted,
  type JitOptions,
  type JitCallOptions,
  type JitStats,
  type ProgramStats,
  type RunOptions,
  type RunResult,
} from "./jit.js";
export { encodeProgram, decodeProgram, printProgram, sha256Hex, IR_VERSION, type Program, type SubProgram, type Eqn, type Aval, type Literal } from "./ir.js";
export { resultType, promoteTypes, TypePromotionError } from "./dtypes.js";
