/**
 * Tree prefixes of shardings and specs: one entry for a whole subtree, as
 * `jax.jit`'s `in_shardings` and `shard_map`'s `in_specs` are written.
 * Apart from sharding.ts because the tree module imports DeviceArray,
 * which imports sharding.ts.
 */
import { inspect } from "node:util";
import { ShardingError } from "./sharding.js";
import { flattenWithPath, type KeyPath, keystr } from "./tree.js";

const fail = (message: string): never => {
  throw new ShardingError(message);
};

const samePrefix = (p: KeyPath, of: KeyPath): boolean =>
  p.length <= of.length && p.every((e, i) => { const f = of[i]!; return e.kind === f.kind && (e.kind === "index" ? e.index === (f as typeof e).index : e.kind === "key" ? e.key === (f as typeof e).key : e.name === (f as typeof e).name); });

/**
 * For each leaf of `tree`, in flatten order, the entry of `prefix` above it:
 * `prefix` is a pytree prefix of `tree` whose leaves (`isEntry`, or null for
 * "unspecified") stand for whole subtrees, as `jax.jit`'s `in_shardings` and
 * `shard_map`'s `in_specs` do. A leaf no entry covers, and an entry that
 * names no part of `tree`, are errors naming the key path and `what` the
 * prefix is (`inShardings`); `noun` names what its entries are.
 */
export function prefixLeaves<S>(prefix: unknown, tree: unknown, isEntry: (x: unknown) => x is S, what: string, noun: string): (S | null)[] {
  const entries = flattenWithPath(prefix, { isLeaf: (x) => x === null || x === undefined || isEntry(x) }).leaves;
  for (const e of entries) {
    if (!(e.value === null || e.value === undefined || isEntry(e.value))) fail(`${what}${keystr(e.path)} is ${inspect(e.value, { depth: 1 })}, not a ${noun} or null`);
  }
  const leaves = flattenWithPath(tree).leaves;
  const used = new Set<number>();
  const out = leaves.map(({ path }) => {
    const k = entries.findIndex((e) => samePrefix(e.path, path));
    if (k < 0) fail(`${what} has no entry for ${keystr(path) || "the value"}: it must be a tree prefix of the arguments (one entry for a whole subtree)`);
    used.add(k);
    const v = entries[k]!.value;
    return v === undefined || v === null ? null : (v as S);
  });
  entries.forEach((e, k) => {
    if (!used.has(k) && !existsIn(tree, e.path)) fail(`${what}${keystr(e.path)} names nothing in the arguments: it must be a tree prefix of them`);
  });
  return out;
}

function existsIn(tree: unknown, path: KeyPath): boolean {
  let at: unknown = tree;
  for (const e of path) {
    if (at === null || typeof at !== "object") return false;
    const key = e.kind === "index" ? e.index : e.kind === "key" ? e.key : e.name;
    if (!(key in (at as object))) return false;
    at = (at as Record<string | number, unknown>)[key];
  }
  return true;
}
