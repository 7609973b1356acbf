import { inspect } from "node:util";
import {
  type DType,
  type TypedArray,
  dtypeInfo,
  dtypeOfTypedArray,
  isDType,
  numberToBfloat16Bits,
  numberToFloat16Bits,
  float16BitsToNumber,
  bfloat16BitsToNumber,
} from "./dtype.js";
import { BridgeInputError } from "./errors.js";
import { formatNDArray } from "./format.js";
import { describe, describeAs } from "./describe.js";

export type Shape = readonly number[];

/** A complex scalar as nested input or as `item()` output. */
export interface Complex {
  re: number;
  im: number;
}

export type Scalar = number | boolean | bigint | Complex;
export type NestedArray = Scalar | readonly NestedArray[];

export function shapeSize(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: Shape, where: string): void {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new BridgeInputError(`${where}: shape ${JSON.stringify(shape)} has a dimension that is not a non-negative integer`);
    }
  }
}

/**
 * A host array: dtype, shape and a C-ordered TypedArray. Received arrays view
 * the wire frame they arrived in, so treat `data` as borrowed from the
 * message unless you copy it.
 */
export class NDArray {
  readonly dtype: DType;
  readonly shape: Shape;
  readonly data: TypedArray;

  constructor(data: TypedArray, shape: Shape, dtype?: DType) {
    const dt = dtype ?? dtypeOfTypedArray(data);
    if (!isDType(dt)) throw new BridgeInputError(`unsupported dtype ${JSON.stringify(dt)}`);
    const info = dtypeInfo(dt);
    checkShape(shape, "NDArray");
    if (!(data instanceof info.ctor)) {
      throw new BridgeInputError(
        `dtype ${dt} is held in a ${info.ctor.name}, got ${Object.prototype.toString.call(data).slice(8, -1)}`,
      );
    }
    const want = shapeSize(shape) * info.lanes;
    if (data.length !== want) {
      throw new BridgeInputError(
        `dtype ${dt} with shape [${shape.join(", ")}] needs ${want} ${info.ctor.name} elements, got ${data.length}`,
      );
    }
    this.dtype = dt;
    this.shape = Object.freeze([...shape]);
    this.data = data;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get size(): number {
    return shapeSize(this.shape);
  }

  get nbytes(): number {
    return this.size * dtypeInfo(this.dtype).itemsize;
  }

  /** The raw little-endian bytes, as a view (no copy). */
  bytes(): Uint8Array {
    return new Uint8Array(this.data.buffer, this.data.byteOffset, this.data.byteLength);
  }

  /** A copy that owns its memory (received arrays view a wire frame). */
  copy(): NDArray {
    const Ctor = dtypeInfo(this.dtype).ctor;
    const out = new Ctor(this.data.length);
    (out as unknown as { set(a: ArrayLike<unknown>): void }).set(this.data as unknown as ArrayLike<unknown>);
    return new NDArray(out, this.shape, this.dtype);
  }

  reshape(shape: Shape): NDArray {
    const resolved = resolveReshape(this.size, shape);
    return new NDArray(this.data, resolved, this.dtype);
  }

  /** Element at a flat C-order index, as a JS value (see `toList`). */
  flatItem(i: number): Scalar {
    return readItem(this.dtype, this.data, i);
  }

  /** The single element of a size-1 array, or the element at `index`. */
  item(...index: number[]): Scalar {
    if (index.length === 0) {
      if (this.size !== 1) throw new BridgeInputError(`item() needs a size-1 array, this one has shape [${this.shape.join(", ")}]`);
      return this.flatItem(0);
    }
    if (index.length !== this.ndim) throw new BridgeInputError(`item() needs ${this.ndim} indices, got ${index.length}`);
    let flat = 0;
    for (let k = 0; k < index.length; k++) {
      const n = this.shape[k]!;
      let i = index[k]!;
      if (i < 0) i += n;
      if (!Number.isInteger(i) || i < 0 || i >= n) throw new BridgeInputError(`index ${index[k]} is out of bounds for axis ${k} with size ${n}`);
      flat = flat * n + i;
    }
    return this.flatItem(flat);
  }

  /**
   * Nested JS arrays like numpy's `tolist()`: bool as booleans, 64-bit
   * integers as numbers when exactly representable and as BigInt otherwise,
   * half floats decoded, complex as `{re, im}`.
   */
  toList(): NestedArray {
    const build = (dim: number, offset: number): NestedArray => {
      if (dim === this.ndim) return this.flatItem(offset);
      const n = this.shape[dim]!;
      let stride = 1;
      for (let k = dim + 1; k < this.ndim; k++) stride *= this.shape[k]!;
      const out: NestedArray[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = build(dim + 1, offset + i * stride);
      return out;
    };
    return build(0, 0);
  }

  toString(): string {
    return formatNDArray(this);
  }

  [inspect.custom](): string {
    return formatNDArray(this);
  }

  [describeAs](): string {
    return `${this.dtype}[${this.shape.join(", ")}]`;
  }
}

function readItem(dtype: DType, data: TypedArray, i: number): Scalar {
  switch (dtype) {
    case "bool":
      return data[i] !== 0;
    case "int64":
    case "uint64": {
      const v = data[i] as bigint;
      const n = Number(v);
      return BigInt(n) === v ? n : v;
    }
    case "float16":
      return float16BitsToNumber(data[i] as number);
    case "bfloat16":
      return bfloat16BitsToNumber(data[i] as number);
    case "complex64":
    case "complex128":
      return { re: data[2 * i] as number, im: data[2 * i + 1] as number };
    default:
      return data[i] as number;
  }
}

export function resolveReshape(size: number, shape: Shape): number[] {
  const out = [...shape];
  const free = out.indexOf(-1);
  if (free !== out.lastIndexOf(-1)) throw new BridgeInputError(`reshape: can only infer one dimension, got [${shape.join(", ")}]`);
  if (free >= 0) {
    const known = shapeSize(out.filter((_, k) => k !== free));
    if (known === 0 || size % known !== 0) throw new BridgeInputError(`cannot reshape array of size ${size} into shape [${shape.join(", ")}]`);
    out[free] = size / known;
  }
  checkShape(out, "reshape");
  if (shapeSize(out) !== size) throw new BridgeInputError(`cannot reshape array of size ${size} into shape [${shape.join(", ")}]`);
  return out;
}

function isComplex(x: unknown): x is Complex {
  return typeof x === "object" && x !== null && !Array.isArray(x) && typeof (x as Complex).re === "number" && typeof (x as Complex).im === "number";
}

/** Walk nested input, checking it is rectangular; returns shape and flat scalars. */
function flattenNested(value: NestedArray, path: string): { shape: number[]; flat: Scalar[] } {
  const flat: Scalar[] = [];
  const shape: number[] = [];
  const visit = (v: NestedArray, depth: number, p: string): void => {
    if (Array.isArray(v)) {
      if (depth === shape.length) {
        if (depth > 0 && flat.length > 0) throw new BridgeInputError(`ragged nested array at ${p}: found a list where a scalar was expected`);
        shape.push(v.length);
      } else if (depth > shape.length || shape[depth] !== v.length) {
        throw new BridgeInputError(`ragged nested array at ${p}: length ${v.length}, expected ${shape[depth] ?? "a scalar"}`);
      }
      v.forEach((c, i) => visit(c, depth + 1, `${p}[${i}]`));
      return;
    }
    if (depth !== shape.length) throw new BridgeInputError(`ragged nested array at ${p}: found a scalar where a list of length ${shape[depth]} was expected`);
    if (typeof v !== "number" && typeof v !== "boolean" && typeof v !== "bigint" && !isComplex(v)) {
      throw new BridgeInputError(`nested array element at ${p} is ${describe(v, "kind")}, expected a number, boolean, bigint or {re, im}`);
    }
    flat.push(v);
  };
  visit(value, 0, path);
  return { shape, flat };
}

/**
 * The dtype `jnp.array` would pick for plain JS input with JAX's defaults:
 * bool, int32, float32, complex64; BigInt asks for int64.
 */
function inferDType(flat: readonly Scalar[]): DType {
  let kind = 0; // 0 bool, 1 int, 2 bigint, 3 float, 4 complex
  for (const v of flat) {
    if (typeof v === "boolean") continue;
    if (typeof v === "bigint") kind = Math.max(kind, 2);
    else if (typeof v === "number") kind = Math.max(kind, Number.isInteger(v) ? 1 : 3);
    else kind = 4;
  }
  if (flat.length === 0) return "float32";
  return (["bool", "int32", "int64", "float32", "complex64"] as const)[kind]!;
}

function writeItem(dtype: DType, data: TypedArray, i: number, v: Scalar, path: string): void {
  const kind = dtypeInfo(dtype).kind;
  if (kind === "c") {
    const c = isComplex(v) ? v : { re: Number(v), im: 0 };
    data[2 * i] = c.re;
    data[2 * i + 1] = c.im;
    return;
  }
  if (isComplex(v)) throw new BridgeInputError(`complex value at ${path} cannot be stored as ${dtype}`);
  if (dtype === "int64" || dtype === "uint64") {
    if (typeof v === "number" && !Number.isInteger(v)) throw new BridgeInputError(`value ${v} at ${path} is not an integer (dtype ${dtype})`);
    const b = typeof v === "bigint" ? v : BigInt(typeof v === "boolean" ? Number(v) : v);
    const lo = dtype === "int64" ? -(2n ** 63n) : 0n;
    const hi = dtype === "int64" ? 2n ** 63n - 1n : 2n ** 64n - 1n;
    if (b < lo || b > hi) throw new BridgeInputError(`value ${b} at ${path} is out of range for ${dtype}`);
    (data as BigInt64Array)[i] = b;
    return;
  }
  const n = typeof v === "bigint" ? Number(v) : Number(v);
  if (dtype === "float16") data[i] = numberToFloat16Bits(n);
  else if (dtype === "bfloat16") data[i] = numberToBfloat16Bits(n);
  else if (kind === "i" || kind === "u" || kind === "b") {
    if (!Number.isInteger(n)) throw new BridgeInputError(`value ${n} at ${path} is not an integer (dtype ${dtype})`);
    if (kind === "b") {
      data[i] = n ? 1 : 0;
      return;
    }
    const bits = dtypeInfo(dtype).itemsize * 8;
    const lo = kind === "i" ? -(2 ** (bits - 1)) : 0;
    const hi = kind === "i" ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
    if (n < lo || n > hi) throw new BridgeInputError(`value ${n} at ${path} is out of range for ${dtype}`);
    data[i] = n;
  } else data[i] = n;
}

/**
 * Make a host array from nested JS arrays, a TypedArray or an NDArray.
 * Without `dtype`, nested numbers follow `jnp.array`'s defaults (int32 or
 * float32); a TypedArray keeps its own type.
 */
export function array(value: NestedArray | TypedArray | NDArray, dtype?: DType, shape?: Shape): NDArray {
  if (value instanceof NDArray) {
    if (dtype === undefined || dtype === value.dtype) return shape ? value.reshape(shape) : value;
    return array(value.toList(), dtype, shape ?? value.shape);
  }
  if (ArrayBuffer.isView(value)) {
    const ta = value as TypedArray;
    const dt = dtype ?? dtypeOfTypedArray(ta);
    const lanes = dtypeInfo(dt).lanes;
    return new NDArray(ta, shape ?? [ta.length / lanes], dt);
  }
  if (dtype !== undefined && !isDType(dtype)) throw new BridgeInputError(`unsupported dtype ${JSON.stringify(dtype)}`);
  const { shape: inferred, flat } = flattenNested(value as NestedArray, "");
  const dt = dtype ?? inferDType(flat);
  const info = dtypeInfo(dt);
  const data = new info.ctor(flat.length * info.lanes);
  for (let i = 0; i < flat.length; i++) writeItem(dt, data, i, flat[i]!, `[${i}]`);
  const finalShape = shape ? resolveReshape(flat.length, shape) : inferred;
  return new NDArray(data, finalShape, dt);
}

export function zerosHost(shape: Shape, dtype: DType = "float32"): NDArray {
  const info = dtypeInfo(dtype);
  return new NDArray(new info.ctor(shapeSize(shape) * info.lanes), shape, dtype);
}

