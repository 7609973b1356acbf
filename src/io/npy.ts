/**
 * NPY records (numpy's `.npy` format), byte for byte as `np.save` writes
 * them, and a strict reader.
 *
 * ```ts
 * const bytes = encodeNpy(array([[1, 2], [3, 4]], "float32")); // === np.save's bytes
 * const { array: a, end } = decodeNpy(bytes);                     // one record at an offset
 * const b = loadNpy(bytes);                                       // exactly one record, nothing after it
 * ```
 *
 * The layout (numpy's `numpy/lib/format.py`):
 *
 * - magic `\x93NUMPY`, then the version as two bytes (1, 0);
 * - the header length, a little-endian uint16 (uint32 in versions 2 and 3);
 * - the header: the repr of a Python dict with exactly the keys `descr`,
 *   `fortran_order` and `shape`, written in that (sorted) order as
 *   `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`; for an
 *   array with at least one dimension numpy adds `21 - len(str(shape[0]))`
 *   spaces (room to grow the first axis in place); then spaces and a final
 *   `\n` so that magic + length + header is a multiple of 64 bytes (a full
 *   64 spaces when it already was);
 * - the elements in C order, little-endian.
 *
 * Descriptors: `|b1` (bool), `|i1` `<i2` `<i4` `<i8`, `|u1` `<u2` `<u4`
 * `<u8`, `<f2` `<f4` `<f8`, `<c8` `<c16`, and `<V2` for bfloat16: numpy has
 * no bfloat16, and `np.save` of an ml_dtypes bfloat16 array (which is what
 * `jnp.save` and equinox do for a JAX bfloat16 array) writes the dtype's
 * `str`, `<V2`, two opaque bytes per element. `jnp.load` turns any `V2` back
 * into bfloat16; so does this reader (`<V2` or `|V2`).
 *
 * The writer always writes version 1.0 (a header with at most 64
 * dimensions, numpy's limit, always fits). The reader takes versions 1.0,
 * 2.0 and 3.0 (numpy falls back to the later ones for huge headers), any
 * key order and spacing in the dict, and big-endian descriptors (swapped to
 * little-endian on read). It refuses, with the byte offset: a bad magic
 * string, another version, a header that is not such a dict (unknown or
 * missing keys, a bad shape, a non-bool `fortran_order`), `fortran_order:
 * True` (save a C-ordered array), a dtype jaxbridge does not have, a
 * record cut short, and, where the caller says what it expects, a dtype or
 * shape that differs.
 */

import { type DType, DTYPES, dtypeInfo } from "../values/dtype.js";
import { JaxBridgeError } from "../values/errors.js";
import { NDArray, type Shape } from "../values/ndarray.js";

/** A malformed or unexpected NPY record. `offset` is the byte offset (in the buffer given) where the problem is. */
export class NpyFormatError extends JaxBridgeError {
  override name = "NpyFormatError";
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} (at byte offset ${offset})`);
    this.offset = offset;
  }
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const MAGIC_LEN = 8; // magic + 2 version bytes
const ARRAY_ALIGN = 64;
const GROWTH_AXIS_MAX_DIGITS = 21;
/** numpy's NPY_MAXDIMS. */
const MAX_DIMS = 64;
/** A header longer than this is refused (numpy's `np.load` refuses 10000 characters by default). */
const MAX_HEADER_LEN = 1 << 20;

const DESCR: Record<DType, string> = {
  bool: "|b1",
  int8: "|i1",
  int16: "<i2",
  int32: "<i4",
  int64: "<i8",
  uint8: "|u1",
  uint16: "<u2",
  uint32: "<u4",
  uint64: "<u8",
  float16: "<f2",
  bfloat16: "<V2",
  float32: "<f4",
  float64: "<f8",
  complex64: "<c8",
  complex128: "<c16",
};

/** The `descr` `np.save` writes for a dtype: `<f4`, `|b1`, `<V2` for bfloat16. */
export function npyDescr(dtype: DType): string {
  const d = DESCR[dtype];
  if (d === undefined) throw new TypeError(`unsupported dtype ${JSON.stringify(dtype)}; expected one of ${DTYPES.join(", ")}`);
  return d;
}

/** descr (without its byte-order character) -> dtype. */
const BY_CODE = new Map<string, DType>();
for (const dt of DTYPES) BY_CODE.set(DESCR[dt].slice(1), dt);

/** The dtype a descr names, with whether its bytes are big-endian; undefined if jaxbridge has no such dtype. */
function parseDescr(descr: string): { dtype: DType; bigEndian: boolean } | undefined {
  const order = descr[0];
  const code = descr.slice(1);
  if (order !== "<" && order !== ">" && order !== "|") return undefined;
  const dtype = BY_CODE.get(code);
  if (dtype === undefined) return undefined;
  // Two opaque bytes: `<V2` as ml_dtypes' bfloat16 writes it, or a plain `|V2`.
  if (dtype === "bfloat16") return order === ">" ? undefined : { dtype, bigEndian: false };
  const size = dtypeInfo(dtype).itemsize;
  // `|` (no byte order) is for one-byte types; numpy writes `<` or `>` for the others.
  if (order === "|" && size !== 1) return undefined;
  return { dtype, bigEndian: order === ">" && size > 1 };
}

function shapeRepr(shape: Shape): string {
  if (shape.length === 0) return "()";
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(", ")})`;
}

function checkWritableShape(shape: Shape): void {
  if (shape.length > MAX_DIMS) throw new JaxBridgeError(`NPY: an array with ${shape.length} dimensions cannot be saved (numpy allows at most ${MAX_DIMS})`);
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new JaxBridgeError(`NPY: shape [${shape.join(", ")}] has a dimension that is not a non-negative integer`);
  }
}

/**
 * The NPY 1.0 header for an array of this dtype and shape (C order): magic,
 * version, length and the padded dict, exactly as `np.save` writes it. A
 * multiple of 64 bytes long.
 */
export function encodeNpyHeader(dtype: DType, shape: Shape): Uint8Array {
  checkWritableShape(shape);
  let header = `{'descr': '${npyDescr(dtype)}', 'fortran_order': False, 'shape': ${shapeRepr(shape)}, }`;
  if (shape.length > 0) header += " ".repeat(GROWTH_AXIS_MAX_DIGITS - String(shape[0]).length);
  const hlen = header.length + 1; // the final newline
  const padlen = ARRAY_ALIGN - ((MAGIC_LEN + 2 + hlen) % ARRAY_ALIGN);
  const total = hlen + padlen;
  if (total > 0xffff) throw new JaxBridgeError(`NPY: header of ${total} bytes is too long for format 1.0`);
  const out = new Uint8Array(MAGIC_LEN + 2 + total);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  out[8] = total & 0xff;
  out[9] = total >>> 8;
  let p = MAGIC_LEN + 2;
  for (let i = 0; i < header.length; i++) out[p++] = header.charCodeAt(i);
  out.fill(0x20, p, p + padlen);
  out[out.length - 1] = 0x0a;
  return out;
}

/** The bytes `np.save` writes for this array: header, then the elements (little-endian, C order). */
export function encodeNpy(a: NDArray): Uint8Array {
  const header = encodeNpyHeader(a.dtype, a.shape);
  const data = a.bytes();
  const out = new Uint8Array(header.length + data.length);
  out.set(header, 0);
  out.set(data, header.length);
  return out;
}

/** What an NPY header says. */
export interface NpyHeader {
  version: [number, number];
  dtype: DType;
  shape: number[];
  /** The stored bytes are big-endian (the array returned is always little-endian). */
  bigEndian: boolean;
  /** The descr as written (`<f4`). */
  descr: string;
  /** Offset of the first data byte. */
  dataOffset: number;
  /** Number of data bytes. */
  dataLength: number;
}

/** What a caller expects of a record: a mismatch is an error. */
export interface NpyExpect {
  dtype?: DType;
  shape?: Shape;
}

/**
 * Read an NPY header starting at `offset` of `buf`. Throws `NpyFormatError`
 * (with the offset of the fault) for anything numpy's `np.load` would
 * refuse, for dtypes jaxbridge does not have, and for `fortran_order: True`.
 */
export function decodeNpyHeader(buf: Uint8Array, offset = 0): NpyHeader {
  const start = offset;
  if (buf.length - start < MAGIC_LEN) {
    throw new NpyFormatError(`NPY record cut short: ${buf.length - start} bytes left, the magic string and version need ${MAGIC_LEN}`, start);
  }
  for (let i = 0; i < MAGIC.length; i++) {
    if (buf[start + i] !== MAGIC[i]) {
      const got = Array.from(buf.subarray(start, start + MAGIC.length), (b) => b.toString(16).padStart(2, "0")).join(" ");
      throw new NpyFormatError(`not an NPY record: the magic string should be 93 4e 55 4d 50 59 ("\\x93NUMPY"), found ${got}`, start);
    }
  }
  const major = buf[start + 6]!;
  const minor = buf[start + 7]!;
  let lenBytes: number;
  if (major === 1 && minor === 0) lenBytes = 2;
  else if ((major === 2 || major === 3) && minor === 0) lenBytes = 4;
  else throw new NpyFormatError(`unsupported NPY format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`, start + 6);
  const lenAt = start + MAGIC_LEN;
  if (buf.length - lenAt < lenBytes) {
    throw new NpyFormatError(`NPY record cut short: the header length field needs ${lenBytes} bytes, ${buf.length - lenAt} left`, lenAt);
  }
  const hlen = lenBytes === 2 ? buf[lenAt]! | (buf[lenAt + 1]! << 8) : (buf[lenAt]! | (buf[lenAt + 1]! << 8) | (buf[lenAt + 2]! << 16)) + buf[lenAt + 3]! * 2 ** 24;
  const hAt = lenAt + lenBytes;
  if (hlen > MAX_HEADER_LEN) throw new NpyFormatError(`NPY header length ${hlen} is implausibly large`, lenAt);
  if (buf.length - hAt < hlen) {
    throw new NpyFormatError(`NPY record cut short: the header is ${hlen} bytes, ${buf.length - hAt} left`, hAt);
  }
  const hbytes = buf.subarray(hAt, hAt + hlen);
  const text = major === 3 ? new TextDecoder("utf-8", { fatal: false }).decode(hbytes) : latin1(hbytes);
  const dict = parseHeaderDict(text, hAt);
  const descr = dict.descr;
  const parsed = parseDescr(descr);
  if (parsed === undefined) {
    throw new NpyFormatError(`NPY descr ${pyRepr(descr)} is not a dtype jaxbridge supports (${DTYPES.map(npyDescr).join(" ")})`, hAt);
  }
  if (dict.fortranOrder) {
    throw new NpyFormatError(
      `NPY record is in Fortran order (fortran_order: True), which is not supported; save a C-ordered array (np.ascontiguousarray)`,
      hAt,
    );
  }
  const size = dict.shape.reduce((a, b) => a * b, 1);
  const dataLength = size * dtypeInfo(parsed.dtype).itemsize;
  if (!Number.isSafeInteger(dataLength)) throw new NpyFormatError(`NPY shape ${shapeRepr(dict.shape)} is too large`, hAt);
  return {
    version: [major, minor],
    dtype: parsed.dtype,
    shape: dict.shape,
    bigEndian: parsed.bigEndian,
    descr,
    dataOffset: hAt + hlen,
    dataLength,
  };
}

function latin1(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
}

function pyRepr(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

interface HeaderDict {
  descr: string;
  fortranOrder: boolean;
  shape: number[];
}

type Lit = { t: "str"; v: string } | { t: "int"; v: number } | { t: "bool"; v: boolean } | { t: "tuple"; v: Lit[] } | { t: "list" } | { t: "other"; v: string };

/**
 * Parse the header: a Python dict literal with str keys, the values numpy
 * writes (a str descr, a bool, a tuple of ints), then only whitespace.
 */
function parseHeaderDict(text: string, at: number): HeaderDict {
  let i = 0;
  const fail = (what: string): never => {
    const shown = text.length > 200 ? `${text.slice(0, 200)}...` : text;
    throw new NpyFormatError(`malformed NPY header: ${what} at character ${i} of ${JSON.stringify(shown.trimEnd())}`, at);
  };
  const ws = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const str = (): string => {
    const q = text[i];
    if (q !== "'" && q !== '"') fail("expected a string");
    i++;
    let out = "";
    while (i < text.length && text[i] !== q) {
      if (text[i] === "\\") {
        const n = text[i + 1];
        if (n === "\\" || n === "'" || n === '"') out += n;
        else fail("unsupported escape in a string");
        i += 2;
      } else out += text[i++];
    }
    if (i >= text.length) fail("unterminated string");
    i++;
    return out;
  };
  const value = (depth: number): Lit => {
    ws();
    const c = text[i];
    if (c === "'" || c === '"') return { t: "str", v: str() };
    if (c === "(" || c === "[") {
      if (depth > 2) fail("nesting too deep");
      const close = c === "(" ? ")" : "]";
      i++;
      const items: Lit[] = [];
      let sawComma = false;
      for (;;) {
        ws();
        if (text[i] === close) {
          i++;
          break;
        }
        items.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          sawComma = true;
        } else if (text[i] !== close) fail(`expected ',' or '${close}'`);
      }
      if (c === "[") return { t: "list" };
      // `(3)` is an int in parentheses, not a tuple
      if (items.length === 1 && !sawComma) return items[0]!;
      return { t: "tuple", v: items };
    }
    const m = /^(?:[0-9][0-9_]*|True|False|None|[A-Za-z_][A-Za-z0-9_]*)/.exec(text.slice(i));
    if (m === null) return fail("expected a value");
    i += m[0].length;
    if (m[0] === "True" || m[0] === "False") return { t: "bool", v: m[0] === "True" };
    if (/^[0-9]/.test(m[0])) {
      const digits = m[0].replace(/_/g, "");
      if (digits.length > 1 && digits[0] === "0" && /[1-9]/.test(digits)) fail("an integer with a leading zero");
      return { t: "int", v: Number(digits) };
    }
    return { t: "other", v: m[0] };
  };
  ws();
  if (text[i] !== "{") fail("the header is not a dict: expected '{'");
  i++;
  const entries = new Map<string, Lit>();
  for (;;) {
    ws();
    if (text[i] === "}") {
      i++;
      break;
    }
    const k = str();
    ws();
    if (text[i] !== ":") fail("expected ':'");
    i++;
    const v = value(0);
    entries.set(k, v);
    ws();
    if (text[i] === ",") i++;
    else if (text[i] !== "}") fail("expected ',' or '}'");
  }
  ws();
  if (i !== text.length) fail("unexpected text after the dict");
  const keys = [...entries.keys()].sort();
  if (keys.length !== 3 || keys[0] !== "descr" || keys[1] !== "fortran_order" || keys[2] !== "shape") {
    throw new NpyFormatError(`malformed NPY header: the dict must have exactly the keys 'descr', 'fortran_order', 'shape'; it has ${keys.map(pyRepr).join(", ") || "none"}`, at);
  }
  const descr = entries.get("descr")!;
  if (descr.t !== "str") {
    throw new NpyFormatError(`malformed NPY header: descr must be a str (structured dtypes are not supported), got ${litStr(descr)}`, at);
  }
  const fo = entries.get("fortran_order")!;
  if (fo.t !== "bool") throw new NpyFormatError(`malformed NPY header: fortran_order must be True or False, got ${litStr(fo)}`, at);
  const shape = entries.get("shape")!;
  if (shape.t !== "tuple" || !shape.v.every((d) => d.t === "int" && Number.isSafeInteger(d.v))) {
    throw new NpyFormatError(`malformed NPY header: shape must be a tuple of non-negative ints, got ${litStr(shape)}`, at);
  }
  if (shape.v.length > MAX_DIMS) throw new NpyFormatError(`NPY shape has ${shape.v.length} dimensions; numpy allows at most ${MAX_DIMS}`, at);
  return { descr: descr.v, fortranOrder: fo.v, shape: shape.v.map((d) => (d as { v: number }).v) };
}

function litStr(l: Lit): string {
  switch (l.t) {
    case "str":
      return pyRepr(l.v);
    case "int":
      return String(l.v);
    case "bool":
      return l.v ? "True" : "False";
    case "tuple":
      return l.v.length === 1 ? `(${litStr(l.v[0]!)},)` : `(${l.v.map(litStr).join(", ")})`;
    case "list":
      return "a list";
    default:
      return l.v;
  }
}

/**
 * Read one NPY record starting at `offset`: the array (its own copy of the
 * bytes, little-endian) and the offset just past it. With `expect`, a record
 * of another dtype or shape is an error naming both.
 */
export function decodeNpy(buf: Uint8Array, offset = 0, expect: NpyExpect = {}): { array: NDArray; header: NpyHeader; end: number } {
  const h = decodeNpyHeader(buf, offset);
  if (expect.dtype !== undefined && expect.dtype !== h.dtype) {
    throw new NpyFormatError(`NPY record has dtype ${h.dtype} (descr ${pyRepr(h.descr)}), expected ${expect.dtype} (descr ${pyRepr(npyDescr(expect.dtype))})`, offset);
  }
  if (expect.shape !== undefined && (expect.shape.length !== h.shape.length || expect.shape.some((d, k) => d !== h.shape[k]))) {
    throw new NpyFormatError(`NPY record has shape ${shapeRepr(h.shape)}, expected ${shapeRepr(expect.shape)}`, offset);
  }
  const left = buf.length - h.dataOffset;
  if (left < h.dataLength) {
    throw new NpyFormatError(
      `NPY record cut short: ${h.dtype}${shapeRepr(h.shape)} needs ${h.dataLength} data bytes, ${left} left`,
      h.dataOffset,
    );
  }
  const info = dtypeInfo(h.dtype);
  // A copy that owns its memory (and is aligned for the TypedArray), even when `buf` is a Buffer view.
  const bytes = new Uint8Array(h.dataLength);
  bytes.set(buf.subarray(h.dataOffset, h.dataOffset + h.dataLength));
  if (h.bigEndian) {
    const w = info.itemsize / info.lanes;
    for (let p = 0; p < bytes.length; p += w) bytes.subarray(p, p + w).reverse();
  }
  const data = new info.ctor(bytes.buffer, 0, (h.dataLength / info.itemsize) * info.lanes);
  return { array: new NDArray(data, h.shape, h.dtype), header: h, end: h.dataOffset + h.dataLength };
}

/** Read a buffer that holds exactly one NPY record (an `.npy` file); bytes after it are an error. */
export function loadNpy(buf: Uint8Array, expect: NpyExpect = {}): NDArray {
  const { array, end } = decodeNpy(buf, 0, expect);
  if (end !== buf.length) throw new NpyFormatError(`${buf.length - end} trailing bytes after the NPY record`, end);
  return array;
}
