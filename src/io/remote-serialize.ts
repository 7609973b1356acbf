/**
 * Serializable for modules held in the sidecar: the same file layout as a
 * TypeScript Serializable (32-byte fingerprint, then equinox's leaf stream),
 * but both parts are computed by Python itself: the fingerprint is lerax's
 * (sha256 of repr(jax.tree.structure)) and the leaves are exactly what
 * `equinox.tree_serialise_leaves` writes, so files match what lerax writes.
 */
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "./atomic-file.js";
import { FINGERPRINT_BYTES, FingerprintMismatchError, SerializationError, eqxPath } from "./serializable.js";
import type { Session } from "../session/session.js";

export interface RemoteSerializeOptions {
  /** Use `path` as given, without the `.eqx` suffix rule (lerax's `no_suffix`). */
  noSuffix?: boolean;
}

/** Write a remote module (or any pytree the sidecar holds) to `path`; returns the path written. */
export async function serializeRemote(session: Session, value: unknown, path: string, opts: RemoteSerializeOptions = {}): Promise<string> {
  const target = opts.noSuffix ? path : eqxPath(path);
  const { fingerprint, leaves } = await session.serialiseLeaves(value);
  await writeFileAtomic(target, [fingerprint, leaves]);
  return target;
}

/**
 * Load a file into `skeleton`, a module built in the sidecar with the same
 * constructor arguments (e.g. `await nn.MLP(kw({...}))`). The fingerprint is
 * checked first; equinox then checks every leaf's shape and dtype.
 */
export async function deserializeRemote<T>(session: Session, path: string, skeleton: T, opts: RemoteSerializeOptions = {}): Promise<T> {
  const file = opts.noSuffix ? path : eqxPath(path);
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch (e) {
    throw new SerializationError(`cannot read ${file}: ${(e as Error).message}`, { file, cause: e });
  }
  if (buf.length < FINGERPRINT_BYTES) {
    throw new SerializationError(`${file}: truncated: ${buf.length} bytes, shorter than the ${FINGERPRINT_BYTES}-byte structural fingerprint`, { file, offset: buf.length });
  }
  const expected = await session.fingerprint(skeleton);
  const found = new Uint8Array(buf.subarray(0, FINGERPRINT_BYTES));
  if (!Buffer.from(found).equals(Buffer.from(expected))) {
    throw new FingerprintMismatchError(
      `${file}: the constructor arguments build a different structure than the file's: fingerprint ${Buffer.from(expected).toString("hex")}, the file's is ${Buffer.from(found).toString("hex")}`,
      { file, expected, found },
    );
  }
  return session.deserialiseLeaves<T>(skeleton, new Uint8Array(buf.subarray(FINGERPRINT_BYTES)));
}
