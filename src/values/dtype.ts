/**
 * The dtypes that cross the wire, and the TypedArray that holds each on the
 * host. JavaScript has no float16 (on Node 20), bfloat16 or complex
 * TypedArray: those are carried as their raw bits (Uint16Array) or as
 * interleaved real/imaginary pairs, never converted.
 */

export const DTYPES = [
  "bool",
  "int8",
  "int16",
  "int32",
  "int64",
  "uint8",
  "uint16",
  "uint32",
  "uint64",
  "float16",
  "bfloat16",
  "float32",
  "float64",
  "complex64",
  "complex128",
] as const;

export type DType = (typeof DTYPES)[number];

export type TypedArray =
  | Uint8Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | Float32Array
  | Float64Array;

type TypedArrayCtor = {
  new (length: number): TypedArray;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray;
  readonly BYTES_PER_ELEMENT: number;
};

interface DTypeInfo {
  /** bytes per array element (complex64: 8). */
  readonly itemsize: number;
  /** TypedArray holding the elements; complex uses two slots per element. */
  readonly ctor: TypedArrayCtor;
  /** TypedArray slots per element: 2 for complex, else 1. */
  readonly lanes: 1 | 2;
  readonly kind: "b" | "i" | "u" | "f" | "c";
}

const INFO: Record<DType, DTypeInfo> = {
  bool: { itemsize: 1, ctor: Uint8Array, lanes: 1, kind: "b" },
  int8: { itemsize: 1, ctor: Int8Array, lanes: 1, kind: "i" },
  int16: { itemsize: 2, ctor: Int16Array, lanes: 1, kind: "i" },
  int32: { itemsize: 4, ctor: Int32Array, lanes: 1, kind: "i" },
  int64: { itemsize: 8, ctor: BigInt64Array, lanes: 1, kind: "i" },
  uint8: { itemsize: 1, ctor: Uint8Array, lanes: 1, kind: "u" },
  uint16: { itemsize: 2, ctor: Uint16Array, lanes: 1, kind: "u" },
  uint32: { itemsize: 4, ctor: Uint32Array, lanes: 1, kind: "u" },
  uint64: { itemsize: 8, ctor: BigUint64Array, lanes: 1, kind: "u" },
  float16: { itemsize: 2, ctor: Uint16Array, lanes: 1, kind: "f" },
  bfloat16: { itemsize: 2, ctor: Uint16Array, lanes: 1, kind: "f" },
  float32: { itemsize: 4, ctor: Float32Array, lanes: 1, kind: "f" },
  float64: { itemsize: 8, ctor: Float64Array, lanes: 1, kind: "f" },
  complex64: { itemsize: 8, ctor: Float32Array, lanes: 2, kind: "c" },
  complex128: { itemsize: 16, ctor: Float64Array, lanes: 2, kind: "c" },
};

export function isDType(x: unknown): x is DType {
  return typeof x === "string" && Object.prototype.hasOwnProperty.call(INFO, x);
}

export function dtypeInfo(dtype: DType): DTypeInfo {
  const info = INFO[dtype];
  if (info === undefined) {
    throw new TypeError(`unsupported dtype ${JSON.stringify(dtype)}; expected one of ${DTYPES.join(", ")}`);
  }
  return info;
}

export function itemsize(dtype: DType): number {
  return dtypeInfo(dtype).itemsize;
}

export function isInexact(dtype: DType): boolean {
  const k = dtypeInfo(dtype).kind;
  return k === "f" || k === "c";
}

/**
 * The dtype a TypedArray implies when none is given. Uint16Array is read as
 * uint16, never as a half float: a half float must be named.
 */
export function dtypeOfTypedArray(a: TypedArray): DType {
  if (a instanceof Float32Array) return "float32";
  if (a instanceof Float64Array) return "float64";
  if (a instanceof Int32Array) return "int32";
  if (a instanceof Uint8Array) return "uint8";
  if (a instanceof Int8Array) return "int8";
  if (a instanceof Int16Array) return "int16";
  if (a instanceof Uint16Array) return "uint16";
  if (a instanceof Uint32Array) return "uint32";
  if (a instanceof BigInt64Array) return "int64";
  if (a instanceof BigUint64Array) return "uint64";
  throw new TypeError(`unsupported TypedArray ${Object.prototype.toString.call(a)}`);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half-precision bits to a JS number. */
export function float16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits are the top half of a float32. */
export function bfloat16BitsToNumber(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

/** Round-to-nearest-even float32 -> bfloat16 bits, as ml_dtypes does. */
export function numberToBfloat16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  if (Number.isNaN(x)) return ((bits >>> 16) | 0x40) & 0xffff;
  const rounding = 0x7fff + ((bits >>> 16) & 1);
  return ((bits + rounding) >>> 16) & 0xffff;
}

/** Round-to-nearest-even number -> IEEE half bits. */
export function numberToFloat16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  let a = Math.abs(x);
  if (a === Infinity) return sign | 0x7c00;
  if (a >= 65520) return sign | 0x7c00;
  if (a < 2 ** -24 / 2) return sign;
  let exp = Math.floor(Math.log2(a));
  if (2 ** exp > a) exp -= 1;
  if (2 ** (exp + 1) <= a) exp += 1;
  if (exp < -14) {
    // subnormal: quantum is 2^-24
    const m = roundHalfEven(a / 2 ** -24);
    return sign | m;
  }
  let m = roundHalfEven((a / 2 ** exp - 1) * 1024);
  if (m === 1024) {
    m = 0;
    exp += 1;
  }
  if (exp > 15) return sign | 0x7c00;
  return sign | ((exp + 15) << 10) | m;
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
