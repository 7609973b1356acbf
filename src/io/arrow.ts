/**
 * Pytrees of arrays that share a leading axis, as Apache Arrow tables.
 *
 * ```ts
 * const table = toArrow({ obs: obsNx4, reward: rewardN });   // columns ['obs'], ['reward']
 * await writeArrowFile("run/steps.arrow", table);              // pandas, polars, DuckDB read it
 * const tree = fromArrow(table);                              // { obs: NDArray, reward: NDArray }
 * const onDevice = await putArrow(jb, table);                 // { obs: DeviceArray, reward: DeviceArray }
 * const back = await getArrow(jb, onDevice);                  // a Table again
 * ```
 *
 * ## Columns
 *
 * One column per array leaf, in `flatten` order, named by the leaf's key
 * path as JAX's `keystr` writes it (see `keystr` in tree.ts): `['obs']` for
 * a dict key, `[0]` for a list index, `.w` for a Module field,
 * `[1]['params'].w` nested. A tree that is a single array gives one column
 * named `""`. Each row is one slice along the leading axis, so every leaf
 * must have at least one axis and all leading axes must agree.
 *
 * ## Types
 *
 * | jaxbridge dtype          | Arrow type of the innermost values                  |
 * |--------------------------|-----------------------------------------------------|
 * | int8..int64, uint8..64   | the same Arrow integer type                         |
 * | float16, float32, float64| Float16 (halffloat), Float32, Float64               |
 * | bool                     | Bool, bit-packed as Arrow requires (see below)      |
 * | bfloat16                 | Uint16 holding the raw bfloat16 bits                |
 * | complex64, complex128    | FixedSizeList<Float32/Float64>[2]: (real, imag)     |
 *
 * A leaf of shape `[n, d1, ..., dk]` is a column of `n` rows of type
 * `FixedSizeList[d1]<... FixedSizeList[dk]<values>>` (d1 outermost, as
 * polars' `Array` type reads it); complex adds the innermost `[2]`. Every
 * field is non-nullable and carries metadata `jaxbridge.dtype` (the dtype
 * name) and `jaxbridge.shape` (the per-row shape `[d1,...,dk]` as compact
 * JSON; `[]` for a 1-d leaf). With it, bfloat16 and complex round-trip
 * exactly; a reader that ignores it sees the raw uint16 bits and
 * `[re, im]` pairs. Arrow has no bfloat16 and no complex type; nothing is
 * converted, only relabelled.
 *
 * Reading, the metadata is optional (a table written by pandas or polars is
 * read by its Arrow types alone: Float16 is float16, Uint16 is uint16) but
 * must agree with the types when present. Nulls, and types other than the
 * ones above (strings, lists of varying length, structs, dictionaries,
 * timestamps, ...), are refused with an error naming the column.
 *
 * ## Copies
 *
 * `toArrow` builds every column over the NDArray's own TypedArray (no
 * element loop, no copy), except bool: Arrow packs booleans into bits, so
 * a bool leaf is packed (one pass) and unpacked again by `fromArrow`.
 * `fromArrow` returns views over the column's buffer when the column is a
 * single chunk (one record batch); columns of several chunks are
 * concatenated once. Arrow's IPC reader views its input when it is 8-byte
 * aligned, so `tableFromIPC(bytes)` followed by `fromArrow` does not copy
 * either. Writing IPC bytes (`tableToIPC`) serializes: one copy.
 *
 * ## Rebuilding the tree
 *
 * `fromArrow` rebuilds lists (from `[i]`) and dicts (from `['k']`) from the
 * column names; `.attr` entries come back as plain-object fields. What the
 * names cannot say is lost: Module classes and their static fields, static
 * (non-array) leaves, `None` subtrees and empty containers (a list index
 * with no column comes back as `null`). Pass `{ like: template }` to rebuild
 * into the template's exact structure instead (Modules, statics and all);
 * its array leaves then also fix each column's dtype and per-row shape.
 * Pass `{ plainNames: true }` to read a table whose columns are plain names
 * (`obs`, `reward`, as pandas writes them) as the keys of one dict.
 *
 * ## The sidecar
 *
 * `putArrow(session, table)` sends the table as one Arrow IPC stream; the
 * sidecar reads each column into a numpy array without copying where it
 * can (fixed-size lists become the reshaped child buffer) and places it on
 * the device. `getArrow(session, tree)` is the way back. The stream travels
 * as a trailing frame described by a `uint8[nbytes]` array value (see
 * `streamField`), never inside msgpack; like any array it is split into
 * 16 MiB frames, which the receiver joins once. Copies on the way in: the
 * IPC serialization here, the join of a stream over 16 MiB there; on the way
 * out: the serialization there, the join here; reading the stream is free.
 */
import { mkdir, readFile, rm } from "node:fs/promises";
import { writeFileAtomic } from "./atomic-file.js";
import { createWriteStream, type WriteStream } from "node:fs";
import { dirname } from "node:path";
import {
  Bool,
  type Data,
  DataType,
  Field,
  FixedSizeList,
  Float16,
  Float32,
  Float64,
  Int8,
  Int16,
  Int32,
  Int64,
  Precision,
  RecordBatch,
  RecordBatchFileWriter,
  RecordBatchStreamWriter,
  Schema,
  Struct,
  Table,
  Uint8,
  Uint16,
  Uint32,
  Uint64,
  makeData,
  tableFromIPC,
  tableToIPC,
} from "apache-arrow";
import { type DType, type TypedArray, dtypeInfo, isDType } from "../values/dtype.js";
import { NDArray, shapeSize } from "../values/ndarray.js";
import { DeviceArray } from "../values/device-array.js";
import { BridgeInputError, ProtocolError } from "../values/errors.js";
import type { Session } from "../session/session.js";
import { type KeyEntry, type KeyPath, compareKeys, flattenWithPath, isArray, keystr, unflatten } from "../values/tree.js";


/** Field metadata key holding the jaxbridge dtype name. */
export const DTYPE_KEY = "jaxbridge.dtype";
/** Field metadata key holding the per-row shape as compact JSON (`[3,4]`). */
export const SHAPE_KEY = "jaxbridge.shape";

/** Arrow IPC has two framings: a stream (`.arrows`) and a file with a footer (`.arrow`, `.feather`). */
export type IPCFormat = "stream" | "file";

// ---------------------------------------------------------------------------
// Types

/** The Arrow type of a dtype's innermost values (complex: of one part). */
function valueType(dtype: DType): DataType {
  switch (dtype) {
    case "bool":
      return new Bool();
    case "int8":
      return new Int8();
    case "int16":
      return new Int16();
    case "int32":
      return new Int32();
    case "int64":
      return new Int64();
    case "uint8":
      return new Uint8();
    case "uint16":
    case "bfloat16":
      return new Uint16();
    case "uint32":
      return new Uint32();
    case "uint64":
      return new Uint64();
    case "float16":
      return new Float16();
    case "float32":
    case "complex64":
      return new Float32();
    case "float64":
    case "complex128":
      return new Float64();
  }
}

/** The dtype Arrow's innermost value type holds as itself, or null. */
function storageDType(t: DataType): DType | null {
  if (DataType.isBool(t)) return "bool";
  if (DataType.isInt(t)) {
    const bits = t.bitWidth;
    if (bits !== 8 && bits !== 16 && bits !== 32 && bits !== 64) return null;
    return `${t.isSigned ? "int" : "uint"}${bits}` as DType;
  }
  if (DataType.isFloat(t)) {
    if (t.precision === Precision.HALF) return "float16";
    if (t.precision === Precision.SINGLE) return "float32";
    if (t.precision === Precision.DOUBLE) return "float64";
  }
  return null;
}

const COMPLEX_PART: Partial<Record<DType, DType>> = { complex64: "float32", complex128: "float64" };

interface Layout {
  dtype: DType;
  /** Per-row shape of the array (complex: without the [2]). */
  row: number[];
  /** FixedSizeList sizes, outermost first (complex: with the [2]). */
  dims: number[];
  /** dtype of the innermost Arrow values. */
  storage: DType;
}

/** How a field maps to an array, or an error naming the column. */
function layoutOf(field: Field): Layout {
  const name = JSON.stringify(field.name);
  let t: DataType = field.type;
  const dims: number[] = [];
  while (DataType.isFixedSizeList(t)) {
    dims.push(t.listSize);
    t = t.children[0]!.type;
  }
  const storage = storageDType(t);
  if (storage === null) {
    throw new BridgeInputError(`column ${name} has Arrow type ${String(field.type)}, which maps to no jaxbridge dtype (supported: Bool, Int8..64, Uint8..64, Float16/32/64 and FixedSizeLists of these)`);
  }
  const meta = field.metadata;
  const want = meta.get(DTYPE_KEY);
  let dtype: DType = storage;
  if (want !== undefined && want !== storage) {
    if (!isDType(want)) throw new BridgeInputError(`column ${name} names dtype ${JSON.stringify(want)} in its metadata, which is not a jaxbridge dtype`);
    const ok = (want === "bfloat16" && storage === "uint16") || (COMPLEX_PART[want] === storage && dims.length > 0 && dims[dims.length - 1] === 2);
    if (!ok) throw new BridgeInputError(`column ${name} has metadata ${DTYPE_KEY}=${want} but Arrow type ${String(field.type)}, which cannot hold it`);
    dtype = want;
  }
  const row = COMPLEX_PART[dtype] !== undefined ? dims.slice(0, -1) : dims;
  const shapeMeta = meta.get(SHAPE_KEY);
  if (shapeMeta !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(shapeMeta);
    } catch {
      parsed = undefined;
    }
    if (!Array.isArray(parsed) || !parsed.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new BridgeInputError(`column ${name} has metadata ${SHAPE_KEY}=${JSON.stringify(shapeMeta)}, expected a JSON list of sizes`);
    }
    if (parsed.length !== row.length || parsed.some((d, i) => d !== row[i])) {
      throw new BridgeInputError(`column ${name} has metadata ${SHAPE_KEY}=${shapeMeta} but its Arrow type ${String(field.type)} holds rows of shape [${row.join(",")}]`);
    }
  }
  return { dtype, row, dims, storage };
}

// ---------------------------------------------------------------------------
// NDArray -> column

function packBits(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(bytes.length / 8));
  for (let i = 0; i < bytes.length; i++) if (bytes[i]) out[i >> 3]! |= 1 << (i & 7);
  return out;
}

/** One column over `a`'s buffer: a field with the jaxbridge metadata and its data. */
export function columnFromNDArray(name: string, a: NDArray): { field: Field; data: Data } {
  if (a.ndim === 0) throw new BridgeInputError(`a scalar (shape []) cannot be a column: toArrow needs a leading axis of rows`, name);
  const n = a.shape[0]!;
  const row = a.shape.slice(1);
  const dims = COMPLEX_PART[a.dtype] !== undefined ? [...row, 2] : [...row];
  const vt = valueType(a.dtype);
  let data: Data =
    a.dtype === "bool"
      ? makeData({ type: vt as Bool, length: a.size, nullCount: 0, data: packBits(a.data as Uint8Array) })
      : makeData({ type: vt, length: a.data.length, nullCount: 0, data: a.data } as never);
  for (let j = dims.length - 1; j >= 0; j--) {
    const type = new FixedSizeList(dims[j]!, new Field("item", data.type, true));
    data = makeData({ type, length: n * shapeSize(dims.slice(0, j)), nullCount: 0, child: data });
  }
  const metadata = new Map([
    [DTYPE_KEY, a.dtype],
    [SHAPE_KEY, JSON.stringify(row)],
  ]);
  return { field: new Field(name, data.type, false, metadata), data };
}

function tableOf(columns: { field: Field; data: Data }[], rows: number): Table {
  const schema = new Schema(columns.map((c) => c.field));
  const struct = makeData({ type: new Struct(schema.fields), length: rows, nullCount: 0, children: columns.map((c) => c.data) });
  return new Table(schema, [new RecordBatch(schema, struct)]);
}

/** Throw unless all leading axes agree, naming each leaf and its length. */
function checkRows(named: { name: string; shape: readonly number[] }[]): number {
  for (const { name, shape } of named) {
    if (shape.length === 0) throw new BridgeInputError(`a scalar (shape []) cannot be a column: leaves need a leading axis of rows`, name || "the root");
  }
  const rows = named[0]!.shape[0]!;
  if (named.some((c) => c.shape[0] !== rows)) {
    const shown = named.map((c) => `${c.name || "the root"} has ${c.shape[0]}`).join(", ");
    throw new BridgeInputError(`leaves must share their leading axis to form a table; ${shown}`);
  }
  return rows;
}

/**
 * A pytree of NDArrays that share a leading axis, as an Arrow Table: one
 * column per array leaf named by its key path (module docs). Static leaves
 * are left out. No copy except for bool leaves.
 */
export function toArrow(tree: unknown): Table {
  const { leaves } = flattenWithPath(tree);
  const cols: { name: string; a: NDArray }[] = [];
  for (const { path, value } of leaves) {
    const name = keystr(path);
    if (value instanceof DeviceArray) throw new BridgeInputError(`is a DeviceArray: toArrow takes host arrays; use getArrow(session, tree) for device arrays, or fetch them first`, name || "the root");
    if (value instanceof NDArray) cols.push({ name, a: value });
    else if (isArray(value)) throw new BridgeInputError(`is a traced value, not a host array: toArrow needs NDArrays`, name || "the root");
  }
  if (cols.length === 0) throw new BridgeInputError("toArrow needs a pytree with at least one NDArray leaf");
  const rows = checkRows(cols.map((c) => ({ name: c.name, shape: c.a.shape })));
  return tableOf(
    cols.map((c) => columnFromNDArray(c.name, c.a)),
    rows,
  );
}

// ---------------------------------------------------------------------------
// column -> NDArray

/** The innermost Data of one chunk, with nulls refused at every level. */
function leafData(name: string, chunk: Data, depth: number): Data {
  let d = chunk;
  for (let k = 0; ; k++) {
    if (d.nullCount > 0) throw new BridgeInputError(`column ${JSON.stringify(name)} has ${d.nullCount} null ${k === depth ? "values" : "entries"}; jaxbridge arrays have no nulls`);
    if (k === depth) return d;
    d = d.children[0]!;
  }
}

function unpackBits(bits: Uint8Array, bitOffset: number, out: Uint8Array, at: number, count: number): void {
  for (let i = 0; i < count; i++) {
    const b = bitOffset + i;
    out[at + i] = (bits[b >> 3]! >> (b & 7)) & 1;
  }
}

/**
 * A column as an NDArray of shape `[rows, ...rowShape]`. A single-chunk
 * column (bool excepted) is viewed, not copied; the result then shares the
 * table's memory.
 */
export function columnToNDArray(field: Field, chunks: readonly Data[]): NDArray {
  const { dtype, row, dims, storage } = layoutOf(field);
  const info = dtypeInfo(dtype);
  const perRow = shapeSize(dims);
  const rows = chunks.reduce((s, c) => s + c.length, 0);
  const count = rows * perRow;
  const shape = [rows, ...row];
  const leaves = chunks.map((c) => {
    const d = leafData(field.name, c, dims.length);
    if (d.length < c.length * perRow) throw new BridgeInputError(`column ${JSON.stringify(field.name)} holds ${d.length} values for ${c.length} rows of ${perRow}`);
    return d;
  });
  if (storage === "bool") {
    const out = new Uint8Array(count);
    let at = 0;
    chunks.forEach((c, i) => {
      const n = c.length * perRow;
      unpackBits(leaves[i]!.values as Uint8Array, leaves[i]!.offset, out, at, n);
      at += n;
    });
    return new NDArray(out, shape, dtype);
  }
  const values = (d: Data, n: number): TypedArray => {
    const v = d.values as TypedArray;
    if (!(v instanceof info.ctor)) throw new ProtocolError(`column ${JSON.stringify(field.name)}: Arrow gave a ${v.constructor.name} for ${dtype}`);
    return v.subarray(0, n) as TypedArray;
  };
  if (chunks.length === 1) return new NDArray(values(leaves[0]!, count), shape, dtype);
  const out = new info.ctor(count);
  let at = 0;
  chunks.forEach((c, i) => {
    const n = c.length * perRow;
    (out as unknown as { set(a: ArrayLike<unknown>, at: number): void }).set(values(leaves[i]!, n) as unknown as ArrayLike<unknown>, at);
    at += n;
  });
  return new NDArray(out, shape, dtype);
}

export interface FromArrowOptions {
  /**
   * A template tree: rebuild into its structure (Modules, static leaves,
   * `None`s) instead of guessing from the names. Its array leaves name the
   * columns (by key path) and fix their dtype and per-row shape.
   */
  like?: unknown;
  /** Columns are plain names (`obs`), read as the keys of one dict, not key paths. */
  plainNames?: boolean;
}

/**
 * An Arrow Table as a pytree of NDArrays: the tree is rebuilt from the
 * column names (module docs), or from `opts.like`. Refuses, naming the
 * column, a table it cannot map: an unparsable name, a type with no dtype,
 * nulls, metadata that disagrees with the type.
 */
export function fromArrow(table: Table, opts: FromArrowOptions = {}): unknown {
  const plan = planColumns(
    table.schema.fields.map((f) => f.name),
    opts,
  );
  const arrays = new Map<string, NDArray>();
  table.schema.fields.forEach((field, i) => {
    const col = table.getChildAt(i);
    if (col === null) throw new ProtocolError(`column ${JSON.stringify(field.name)} is missing from the table`);
    if (col.length !== table.numRows) throw new BridgeInputError(`column ${JSON.stringify(field.name)} has ${col.length} rows, the table ${table.numRows}`);
    arrays.set(field.name, columnToNDArray(field, col.data));
  });
  return plan(arrays);
}

// ---------------------------------------------------------------------------
// Column names <-> tree

/**
 * Parse a column name written by `keystr` (`[0]['params'].w`) back into a
 * key path. Accepts any Python str literal in `[...]` (single or double
 * quotes, `\\ \' \" \t \n \r \xNN \uNNNN \UNNNNNNNN` escapes).
 */
export function parseKeyPath(name: string): KeyPath {
  const bad = (why: string): never => {
    throw new BridgeInputError(`column ${JSON.stringify(name)} is not a key path as keystr writes it (${why}); expected entries like [0], ['key'] or .attr. Pass {plainNames: true} for plain column names, or {like: template}`);
  };
  const out: KeyEntry[] = [];
  let i = 0;
  while (i < name.length) {
    const c = name[i]!;
    if (c === ".") {
      let j = i + 1;
      while (j < name.length && name[j] !== "." && name[j] !== "[") j++;
      if (j === i + 1) bad(`empty attribute at offset ${i}`);
      out.push({ kind: "attr", name: name.slice(i + 1, j) });
      i = j;
    } else if (c === "[") {
      const q = name[i + 1];
      if (q === "'" || q === '"') {
        let j = i + 2;
        let key = "";
        for (;;) {
          if (j >= name.length) bad("unterminated string");
          const ch = name[j]!;
          if (ch === q) break;
          if (ch !== "\\") {
            key += ch;
            j++;
            continue;
          }
          const e = name[j + 1];
          const hex = (len: number): void => {
            const h = name.slice(j + 2, j + 2 + len);
            if (!/^[0-9a-fA-F]+$/.test(h) || h.length !== len) bad(`bad escape \\${e}${h}`);
            const cp = parseInt(h, 16);
            if (cp > 0x10ffff) bad(`escape \\${e}${h} is beyond Unicode`);
            key += String.fromCodePoint(cp);
            j += 2 + len;
          };
          if (e === "x") hex(2);
          else if (e === "u") hex(4);
          else if (e === "U") hex(8);
          else {
            const simple: Record<string, string> = { "\\": "\\", "'": "'", '"': '"', t: "\t", n: "\n", r: "\r" };
            if (e === undefined || simple[e] === undefined) bad(`unknown escape \\${e ?? ""}`);
            key += simple[e!];
            j += 2;
          }
        }
        if (name[j + 1] !== "]") bad(`expected ] after the string at offset ${j}`);
        out.push({ kind: "key", key });
        i = j + 2;
      } else {
        const m = /^\[(0|[1-9][0-9]*)\]/.exec(name.slice(i));
        if (m === null) bad(`bad index at offset ${i}`);
        const index = Number(m![1]);
        if (!Number.isSafeInteger(index)) bad(`index ${m![1]} is too large`);
        out.push({ kind: "index", index });
        i += m![0].length;
      }
    } else bad(`unexpected ${JSON.stringify(c)} at offset ${i}`);
  }
  return out;
}

/**
 * Check the column names up front and return how to assemble the tree from
 * the columns' arrays (host or device). Throws naming the column.
 */
function planColumns(names: readonly string[], opts: FromArrowOptions): <T extends { dtype: DType; shape: readonly number[] }>(columns: Map<string, T>) => unknown {
  const dup = names.filter((n, i) => names.indexOf(n) !== i);
  if (dup.length) throw new BridgeInputError(`the table has duplicate column names: ${[...new Set(dup)].map((n) => JSON.stringify(n)).join(", ")}`);
  if (names.length === 0) throw new BridgeInputError("the table has no columns");
  if (opts.like !== undefined) return planLike(names, opts.like);
  if (opts.plainNames) {
    return (columns) => {
      const out: Record<string, unknown> = {};
      for (const n of [...names].sort(compareKeys)) setKey(out, n, columns.get(n));
      return out;
    };
  }
  const entries = names.map((column) => ({ column, path: parseKeyPath(column) }));
  const canon = new Map<string, string>();
  for (const e of entries) {
    const k = keystr(e.path);
    const other = canon.get(k);
    if (other !== undefined) throw new BridgeInputError(`columns ${JSON.stringify(other)} and ${JSON.stringify(e.column)} name the same key path ${k}`);
    canon.set(k, e.column);
  }
  // Build once with placeholders to surface structural conflicts before any data moves.
  buildTree(entries.map((e) => ({ ...e, value: null })), 0);
  return (columns) => buildTree(entries.map((e) => ({ ...e, value: columns.get(e.column) })), 0);
}

function planLike(names: readonly string[], like: unknown): <T extends { dtype: DType; shape: readonly number[] }>(columns: Map<string, T>) => unknown {
  const { leaves, treedef } = flattenWithPath(like);
  const wanted = new Map<string, { dtype: DType; shape: readonly number[] } | null>();
  leaves.forEach(({ path, value }) => {
    if (!isArray(value)) return;
    const v = value as { dtype?: unknown; shape?: unknown };
    wanted.set(keystr(path), isDType(v.dtype) && Array.isArray(v.shape) ? { dtype: v.dtype, shape: v.shape as number[] } : null);
  });
  const have = new Set(names);
  const missing = [...wanted.keys()].filter((n) => !have.has(n));
  const extra = names.filter((n) => !wanted.has(n));
  if (missing.length || extra.length) {
    const parts = [];
    if (missing.length) parts.push(`the template's leaves ${missing.map((n) => JSON.stringify(n)).join(", ")} have no column`);
    if (extra.length) parts.push(`columns ${extra.map((n) => JSON.stringify(n)).join(", ")} are not array leaves of the template`);
    throw new BridgeInputError(`the table does not match the template: ${parts.join("; ")}`);
  }
  return (columns) => {
    const out = leaves.map(({ path, value }) => {
      if (!isArray(value)) return value;
      const name = keystr(path);
      const got = columns.get(name)!;
      const want = wanted.get(name);
      if (want) {
        if (got.dtype !== want.dtype) throw new BridgeInputError(`column ${JSON.stringify(name)} holds ${got.dtype}, the template's leaf is ${want.dtype}`);
        const a = got.shape.slice(1);
        const b = want.shape.slice(1);
        if (a.length !== b.length || a.some((d, i) => d !== b[i])) throw new BridgeInputError(`column ${JSON.stringify(name)} has rows of shape [${a.join(", ")}], the template's leaf [${b.join(", ")}]`);
      }
      return got;
    });
    return unflatten(treedef, out);
  };
}

function setKey(o: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
}

interface Entry {
  column: string;
  path: KeyPath;
  value: unknown;
}

function entryLabel(e: KeyEntry): string | number {
  return e.kind === "index" ? e.index : e.kind === "key" ? e.key : e.name;
}

function buildTree(entries: Entry[], depth: number): unknown {
  const here = entries.filter((e) => e.path.length === depth);
  if (here.length > 0) {
    if (entries.length > 1) {
      const other = entries.find((e) => e !== here[0])!;
      throw new BridgeInputError(`column ${JSON.stringify(here[0]!.column)} is a leaf, but column ${JSON.stringify(other.column)} puts a subtree at the same path`);
    }
    return here[0]!.value;
  }
  const kind = entries[0]!.path[depth]!.kind;
  const clash = entries.find((e) => e.path[depth]!.kind !== kind);
  if (clash) {
    const what = (k: string): string => (k === "index" ? "a list" : k === "key" ? "a dict" : "an object with attributes");
    throw new BridgeInputError(`columns ${JSON.stringify(entries[0]!.column)} and ${JSON.stringify(clash.column)} disagree: one makes ${what(kind)}, the other ${what(clash.path[depth]!.kind)} at the same path`);
  }
  const groups = new Map<string | number, Entry[]>();
  for (const e of entries) {
    const label = entryLabel(e.path[depth]!);
    const g = groups.get(label);
    if (g) g.push(e);
    else groups.set(label, [e]);
  }
  if (kind === "index") {
    const n = Math.max(...[...groups.keys()].map(Number)) + 1;
    if (n > 1 + 16 * entries.length + 1024) throw new BridgeInputError(`column ${JSON.stringify(entries.find((e) => entryLabel(e.path[depth]!) === n - 1)!.column)} puts index ${n - 1} in a list with only ${groups.size} columns`);
    const out: unknown[] = new Array(n).fill(null);
    for (const [i, g] of groups) out[i as number] = buildTree(g, depth + 1);
    return out;
  }
  const out: Record<string, unknown> = {};
  for (const k of [...groups.keys()].map(String).sort(compareKeys)) setKey(out, k, buildTree(groups.get(k)!, depth + 1));
  return out;
}

// ---------------------------------------------------------------------------
// IPC: bytes and files

/** A Table or a pytree (through `toArrow`) as Arrow IPC bytes. */
export function toIPC(tableOrTree: unknown, format: IPCFormat = "stream"): Uint8Array {
  const table = tableOrTree instanceof Table ? tableOrTree : toArrow(tableOrTree);
  return tableToIPC(table, format);
}

/**
 * Write a Table or a pytree to an Arrow IPC file, atomically (a temp file,
 * then a rename), creating parent folders. `format: "file"` (the default)
 * writes the random-access file format (`.arrow`, `.feather` v2) that
 * `pyarrow.feather.read_table`, `polars.read_ipc` and DuckDB read;
 * `"stream"` writes the stream format (`pa.ipc.open_stream`,
 * `polars.read_ipc_stream`).
 */
export async function writeArrowFile(path: string, tableOrTree: unknown, opts: { format?: IPCFormat } = {}): Promise<void> {
  const bytes = toIPC(tableOrTree, opts.format ?? "file");
  await writeFileAtomic(path, [bytes]);
}

/** Read an Arrow IPC file in either format. */
export async function readArrowFile(path: string): Promise<Table> {
  return tableFromIPC(await readFile(path));
}

/**
 * Append one record batch per `write` to an Arrow IPC file: per-step
 * results of a loop, readable by pandas, polars and DuckDB once closed
 * (the stream format is readable up to the last complete batch even
 * before). Every batch must have the first one's columns and types.
 */
export class ArrowFileWriter {
  readonly path: string;
  readonly format: IPCFormat;
  #writer: RecordBatchStreamWriter | RecordBatchFileWriter;
  #out: WriteStream;
  #pipe: NodeJS.ReadableStream;
  #done: Promise<void>;
  #schema: Schema | null = null;
  #closed = false;

  private constructor(path: string, format: IPCFormat, out: WriteStream) {
    this.path = path;
    this.format = format;
    this.#out = out;
    this.#writer = format === "file" ? new RecordBatchFileWriter() : new RecordBatchStreamWriter();
    this.#done = new Promise<void>((resolve, reject) => {
      out.on("finish", () => resolve());
      out.on("error", reject);
    });
    this.#done.catch(() => {});
    this.#pipe = this.#writer.toNodeStream();
    this.#pipe.pipe(out);
  }

  /** Open (truncate) `path`, creating parent folders. Default format: `"stream"`. Closed before any write, it leaves no file. */
  static async open(path: string, opts: { format?: IPCFormat } = {}): Promise<ArrowFileWriter> {
    await mkdir(dirname(path), { recursive: true });
    const out = createWriteStream(path);
    await new Promise<void>((resolve, reject) => {
      out.once("open", () => resolve());
      out.once("error", reject);
    });
    return new ArrowFileWriter(path, opts.format ?? "stream", out);
  }

  /** Append a Table or a pytree (one row per slice of the leading axis). */
  write(tableOrTree: unknown): void {
    if (this.#closed) throw new BridgeInputError(`ArrowFileWriter for ${this.path} is closed`);
    const table = tableOrTree instanceof Table ? tableOrTree : toArrow(tableOrTree);
    if (this.#schema === null) this.#schema = table.schema;
    else checkSameSchema(this.#schema, table.schema);
    for (const batch of table.batches) this.#writer.write(batch);
  }

  /** Finish the file (the footer, or the stream's end marker) and wait until it is on disk. */
  async close(): Promise<void> {
    if (this.#closed) return this.#done;
    this.#closed = true;
    if (this.#schema === null) {
      // Nothing written: no schema, so no valid file; leave none.
      this.#pipe.unpipe(this.#out);
      this.#out.end();
      await this.#done;
      await rm(this.path, { force: true });
      return;
    }
    this.#writer.close();
    return this.#done;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function checkSameSchema(a: Schema, b: Schema): void {
  const an = a.fields.map((f) => f.name);
  const bn = b.fields.map((f) => f.name);
  const gone = an.filter((n) => !bn.includes(n));
  const added = bn.filter((n) => !an.includes(n));
  if (gone.length || added.length || an.some((n, i) => n !== bn[i])) {
    throw new BridgeInputError(
      `every batch must have the first batch's columns, in order: ${gone.length ? `missing ${gone.map((n) => JSON.stringify(n)).join(", ")}` : ""}${gone.length && added.length ? "; " : ""}${added.length ? `new ${added.map((n) => JSON.stringify(n)).join(", ")}` : ""}${!gone.length && !added.length ? "the order differs" : ""}`,
    );
  }
  a.fields.forEach((f, i) => {
    const g = b.fields[i]!;
    if (String(f.type) !== String(g.type) || f.metadata.get(DTYPE_KEY) !== g.metadata.get(DTYPE_KEY)) {
      throw new BridgeInputError(`column ${JSON.stringify(f.name)} was ${f.metadata.get(DTYPE_KEY) ?? ""} ${String(f.type)} in the first batch, now ${g.metadata.get(DTYPE_KEY) ?? ""} ${String(g.type)}`);
    }
  });
}

// ---------------------------------------------------------------------------
// Sidecar ops

export interface ArrowRequestOptions {
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
}

/**
 * The request field that carries IPC bytes: a `uint8[nbytes]` array, which
 * the wire sends as raw trailing frames described by the envelope (no
 * copy, never inside msgpack). The one place to change if the stream ever
 * travels as a bare frame index instead.
 */
export function streamField(bytes: Uint8Array): NDArray {
  return new NDArray(bytes, [bytes.byteLength], "uint8");
}

/** The IPC bytes of a reply's `stream` field (a view of the reply's frame). */
export function readStreamField(value: unknown, op: string): Uint8Array {
  if (value instanceof NDArray && value.dtype === "uint8" && value.ndim === 1) {
    const d = value.data;
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  }
  if (value instanceof Uint8Array) return value;
  throw new ProtocolError(`${op} replied without an Arrow IPC stream (got ${value === null ? "null" : typeof value})`);
}

/**
 * Place a table's columns on the sidecar's device, one DeviceArray per
 * column, and rebuild the tree from the column names (or `opts.like`).
 * `source` is a Table or Arrow IPC bytes (stream or file format, e.g. read
 * from disk), sent as they are.
 */
export async function putArrow(session: Session, source: Table | Uint8Array, opts: ArrowRequestOptions & FromArrowOptions & { device?: number } = {}): Promise<unknown> {
  let plan: ReturnType<typeof planColumns> | null = null;
  let bytes: Uint8Array;
  if (source instanceof Table) {
    plan = planColumns(
      source.schema.fields.map((f) => f.name),
      opts,
    );
    source.schema.fields.forEach((f) => layoutOf(f)); // refuse unmappable columns before sending
    bytes = tableToIPC(source, "stream");
  } else if (source instanceof Uint8Array) bytes = source;
  else throw new BridgeInputError(`putArrow takes an apache-arrow Table or Arrow IPC bytes, got ${source === null ? "null" : typeof source}`);
  const stream = streamField(bytes);
  const reply: Record<string, unknown> = await session.request("put_arrow", opts.device !== undefined ? { stream, device: opts.device } : { stream }, { signal: opts.signal, timeoutMs: opts.timeoutMs });
  const got = new Map<string, DeviceArray>();
  for (const [name, v] of Object.entries(reply ?? {})) if (v instanceof DeviceArray) got.set(name, v);
  try {
    if (got.size !== Object.keys(reply ?? {}).length) throw new ProtocolError("put_arrow replied with something other than handles");
    plan ??= planColumns([...got.keys()], opts);
    return plan(got);
  } catch (err) {
    for (const a of got.values()) a.dispose();
    throw err;
  }
}

/** The columns a `getArrow` request names: one per DeviceArray leaf, by key path. */
function deviceColumns(session: Session, tree: unknown): Record<string, DeviceArray> {
  const { leaves } = flattenWithPath(tree);
  const cols: { name: string; a: DeviceArray }[] = [];
  for (const { path, value } of leaves) {
    const name = keystr(path);
    if (value instanceof NDArray) throw new BridgeInputError(`is a host NDArray: getArrow takes DeviceArrays; use toArrow for host arrays`, name || "the root");
    if (!(value instanceof DeviceArray)) continue;
    if (value.disposed) throw new BridgeInputError(`DeviceArray ${value.handle} was disposed`, name || "the root");
    if ((value.owner as unknown) !== session) throw new BridgeInputError(`DeviceArray ${value.handle} belongs to another session`, name || "the root");
    cols.push({ name, a: value });
  }
  if (cols.length === 0) throw new BridgeInputError("getArrow needs a pytree with at least one DeviceArray leaf");
  checkRows(cols.map((c) => ({ name: c.name, shape: c.a.shape })));
  const out: Record<string, DeviceArray> = {};
  for (const c of cols) setKey(out, c.name, c.a);
  return out;
}

/** Fetch the DeviceArray leaves of a tree as Arrow IPC stream bytes (one record batch), e.g. to write to disk as they are. */
export async function getArrowIPC(session: Session, tree: unknown, opts: ArrowRequestOptions = {}): Promise<Uint8Array> {
  const columns = deviceColumns(session, tree);
  const reply: { stream?: unknown } | null = await session.request("get_arrow", { columns }, opts);
  return readStreamField(reply?.stream, "get_arrow");
}

/** Fetch the DeviceArray leaves of a tree as an Arrow Table (columns named by key path); `fromArrow` gives the tree back. */
export async function getArrow(session: Session, tree: unknown, opts: ArrowRequestOptions = {}): Promise<Table> {
  return tableFromIPC(await getArrowIPC(session, tree, opts));
}
