/**
 * Serializable for modules held in the sidecar: the same file layout as a
 * TypeScript Serializable (32-byte fingerprint, then equinox's leaf stream),
 * but both parts are computed by Python itself: the fingerprint is lerax's
 * (sha256 of repr(jax.tree.structure)) and the leaves are exactly what
 * `equinox.tree_serialise_leaves` writes, so files match what lerax writes.
 */
import { FINGERPRINT_BYTES, readEqx, writeEqx } from "./eqx-file.js";
import type { Session } from "../session/session.js";

export interface RemoteSerializeOptions {
  /** Use `path` as given, without the `.eqx` suffix rule (lerax's `no_suffix`). */
  noSuffix?: boolean;
}

/** Write a remote module (or any pytree the sidecar holds) to `path`; returns the path written. */
export async function serializeRemote(session: Session, value: unknown, path: string, opts: RemoteSerializeOptions = {}): Promise<string> {
  const { fingerprint, leaves } = await session.serialiseLeaves(value);
  return writeEqx(path, fingerprint, [leaves], opts);
}

/**
 * Load a file into `skeleton`, a module built in the sidecar with the same
 * constructor arguments (e.g. `await nn.MLP(kw({...}))`). The file is read
 * and its fingerprint checked as `deserializeTree` does (the same errors),
 * against lerax's fingerprint of the skeleton computed in the sidecar;
 * equinox then checks every leaf's shape and dtype.
 */
export async function deserializeRemote<T>(session: Session, path: string, skeleton: T, opts: RemoteSerializeOptions = {}): Promise<T> {
  const { bytes } = await readEqx(path, () => session.fingerprint(skeleton), { ...opts, mismatch: "the constructor arguments build a different structure than the file's" });
  return session.deserialiseLeaves<T>(skeleton, bytes.subarray(FINGERPRINT_BYTES));
}
