/**
 * The `.eqx` file, shared by TypeScript modules (serializable.ts) and
 * modules held in the sidecar (remote-serialize.ts): a 32-byte structural
 * fingerprint, then the leaves as `equinox.tree_serialise_leaves` writes
 * them. This module knows the layout, the suffix rule, and how a file is
 * read and checked; what the fingerprint and the leaves are is the caller's.
 * Files are written atomically (atomic-file.ts).
 */
import { readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { writeFileAtomic } from "./atomic-file.js";
import { JaxBridgeError } from "../values/errors.js";

/** Length of the structural fingerprint at the start of a file. */
export const FINGERPRINT_BYTES = 32;

// ---------------------------------------------------------------------------
// Errors

/**
 * A file could not be written or read as a serialized pytree. Names the
 * file, and where it applies the byte offset and the leaf's key path
 * (`.layers[0].w`).
 */
export class SerializationError extends JaxBridgeError {
  override name = "SerializationError";
  readonly file: string | undefined;
  readonly offset: number | undefined;
  /** keystr of the leaf or static field concerned, when there is one. */
  readonly path: string | undefined;
  constructor(message: string, info: { file?: string; offset?: number; path?: string; cause?: unknown } = {}) {
    super(message, info.cause !== undefined ? { cause: info.cause } : undefined);
    this.file = info.file;
    this.offset = info.offset;
    this.path = info.path;
  }
}

/** The fingerprint stored in a file differs from the skeleton's: the constructor arguments build a different structure. */
export class FingerprintMismatchError extends SerializationError {
  override name = "FingerprintMismatchError";
  readonly expected: Uint8Array;
  readonly found: Uint8Array;
  constructor(message: string, info: { file?: string; expected: Uint8Array; found: Uint8Array }) {
    super(message, { file: info.file, offset: 0 });
    this.expected = info.expected;
    this.found = info.found;
  }
}

// ---------------------------------------------------------------------------
// The suffix rule

/**
 * The path `serialize` writes: `.eqx` replaces any other suffix, as lerax's
 * `path.with_suffix(".eqx")` does with Python 3.13's `pathlib` rules. The
 * suffix is the last component's text from its last `.`, when that dot is
 * neither its first nor its last character: `a.b.c` → `a.b.eqx`, `a` →
 * `a.eqx`, `.hidden` → `.hidden.eqx`, `a.` → `a..eqx`, `x.EQX` → `x.eqx`,
 * `m.eqx` stays. Trailing separators are dropped and the path normalized
 * as pathlib does (`dir/` → `dir.eqx`, `./a` → `a.eqx`). An empty last
 * component (`""`, `.`, `/`) is an error, as in Python.
 */
export function eqxPath(path: string): string {
  if (typeof path !== "string") throw new SerializationError(`a path must be a string, got ${typeof path}`);
  const name = basename(path);
  if (name === "" || name === ".") throw new SerializationError(`${JSON.stringify(path)} has an empty name: cannot give it the .eqx suffix`, { file: path });
  const i = name.lastIndexOf(".");
  const suffix = i > 0 && i < name.length - 1 ? name.slice(i) : "";
  const stem = suffix === "" ? name : name.slice(0, i);
  return join(dirname(path), suffix === ".eqx" ? name : `${stem}.eqx`);
}

// ---------------------------------------------------------------------------
// Reading and writing

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

async function* withPrefix(prefix: Uint8Array, rest: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield prefix;
  yield* rest;
}

/** Write `fingerprint` then the leaf bytes to `path` (the `.eqx` rule applies unless `noSuffix`), atomically; returns the path written. */
export async function writeEqx(path: string, fingerprint: Uint8Array, leaves: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: { noSuffix?: boolean } = {}): Promise<string> {
  const target = opts.noSuffix ? path : eqxPath(path);
  await writeFileAtomic(target, withPrefix(new Uint8Array(fingerprint), leaves));
  return target;
}

/**
 * Read the file at `path` (the `.eqx` rule applies unless `noSuffix`) and
 * check that it starts with the fingerprint `expected` gives, asked only
 * once the file is known to hold one (for a remote module it is a round
 * trip). A missing file, one shorter than a fingerprint and a different
 * fingerprint are each a SerializationError naming the file; `mismatch`
 * says what a different fingerprint means to the caller. Returns the path
 * read and its bytes, the leaves starting at FINGERPRINT_BYTES.
 */
export async function readEqx(path: string, expected: () => Uint8Array | Promise<Uint8Array>, opts: { noSuffix?: boolean; mismatch?: string } = {}): Promise<{ file: string; bytes: Uint8Array }> {
  const file = opts.noSuffix ? path : eqxPath(path);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (e) {
    const renamed = file !== path ? ` (the path ${JSON.stringify(path)} with the .eqx suffix rule; pass noSuffix to read it as given)` : "";
    throw new SerializationError(`cannot read ${file}${renamed}: ${(e as Error).message}`, { file, cause: e });
  }
  if (bytes.length < FINGERPRINT_BYTES) {
    throw new SerializationError(`${file}: truncated: ${bytes.length} bytes, shorter than the ${FINGERPRINT_BYTES}-byte structural fingerprint that starts every file`, {
      file,
      offset: bytes.length,
    });
  }
  const fp = await expected();
  const found = new Uint8Array(bytes.subarray(0, FINGERPRINT_BYTES));
  if (!Buffer.from(found).equals(Buffer.from(fp))) {
    throw new FingerprintMismatchError(
      `${file}: ${opts.mismatch ?? "the skeleton has a different structure than the file's"}: its structural fingerprint is ${hex(fp)}, the file's is ${hex(found)}. ` +
        `Pass the same constructor arguments (sizes, hyperparameters, static fields) the model was saved with.`,
      { file, expected: new Uint8Array(fp), found },
    );
  }
  return { file, bytes };
}
