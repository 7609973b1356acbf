/**
 * The public API is curated: src/index.ts exports exactly the names below
 * (values and types), and src/internal.ts (`jaxbridge/internal`) exactly
 * its own, with none in both. Adding, removing or moving a name means
 * changing a list here: a decision, not a side effect. The README may only
 * import public names.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as api from "../src/index.js";
import * as internal from "../src/internal.js";

const PUBLIC_VALUES = [
  // values
  "NDArray",
  "array",
  "zerosHost",
  "DeviceArray",
  "PyRef",
  "RemoteModule",
  "Module",
  "setPrintOptions",
  "getPrintOptions",
  "resetPrintOptions",
  "withPrintOptions",
  // errors
  "JaxBridgeError",
  "BridgeInputError",
  "SidecarError",
  "SidecarDiedError",
  "ProtocolError",
  "DeadlineError",
  "AbortedError",
  "SessionClosedError",
  "AuthError",
  "SidecarRestartedError",
  "TraceError",
  "TracerConversionError",
  "SerializationError",
  "FingerprintMismatchError",
  // pytrees
  "TreeDef",
  "TreeStructureError",
  "keystr",
  "flatten",
  "flattenWithPath",
  "unflatten",
  "treeLeaves",
  "treeStructure",
  "treeMap",
  "treeMapWithPath",
  "partition",
  "combine",
  "treeEqual",
  "firstDifference",
  "isArray",
  // sessions
  "connect",
  "Session",
  "kw",
  "PROTOCOL_VERSION",
  "loadCurveKeys",
  "sharding",
  "cluster",
  // traced functions
  "jnp",
  "lax",
  "nn",
  "random",
  "Tracer",
  "shardMap",
  "jit",
  "programStats",
  "pyCall",
  "pyMethod",
  // transformations
  "grad",
  "valueAndGrad",
  "jvp",
  "vjp",
  "linearize",
  "jacfwd",
  "jacrev",
  "hessian",
  "vmap",
  "checkpoint",
  "checkpointPolicies",
  "checkpointName",
  "customJvp",
  "customVjp",
  "filterGrad",
  "filterValueAndGrad",
  "filterVmap",
  "filterJit",
  "isInexactArray",
  "ifArray",
  // lerax
  "filterCond",
  "filterScan",
  "unstackPytree",
  "polyakAverage",
  "leraxCacheStats",
  "callbackWrapper",
  "callbackWithNumpyWrapper",
  "callbackWithListWrapper",
  "printCallback",
  // optimizers
  "optax",
  // files and tables
  "Serializable",
  "serializeRemote",
  "deserializeRemote",
  "toArrow",
  "fromArrow",
  "putArrow",
  "getArrow",
  "writeArrowFile",
  "readArrowFile",
  "loadNpy",
];

const PUBLIC_TYPES = [
  "Shape",
  "DType",
  "PrintOptions",
  "KeyEntry",
  "KeyPath",
  "ConnectOptions",
  "CallOptions",
  "RequestOptions",
  "SidecarInfo",
  "RemoteCause",
  "PyProxy",
  "CurveClientKeys",
  "Jitted",
  "JitOptions",
  "ScanCallOptions",
  "CallbackOptions",
];

/** The `optax` namespace: optax's public names in camelCase, and the state classes its optimizers build. */
const OPTAX_VALUES = [
  "EmptyState",
  "ScaleByAdamState",
  "ScaleByLionState",
  "ScaleByRStdDevState",
  "ScaleByRStdDevWithCountState",
  "ScaleByRmsState",
  "ScaleByRmsWithCountState",
  "ScaleByRssState",
  "ScaleByScheduleState",
  "TraceState",
  "WeightDecaySchedule",
  "adagrad",
  "adam",
  "adamw",
  "addDecayedWeights",
  "applyUpdates",
  "chain",
  "clipByGlobalNorm",
  "constantSchedule",
  "cosineDecaySchedule",
  "exponentialDecay",
  "globalNorm",
  "huberLoss",
  "identity",
  "joinSchedules",
  "l2Loss",
  "linearSchedule",
  "lion",
  "polynomialSchedule",
  "rmsprop",
  "scale",
  "scaleByAdam",
  "scaleByLearningRate",
  "scaleByLion",
  "scaleByRms",
  "scaleByRss",
  "scaleBySchedule",
  "scaleByStddev",
  "sgd",
  "softmaxCrossEntropy",
  "squaredError",
  "trace",
  "warmupConstantSchedule",
  "warmupCosineDecaySchedule",
];

const INTERNAL_VALUES = [
  "ArrowFileWriter",
  "CHECKPOINT_POLICIES",
  "CURVE_ENV",
  "DTYPES",
  "DTYPE_KEY",
  "FINGERPRINT_BYTES",
  "IR_VERSION",
  "Kwargs",
  "MAX_FRAME_BYTES",
  "NpyFormatError",
  "OPS",
  "PACKAGE_ROOT",
  "PyShapesNeeded",
  "SHAPE_KEY",
  "STRUCTURE_FORMAT",
  "STRUCTURE_VERSION",
  "TypePromotionError",
  "bfloat16BitsToNumber",
  "clearEagerCache",
  "canonicalStructure",
  "checkpointFlat",
  "condFlat",
  "curveFromEnv",
  "customJvpFlat",
  "customVjpFlat",
  "decodeNpy",
  "decodeNpyHeader",
  "decodeProgram",
  "describe",
  "describeAs",
  "deserialiseLeaves",
  "deserializeTree",
  "dtypeInfo",
  "dtypeOfTypedArray",
  "eagerStats",
  "encodeNpy",
  "encodeNpyHeader",
  "encodeProgram",
  "eqxPath",
  "float16BitsToNumber",
  "flowsTo",
  "foriLoopFlat",
  "formatCertificate",
  "formatNDArray",
  "formatSummary",
  "generateKeyPair",
  "getArrowIPC",
  "getDefaultSession",
  "gradFlat",
  "installArrayMethods",
  "isDType",
  "isInexact",
  "isNode",
  "isZ85Key",
  "itemsize",
  "layoutFromWire",
  "jacFlat",
  "jvpFlat",
  "linearizeFlat",
  "loadKeyPair",
  "loadPublicKey",
  "npyDescr",
  "numberToBfloat16Bits",
  "numberToFloat16Bits",
  "parseCertificate",
  "parseKeyPath",
  "prefixLeaves",
  "printProgram",
  "programsHeld",
  "promoteTypes",
  "readEqx",
  "registerArrayClass",
  "resolvePyShapes",
  "resolveSession",
  "resultType",
  "runProgram",
  "scanFlat",
  "serialiseLeaves",
  "serializeTree",
  "sha256Hex",
  "shapeSize",
  "sidecarPython",
  "structureFingerprint",
  "switchFlat",
  "toIPC",
  "toScijs",
  "DEFAULT_CALLBACK_CHUNK",
  "traceFlat",
  "treedefEqual",
  "vjpFlat",
  "vmapFlat",
  "whileFlat",
  "writeEqx",
  "writeKeyPair",
];

/** The names a module's source exports as types only (`type X` in an export list, or `export type {...}`). */
function typeExports(path: string): string[] {
  const text = readFileSync(new URL(path, import.meta.url), "utf8");
  const names: string[] = [];
  for (const m of text.matchAll(/^export (type )?\{([^}]*)\}/gm)) {
    for (const part of m[2]!.split(",").map((p) => p.trim()).filter(Boolean)) {
      const t = /^type\s+(\w+)/.exec(part);
      if (m[1]) names.push(part.split(/\s+as\s+/).pop()!);
      else if (t) names.push(t[1]!);
    }
  }
  return names.sort();
}

const sorted = (xs: readonly string[]): string[] => [...xs].sort();

describe("the public API (src/index.ts) and jaxbridge/internal", () => {
  it("src/index.ts exports exactly the public values", () => {
    assert.deepEqual(Object.keys(api).sort(), sorted(PUBLIC_VALUES));
  });

  it("src/index.ts exports exactly the public types", () => {
    assert.deepEqual(typeExports("../src/index.ts"), sorted(PUBLIC_TYPES));
  });

  it("the optax namespace exports exactly optax's names", () => {
    assert.deepEqual(Object.keys(api.optax).sort(), sorted(OPTAX_VALUES));
  });

  it("keeps the public face small: 60 to 108 names besides the namespaces jnp, lax, nn, random and optax", () => {
    // JAX's transformations and equinox's filters (issue 14) are JAX's own top-level names: 20 of them.
    // Issue 16 adds 3: shardMap (jax.shard_map) and the namespaces sharding (jax.sharding) and cluster.
    const n = PUBLIC_VALUES.length + PUBLIC_TYPES.length - 5;
    assert.ok(n >= 60 && n <= 108, `${n} public names`);
  });

  it("src/internal.ts exports exactly the expert values, none of them public", () => {
    assert.deepEqual(Object.keys(internal).sort(), sorted(INTERNAL_VALUES));
    assert.deepEqual(Object.keys(internal).filter((k) => k in api), []);
    assert.deepEqual(typeExports("../src/internal.ts").filter((k) => PUBLIC_TYPES.includes(k)), []);
  });

  it("package.json maps jaxbridge/internal to the built internal module", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { exports: Record<string, Record<string, string>> };
    assert.deepEqual(pkg.exports["./internal"], { types: "./dist/internal.d.ts", import: "./dist/internal.js", default: "./dist/internal.js" });
    assert.equal(pkg.exports["."]?.import, "./dist/index.js");
  });

  it("the README imports only public names from jaxbridge", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const imported = [...readme.matchAll(/import \{([^}]*)\} from "jaxbridge"/g)].flatMap((m) =>
      m[1]!
        .split(",")
        .map((p) => p.trim().replace(/^type\s+/, ""))
        .filter(Boolean),
    );
    assert.ok(imported.length > 10);
    const known = new Set([...PUBLIC_VALUES, ...PUBLIC_TYPES]);
    assert.deepEqual(imported.filter((n) => !known.has(n)), []);
  });
});
