/**
 * JAX's dtype rules, on the TypeScript side: default dtypes under both
 * `jax_enable_x64` modes, canonicalisation, and the type-promotion lattice
 * with weak types (jax/_src/dtypes.py, `_type_promotion_lattice` and
 * `lattice_result_type`), so the tracer can make every promotion explicit.
 *
 * A JS number is weakly typed like a Python scalar: an integer (a safe one)
 * is a weak int, anything else (1.5, NaN, Infinity, 1e300) a weak float. JS
 * has no `1.0` distinct from `1`, so `i32 + 1` stays int32 where Python's
 * `i32 + 1.0` would give a float; write `jnp.asarray(1, "float32")` or
 * `astype` for that. A JS boolean is a (strong) bool like Python's `True`.
 */

import type { DType } from "../values/dtype.js";
import { bfloat16BitsToNumber, dtypeInfo, float16BitsToNumber, numberToBfloat16Bits, numberToFloat16Bits } from "../values/dtype.js";

/** An abstract value as promotion sees it. */
export interface Typed {
  readonly dtype: DType;
  readonly weak: boolean;
}

export type Kind = "b" | "i" | "u" | "f" | "c";

export function kindOf(dtype: DType): Kind {
  return dtypeInfo(dtype).kind;
}

export function defaultInt(x64: boolean): DType {
  return x64 ? "int64" : "int32";
}
export function defaultUint(x64: boolean): DType {
  return x64 ? "uint64" : "uint32";
}
export function defaultFloat(x64: boolean): DType {
  return x64 ? "float64" : "float32";
}
export function defaultComplex(x64: boolean): DType {
  return x64 ? "complex128" : "complex64";
}

export function defaultOfKind(kind: Kind, x64: boolean): DType {
  switch (kind) {
    case "b":
      return "bool";
    case "i":
      return defaultInt(x64);
    case "u":
      return defaultUint(x64);
    case "f":
      return defaultFloat(x64);
    case "c":
      return defaultComplex(x64);
  }
}

const TO_32: Partial<Record<DType, DType>> = {
  int64: "int32",
  uint64: "uint32",
  float64: "float32",
  complex128: "complex64",
};

/** `dtypes.canonicalize_dtype`: 64-bit types narrow when x64 is off. */
export function canonicalize(dtype: DType, x64: boolean): DType {
  return x64 ? dtype : (TO_32[dtype] ?? dtype);
}

// --- the promotion lattice ---------------------------------------------------

type Node = DType | "i*" | "f*" | "c*";

function lattice(x64: boolean): Record<Node, Node[]> {
  return {
    bool: ["i*"],
    "i*": ["uint8", "int8"],
    uint8: ["int16", "uint16"],
    uint16: ["int32", "uint32"],
    uint32: x64 ? ["int64", "uint64"] : ["int32", "uint64"],
    uint64: ["f*"],
    int8: ["int16"],
    int16: ["int32"],
    int32: ["int64"],
    int64: ["f*"],
    "f*": ["bfloat16", "float16", "c*"],
    bfloat16: ["float32"],
    float16: ["float32"],
    float32: ["float64", "complex64"],
    float64: ["complex128"],
    "c*": ["complex64"],
    complex64: ["complex128"],
    complex128: [],
  };
}

function upperBounds(x64: boolean): Map<Node, Set<Node>> {
  const lat = lattice(x64);
  const out = new Map<Node, Set<Node>>();
  for (const n of Object.keys(lat) as Node[]) {
    const ub = new Set<Node>([n]);
    const stack: Node[] = [n];
    while (stack.length) {
      const m = stack.pop()!;
      for (const up of lat[m]) {
        if (!ub.has(up)) {
          ub.add(up);
          stack.push(up);
        }
      }
    }
    out.set(n, ub);
  }
  return out;
}

const UB = { true: upperBounds(true), false: upperBounds(false) };

export class TypePromotionError extends TypeError {
  override name = "TypePromotionError";
}

function leastUpperBound(nodes: readonly Node[], x64: boolean): Node {
  const ubs = UB[x64 ? "true" : "false"];
  const N = [...new Set(nodes)];
  let c: Set<Node> = new Set<Node>(ubs.get(N[0]!)!);
  for (const n of N.slice(1)) {
    const ub = ubs.get(n)!;
    c = new Set([...c].filter((x) => ub.has(x)));
  }
  const inN = N.filter((n) => c.has(n));
  const lub = inN.length ? inN : [...c].filter((x) => [...c].every((d) => ubs.get(x)!.has(d)));
  if (lub.length !== 1) {
    throw new TypePromotionError(`input dtypes (${nodes.join(", ")}) have no implicit promotion path; cast one explicitly with astype`);
  }
  return lub[0]!;
}

function jaxType(t: Typed): Node {
  if (!t.weak || t.dtype === "bool") return t.dtype;
  const k = kindOf(t.dtype);
  if (k === "f") return "f*";
  if (k === "c") return "c*";
  return "i*";
}

function nodeDType(n: Node, x64: boolean): DType {
  if (n === "i*") return defaultInt(x64);
  if (n === "f*") return defaultFloat(x64);
  if (n === "c*") return defaultComplex(x64);
  return canonicalize(n, x64);
}

/**
 * `dtypes.lattice_result_type`: the dtype and weakness that a jnp operation
 * on these operands computes in. Weak results get the default dtype of
 * their kind (as `dtypes.result_type` does).
 */
export function resultType(args: readonly Typed[], x64: boolean): Typed {
  if (args.length === 0) throw new TypeError("resultType needs at least one operand");
  // Memoized: tracing calls this once per operation with a handful of distinct inputs.
  let key = x64 ? "1" : "0";
  for (const a of args) key += a.weak ? `|${a.dtype}*` : `|${a.dtype}`;
  const hit = RESULT_TYPES.get(key);
  if (hit !== undefined) return { dtype: hit.dtype, weak: hit.weak };
  const r = resultTypeUncached(args, x64);
  RESULT_TYPES.set(key, r);
  return { dtype: r.dtype, weak: r.weak };
}

const RESULT_TYPES = new Map<string, Typed>();

function resultTypeUncached(args: readonly Typed[], x64: boolean): Typed {
  let dtype: DType;
  let weak: boolean;
  const dtypes = args.map((a) => a.dtype);
  if (args.length === 1) {
    dtype = args[0]!.dtype;
    weak = args[0]!.weak;
  } else if (new Set(dtypes).size === 1 && !args.every((a) => a.weak)) {
    dtype = dtypes[0]!;
    weak = false;
  } else if (args.every((a) => a.weak)) {
    dtype = nodeDType(leastUpperBound(dtypes, x64), x64);
    weak = true;
  } else {
    const n = leastUpperBound(args.map(jaxType), x64);
    dtype = nodeDType(n, x64);
    weak = n === "i*" || n === "f*" || n === "c*";
  }
  weak = dtype !== "bool" && weak;
  if (weak) dtype = defaultOfKind(kindOf(dtype), x64);
  return { dtype, weak };
}

/** `jnp.promote_types` for two strong dtypes. */
export function promoteTypes(a: DType, b: DType, x64: boolean): DType {
  return nodeDType(leastUpperBound([a, b], x64), x64);
}

// --- scalars -------------------------------------------------------------------

/** A JS scalar as an operand: number (weak int or weak float), bigint (weak int), boolean (bool). */
export type JsScalar = number | bigint | boolean;

export function isJsScalar(x: unknown): x is JsScalar {
  return typeof x === "number" || typeof x === "bigint" || typeof x === "boolean";
}

/** The (weak) type JAX gives the Python scalar this JS scalar stands for. */
export function scalarType(v: JsScalar, x64: boolean): Typed {
  if (typeof v === "boolean") return { dtype: "bool", weak: false };
  if (typeof v === "bigint") return { dtype: defaultInt(x64), weak: true };
  if (Number.isSafeInteger(v)) return { dtype: defaultInt(x64), weak: true };
  return { dtype: defaultFloat(x64), weak: true };
}

const INT_RANGE: Partial<Record<DType, [bigint, bigint]>> = {
  int8: [-(2n ** 7n), 2n ** 7n - 1n],
  int16: [-(2n ** 15n), 2n ** 15n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint8: [0n, 2n ** 8n - 1n],
  uint16: [0n, 2n ** 16n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
};

export function intRange(dtype: DType): [bigint, bigint] {
  const r = INT_RANGE[dtype];
  if (!r) throw new TypeError(`${dtype} is not an integer dtype`);
  return r;
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
const f64buf = new Float64Array(1);
const u64buf = new BigUint64Array(f64buf.buffer);

function hex(n: number | bigint, digits: number): string {
  return `0x${n.toString(16).padStart(digits, "0")}`;
}

/** The exact bits of a float in the given float dtype, as `0x...` (what a literal carries). */
export function floatBits(v: number, dtype: DType): string {
  switch (dtype) {
    case "float16":
      return hex(numberToFloat16Bits(v), 4);
    case "bfloat16":
      return hex(numberToBfloat16Bits(v), 4);
    case "float32":
      f32buf[0] = v;
      return hex(u32buf[0]!, 8);
    case "float64":
      f64buf[0] = v;
      return hex(u64buf[0]!, 16);
    default:
      throw new TypeError(`${dtype} is not a float dtype`);
  }
}

/** The number a float literal's bits stand for (for constant folding and display). */
export function bitsToFloat(bits: string, dtype: DType): number {
  const n = BigInt(bits);
  switch (dtype) {
    case "float32":
      u32buf[0] = Number(n);
      return f32buf[0]!;
    case "float64":
      u64buf[0] = n;
      return f64buf[0]!;
    case "float16":
      return float16BitsToNumber(Number(n));
    case "bfloat16":
      return bfloat16BitsToNumber(Number(n));
    default:
      throw new TypeError(`${dtype} is not a float dtype`);
  }
}

export class ScalarConversionError extends RangeError {
  override name = "OverflowError";
}

/**
 * Encode a JS scalar as a literal value of `dtype`, the way JAX converts a
 * Python scalar operand (`np.asarray(v).astype(dtype)` for floats; an
 * out-of-range int is an OverflowError, as in JAX).
 */
export function encodeScalar(v: JsScalar | { re: number; im: number }, dtype: DType): string {
  const kind = kindOf(dtype);
  if (typeof v === "object") {
    if (kind !== "c") throw new TypeError(`a complex value cannot be a ${dtype} literal`);
    const part = dtype === "complex64" ? "float32" : "float64";
    return `${floatBits(v.re, part)},${floatBits(v.im, part)}`;
  }
  switch (kind) {
    case "b":
      return (typeof v === "boolean" ? v : Number(v) !== 0) ? "true" : "false";
    case "i":
    case "u": {
      let b: bigint;
      if (typeof v === "boolean") b = v ? 1n : 0n;
      else if (typeof v === "bigint") b = v;
      else {
        if (!Number.isInteger(v)) throw new TypeError(`${v} is not an integer and cannot be a ${dtype} literal`);
        b = BigInt(v);
      }
      const [lo, hi] = intRange(dtype);
      if (b < lo || b > hi) throw new ScalarConversionError(`Python int ${b} too large to convert to ${dtype}`);
      return b.toString();
    }
    case "f":
      return floatBits(typeof v === "boolean" ? Number(v) : Number(v), dtype);
    case "c": {
      const part = dtype === "complex64" ? "float32" : "float64";
      return `${floatBits(Number(v), part)},${floatBits(0, part)}`;
    }
  }
}

/** A short human form of a literal value, for error messages and `Program` printing. */
export function showLiteral(value: string, dtype: DType): string {
  const kind = kindOf(dtype);
  if (kind === "f") return String(bitsToFloat(value, dtype));
  if (kind === "c") {
    const part = dtype === "complex64" ? "float32" : "float64";
    const [re, im] = value.split(",");
    return `${bitsToFloat(re!, part)}+${bitsToFloat(im!, part)}j`;
  }
  return value;
}

/** `finfo(dtype)` fields the surface needs (nmant, bits, tiny, min exponent). */
export function finfo(dtype: DType): { bits: number; nmant: number; tiny: number; eps: number; max: number; min: number } {
  switch (dtype) {
    case "float16":
      return { bits: 16, nmant: 10, tiny: 2 ** -14, eps: 2 ** -10, max: 65504, min: -65504 };
    case "bfloat16":
      return { bits: 16, nmant: 7, tiny: 2 ** -126, eps: 2 ** -7, max: 3.3895313892515355e38, min: -3.3895313892515355e38 };
    case "float32":
      return { bits: 32, nmant: 23, tiny: 2 ** -126, eps: 2 ** -23, max: 3.4028234663852886e38, min: -3.4028234663852886e38 };
    case "float64":
      return { bits: 64, nmant: 52, tiny: 2 ** -1022, eps: 2 ** -52, max: Number.MAX_VALUE, min: -Number.MAX_VALUE };
    default:
      throw new TypeError(`finfo needs a float dtype, got ${dtype}`);
  }
}
