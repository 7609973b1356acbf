/**
 * Saving and loading pytrees in equinox's format, and `Serializable`, the
 * TypeScript counterpart of `lerax.utils.Serializable`.
 *
 * ```ts
 * class Policy extends Serializable {
 *   w: NDArray;
 *   act: string;
 *   static staticFields = ["act"];
 *   constructor(size: number, act: string) {
 *     super();
 *     this.w = zerosHost([size, size]);
 *     this.act = act;
 *   }
 * }
 * const file = await policy.serialize("runs/policy");          // writes runs/policy.eqx
 * const back = await Policy.deserialize("runs/policy", 4, "relu");
 * ```
 *
 * A file is a 32-byte structural fingerprint followed by the leaves as
 * `equinox.tree_serialise_leaves` writes them: one NPY record per leaf that
 * equinox would save, depth first. See `docs/serialization.md` for the
 * layout, the mapping of leaves and the canonical form of the fingerprint.
 */

import { createHash } from "node:crypto";
import { FINGERPRINT_BYTES, readEqx, SerializationError, writeEqx } from "./eqx-file.js";
import { DeviceArray } from "../values/device-array.js";
import { type DType, bfloat16BitsToNumber, dtypeInfo, float16BitsToNumber } from "../values/dtype.js";
import { Module } from "../values/module.js";
import { NDArray, type Shape } from "../values/ndarray.js";
import { NpyFormatError, decodeNpy, decodeNpyHeader, encodeNpyHeader, type NpyHeader } from "./npy.js";
import { type KeyEntry, type KeyPath, type TreeNode, compareKeys, flattenWithPath, isArray, keystr, treeStructure, unflatten } from "../values/tree.js";

/** The tag and version that open the canonical structure of a TypeScript pytree. */
export const STRUCTURE_FORMAT = "jaxbridge.ts-structure";
export const STRUCTURE_VERSION = 1;

// ---------------------------------------------------------------------------
// The fingerprint of a TypeScript structure

type Canon = string | boolean | null | number | Canon[];

/**
 * The canonical form of a pytree's structure (see `docs/serialization.md`):
 * compact JSON of `["jaxbridge.ts-structure", 1, node]`, where a node is
 *
 * - `"*"` for a leaf (array or not: leaves are not described, as JAX's
 *   treedef does not describe them),
 * - `["None"]` / `["undefined"]` for the empty subtrees `null` / `undefined`,
 * - `["list", node...]`, `["dict", [key, node]...]` (keys sorted by code point),
 * - `["module", className, [field, "child", node] | [field, "static", value]...]`
 *   with every field in order.
 *
 * Static values: `null`, `true`/`false`, strings as JSON strings,
 * `["number", String(x)]` (`"-0"` for -0, `"NaN"`, `"Infinity"`),
 * `["bigint", decimal]`, `["undefined"]`, `["array", value...]`,
 * `["object", [key, value]...]` (plain objects, keys sorted),
 * `["module", className, [field, value]...]`, `["ndarray", dtype, shape,
 * hex bytes]`, and `["function", name]` for a named function or class.
 * Anything else (anonymous functions, symbols, DeviceArrays, other class
 * instances) has no stable canonical form and is an error naming its path.
 */
export function canonicalStructure(tree: unknown): string {
  const root = treeStructure(tree).root;
  return JSON.stringify([STRUCTURE_FORMAT, STRUCTURE_VERSION, canonNode(root, [])]);
}

/** sha256 of `canonicalStructure(tree)` (UTF-8): 32 bytes. Structure only: shapes, dtypes and leaf values do not enter it. */
export function structureFingerprint(tree: unknown): Uint8Array {
  return new Uint8Array(createHash("sha256").update(canonicalStructure(tree), "utf8").digest());
}

function canonNode(n: TreeNode, path: KeyEntry[]): Canon {
  switch (n.kind) {
    case "leaf":
      return "*";
    case "none":
      return [n.value === null ? "None" : "undefined"];
    case "list":
      return ["list", ...n.children.map((c, i) => canonNode(c, [...path, { kind: "index", index: i }]))];
    case "dict":
      return ["dict", ...n.keys.map((k, i): Canon => [k, canonNode(n.children[i]!, [...path, { kind: "key", key: k }])])];
    case "module": {
      let d = 0;
      let s = 0;
      const out: Canon[] = ["module", Module.nameOf(n.cls)];
      for (const f of n.fields) {
        const p: KeyEntry[] = [...path, { kind: "attr", name: f.name }];
        if (f.static) out.push([f.name, "static", canonStatic(n.statics[s++], p, 0)]);
        else out.push([f.name, "child", canonNode(n.children[d++]!, p)]);
      }
      return out;
    }
  }
}

function canonStatic(v: unknown, path: KeyEntry[], depth: number): Canon {
  const fail = (what: string): never => {
    throw new SerializationError(
      `cannot fingerprint the static value at ${at(path)}: ${what}. Static fields become part of the file's structural fingerprint, ` +
        `so they must have a stable canonical form (numbers, strings, booleans, null, bigints, arrays and plain objects of those, named functions); ` +
        `or override the class's static fingerprint()`,
      { path: keystr(path) },
    );
  };
  if (depth > 100) fail("it nests more than 100 levels deep (a cycle?)");
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "number":
      return ["number", Object.is(v, -0) ? "-0" : String(v)];
    case "bigint":
      return ["bigint", v.toString(10)];
    case "undefined":
      return ["undefined"];
    case "function":
      if (!v.name) fail("an anonymous function has no stable identity; give it a name (const relu = (x) => ...) or store a string");
      return ["function", v.name];
    case "symbol":
      return fail(`a symbol (${String(v)}) has no stable identity`);
  }
  if (v === null) return null;
  if (Array.isArray(v)) {
    const out: Canon[] = ["array"];
    for (let i = 0; i < v.length; i++) out.push(canonStatic(v[i], [...path, { kind: "index", index: i }], depth + 1));
    return out;
  }
  if (v instanceof NDArray) {
    return ["ndarray", v.dtype, [...v.shape], Buffer.from(v.bytes()).toString("hex")];
  }
  if (v instanceof Module) {
    const r = v as unknown as Record<string, unknown>;
    return ["module", v.className, ...Module.fieldsOf(v).map((f): Canon => [f.name, canonStatic(r[f.name], [...path, { kind: "attr", name: f.name }], depth + 1)])];
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto === Object.prototype || proto === null) {
    const r = v as Record<string, unknown>;
    return ["object", ...Object.keys(r).sort(compareKeys).map((k): Canon => [k, canonStatic(r[k], [...path, { kind: "key", key: k }], depth + 1)])];
  }
  if (v instanceof DeviceArray) return fail("a DeviceArray's contents cannot be read synchronously; keep arrays in non-static fields");
  const name = (v as object).constructor?.name;
  return fail(`${name ? `an instance of ${name}` : "an object"} has no canonical form`);
}

/** keystr of a path for messages, "the root" for the empty path. */
function at(path: KeyPath): string {
  return keystr(path) || "the root";
}

function checkFingerprint(fp: unknown, who: string): Uint8Array {
  if (!(fp instanceof Uint8Array) || fp.length !== FINGERPRINT_BYTES) {
    throw new SerializationError(`${who}.fingerprint() must return ${FINGERPRINT_BYTES} bytes (a Uint8Array), got ${fp instanceof Uint8Array ? `${fp.length} bytes` : typeof fp}`);
  }
  return fp;
}

// ---------------------------------------------------------------------------
// Leaves as equinox writes them

/**
 * How a leaf is written, following equinox's `default_serialise_filter_spec`:
 * arrays with `np.save`; Python `bool`/`int`/`float` scalars as `np.save`
 * of `np.asarray(x)`; every other leaf is skipped. A JS number is a double,
 * written as a Python float is: a 0-d `<f8`; a boolean as a 0-d `|b1`; a
 * bigint as a Python int: 0-d `<i8`, or `<u8` from 2^63 to 2^64-1 (numpy's
 * choice), larger is an error (numpy would pickle an object array).
 */
function scalarRecord(x: number | boolean | bigint, path: KeyPath): NDArray {
  if (typeof x === "number") return new NDArray(Float64Array.of(x), [], "float64");
  if (typeof x === "boolean") return new NDArray(Uint8Array.of(x ? 1 : 0), [], "bool");
  if (x >= -(2n ** 63n) && x < 2n ** 63n) return new NDArray(BigInt64Array.of(x), [], "int64");
  if (x >= 0n && x < 2n ** 64n) return new NDArray(BigUint64Array.of(x), [], "uint64");
  throw new SerializationError(`the bigint ${x} at ${at(path)} does not fit in int64 or uint64; numpy could only pickle it`, { path: keystr(path) });
}

/** The NPY records of a tree's leaves, depth first, as `eqx.tree_serialise_leaves` writes them. DeviceArrays are fetched one at a time. */
async function* leafRecords(tree: unknown): AsyncGenerator<Uint8Array> {
  const { leaves } = flattenWithPath(tree);
  for (const { path, value } of leaves) {
    let a: NDArray;
    if (value instanceof NDArray) a = value;
    else if (value instanceof DeviceArray) {
      a = await value.toHost();
      if (a.dtype !== value.dtype || !sameShape(a.shape, value.shape)) {
        throw new SerializationError(
          `the DeviceArray at ${at(path)} is ${value.dtype}[${value.shape.join(", ")}] but came back as ${a.dtype}[${a.shape.join(", ")}]`,
          { path: keystr(path) },
        );
      }
    } else if (isArray(value)) {
      throw new SerializationError(`the leaf at ${at(path)} is a traced value (${String(value)}); only concrete arrays can be serialized`, { path: keystr(path) });
    } else if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") a = scalarRecord(value, path);
    else continue;
    yield encodeNpyHeader(a.dtype, a.shape);
    yield a.bytes();
  }
}

/**
 * The bytes `eqx.tree_serialise_leaves` writes for the equivalent Python
 * pytree (no fingerprint). DeviceArray leaves are fetched.
 */
export async function serialiseLeaves(tree: unknown): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of leafRecords(tree)) parts.push(new Uint8Array(p));
  return Buffer.concat(parts);
}

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function sig(dtype: DType, shape: Shape): string {
  return `${dtype}[${shape.join(", ")}]`;
}

/** Options for reading leaves: the file name for messages, and the byte offset the leaves start at. */
export interface DeserialiseLeavesOptions {
  /** Where the leaf records start (default 0). */
  offset?: number;
  /** For messages. */
  file?: string;
}

/**
 * Read leaves written by `eqx.tree_serialise_leaves` (or `serialiseLeaves`)
 * into the structure of `like`, as `eqx.tree_deserialise_leaves` does: each
 * array leaf of `like` (NDArray or DeviceArray) takes the next record, which
 * must have its dtype and shape, and becomes an NDArray; each number,
 * boolean and bigint leaf takes the next record, which must be 0-d (number:
 * a bool, int, uint or float record; bigint: bool, int or uint; boolean:
 * bool); every other leaf is kept from `like`. The records must end exactly
 * at the end of `buf`. Errors name the leaf's key path and the byte offset.
 */
export function deserialiseLeaves<T>(buf: Uint8Array, like: T, opts: DeserialiseLeavesOptions = {}): T {
  const file = opts.file;
  const where = file !== undefined ? `${file}: ` : "";
  let off = opts.offset ?? 0;
  const { leaves, treedef } = flattenWithPath(like);
  const expected = leaves.filter((l) => isSaved(l.value)).length;
  let k = 0;
  const out = leaves.map(({ path, value }) => {
    if (!isSaved(value)) return value;
    const p = keystr(path);
    const nth = `leaf ${at(path)} (record ${++k} of ${expected})`;
    if (off >= buf.length) {
      throw new SerializationError(
        `${where}truncated: the data ends at byte offset ${off}, before ${nth}; the file was cut short, or it holds fewer leaves than this skeleton`,
        { file, offset: off, path: p },
      );
    }
    let h: NpyHeader;
    let rec: { array: NDArray; end: number };
    try {
      h = decodeNpyHeader(buf, off);
    } catch (e) {
      throw npyError(e, `${where}bad NPY record for ${nth}`, file, p);
    }
    if (isArray(value)) {
      const want = value as NDArray | DeviceArray;
      if (h.dtype !== want.dtype || !sameShape(h.shape, want.shape)) {
        throw new SerializationError(
          `${where}${nth} at byte offset ${off} is ${sig(h.dtype, h.shape)} in the file, but the skeleton has ${sig(want.dtype, want.shape)}` +
            `${h.dtype !== want.dtype ? " (dtype differs)" : ""}${!sameShape(h.shape, want.shape) ? " (shape differs)" : ""}`,
          { file, offset: off, path: p },
        );
      }
    } else if (h.shape.length !== 0) {
      throw new SerializationError(`${where}${nth} at byte offset ${off} is ${sig(h.dtype, h.shape)} in the file, but the skeleton has a ${typeof value} there (a 0-d record)`, {
        file,
        offset: off,
        path: p,
      });
    }
    try {
      rec = decodeNpy(buf, off);
    } catch (e) {
      throw npyError(e, `${where}bad NPY record for ${nth}`, file, p);
    }
    const recordAt = off;
    off = rec.end;
    if (isArray(value)) return rec.array;
    return toScalar(rec.array, value as number | boolean | bigint, () => `${where}${nth} at byte offset ${recordAt}`, { file, offset: recordAt, path: p });
  });
  if (off !== buf.length) {
    let what = "";
    try {
      const h = decodeNpyHeader(buf, off);
      what = `: another NPY record (${sig(h.dtype, h.shape)}) starts there, so the file holds more leaves than this skeleton`;
    } catch {
      what = "";
    }
    throw new SerializationError(`${where}${buf.length - off} trailing bytes after the last leaf, at byte offset ${off}${what}`, { file, offset: off });
  }
  return unflatten(treedef, out) as T;
}

/** Leaves equinox saves: arrays, and Python bool/int/float scalars (JS boolean, number, bigint). */
function isSaved(x: unknown): boolean {
  return isArray(x) || typeof x === "number" || typeof x === "boolean" || typeof x === "bigint";
}

function npyError(e: unknown, prefix: string, file: string | undefined, path: string): unknown {
  if (e instanceof NpyFormatError) return new SerializationError(`${prefix}: ${e.message}`, { file, offset: e.offset, path, cause: e });
  return e;
}

function toScalar(a: NDArray, like: number | boolean | bigint, describe: () => string, info: { file?: string; offset: number; path: string }): number | boolean | bigint {
  const kind = dtypeInfo(a.dtype).kind;
  const bad = (why: string): never => {
    throw new SerializationError(`${describe()} is a 0-d ${a.dtype} in the file, but the skeleton has a ${typeof like} there: ${why}`, info);
  };
  const raw = a.data[0]!;
  if (typeof like === "boolean") {
    if (kind !== "b") bad("a boolean is saved as a bool");
    return raw !== 0;
  }
  if (typeof like === "bigint") {
    if (kind === "b") return BigInt(raw as number);
    if (kind !== "i" && kind !== "u") bad("a bigint is saved as an integer");
    return BigInt(raw as number | bigint);
  }
  switch (kind) {
    case "c":
      return bad("a complex value does not fit in a number");
    case "b":
      return raw as number;
    case "i":
    case "u": {
      if (typeof raw !== "bigint") return raw;
      const n = Number(raw);
      if (BigInt(n) !== raw) bad(`${raw} is not exactly representable as a double; use a bigint field`);
      return n;
    }
    default:
      if (a.dtype === "float16") return float16BitsToNumber(raw as number);
      if (a.dtype === "bfloat16") return bfloat16BitsToNumber(raw as number);
      return raw as number;
  }
}

// ---------------------------------------------------------------------------
// Files (the layout is eqx-file.ts's)

/** Options for `serializeTree` and `Serializable.serialize`. */
export interface SerializeOptions {
  /** Write to `path` as given, without the `.eqx` rule (lerax's `no_suffix=True`). */
  noSuffix?: boolean;
}

/** Something that can put a tree's host arrays on a device (a `Session`). */
export interface DevicePutter {
  put<T>(tree: T): Promise<unknown>;
}

/** Options for `deserializeTree` and `Serializable.deserialize`. */
export interface DeserializeOptions {
  /** Read `path` as given, without the `.eqx` rule. */
  noSuffix?: boolean;
  /** Put the loaded arrays on this session's device: array leaves come back as DeviceArrays. */
  session?: DevicePutter;
}

/**
 * Write `tree` to `path` (the `.eqx` rule applies unless `noSuffix`):
 * `fingerprint` (32 bytes), then the leaves as `serialiseLeaves` writes
 * them. Parent folders are created; the write is atomic. Returns the path
 * written.
 */
export async function serializeTree(path: string, tree: unknown, fingerprint: Uint8Array, opts: SerializeOptions = {}): Promise<string> {
  const fp = checkFingerprint(fingerprint, "serializeTree: the");
  return writeEqx(path, fp, leafRecords(tree), opts);
}

/**
 * Read a file written by `serializeTree` into the structure of `like`:
 * checks that the file starts with `fingerprint` (else
 * `FingerprintMismatchError`), then reads the leaves as
 * `deserialiseLeaves` does. Array leaves come back as NDArrays, or as
 * DeviceArrays with `session`.
 */
export async function deserializeTree<T>(path: string, like: T, fingerprint: Uint8Array, opts: DeserializeOptions & { mismatch?: string } = {}): Promise<T> {
  const fp = checkFingerprint(fingerprint, "deserializeTree: the");
  const { file, bytes } = await readEqx(path, () => fp, opts);
  const tree = deserialiseLeaves(bytes, like, { offset: FINGERPRINT_BYTES, file });
  if (opts.session) return (await opts.session.put(tree)) as T;
  return tree;
}

// ---------------------------------------------------------------------------
// Serializable

/**
 * A `Module` that saves and loads itself, like `lerax.utils.Serializable`:
 * `await m.serialize(path)` and `await Cls.deserialize(path, ...ctorArgs)`.
 * The file is the class's 32-byte `fingerprint` of the instance, then the
 * leaves as `eqx.tree_serialise_leaves` writes them.
 */
export class Serializable extends Module {
  /**
   * The 32-byte structural fingerprint stored at the start of the file.
   * Default: `structureFingerprint` (sha256 of the documented canonical
   * form of the TypeScript structure). Override it to use another (remote
   * Python modules use lerax's, computed in the sidecar); it may be async.
   */
  static fingerprint(instance: Module): Uint8Array | Promise<Uint8Array> {
    return structureFingerprint(instance);
  }

  /**
   * Write this module to `path` with the `.eqx` suffix rule (`a.pt` →
   * `a.eqx`, `a` → `a.eqx`; `noSuffix` keeps the path as given), creating
   * parent folders, atomically. DeviceArray leaves are fetched. Returns
   * the path written.
   */
  async serialize(path: string, opts: SerializeOptions = {}): Promise<string> {
    const cls = this.constructor as typeof Serializable;
    const fp = checkFingerprint(await cls.fingerprint(this), Module.nameOf(cls));
    return serializeTree(path, this, fp, opts);
  }

  /**
   * Load a module written by `serialize`: builds the skeleton with `new
   * Cls(...ctorArgs)`, checks the file's fingerprint against the
   * skeleton's, then reads every leaf, checking dtype and shape. `path`
   * follows the same suffix rule as `serialize`; pass `{path, session,
   * noSuffix}` instead of a string for options. Array leaves come back as
   * host NDArrays, or as DeviceArrays with `session`; leaves equinox does
   * not save (strings, functions) are the skeleton's.
   */
  static async deserialize<C extends new (...args: any[]) => Serializable>(
    this: C,
    path: string | (DeserializeOptions & { path: string }),
    ...ctorArgs: ConstructorParameters<C>
  ): Promise<InstanceType<C>> {
    const opts: DeserializeOptions & { path: string } = typeof path === "string" ? { path } : path;
    const cls = this as unknown as typeof Serializable & (new (...args: unknown[]) => Serializable);
    const skeleton = new cls(...(ctorArgs as unknown[])) as InstanceType<C>;
    const fp = checkFingerprint(await cls.fingerprint(skeleton), Module.nameOf(cls));
    return deserializeTree(opts.path, skeleton, fp, { ...opts, mismatch: `the constructor arguments of ${Module.nameOf(cls)} build a different structure than the file's` });
  }
}
