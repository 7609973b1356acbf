/**
 * Pytrees with JAX's and equinox's semantics.
 *
 * ```ts
 * const { leaves, treedef } = flatten({ b: [1, x], a: null });
 * // leaves: [1, x] (dict keys sorted as JAX sorts them); `a` is an empty subtree
 * const [dynamic, statics] = partition(model);   // like eqx.partition(model, eqx.is_array)
 * combine(dynamic, statics);                     // like eqx.combine
 * ```
 *
 * What is a node and what is a leaf:
 *
 * - Nodes: JS arrays (like Python lists), plain objects (prototype
 *   `Object.prototype` or `null`; like dicts, keys sorted by code point as
 *   Python's `sorted()` sorts str keys, and rebuilt in that order, as JAX
 *   does), `Module` instances (fields in order; static fields belong to the
 *   structure), and `null` / `undefined`: empty subtrees like `None`, with no
 *   leaves. Which of the two it was is kept and is part of the structure.
 * - Array leaves (`isArray`): `NDArray`, `DeviceArray`, and classes added with
 *   `registerArrayClass` (the tracer).
 * - Static leaves: everything else. Numbers, booleans, strings, bigints,
 *   functions, symbols, and objects that are neither plain nor Modules nor
 *   arrays (Map, Set, Date, TypedArray, class instances) are leaves, never
 *   looked into, as `eqx.is_array` treats a Python float as a non-array leaf.
 *
 * Array holes read as `undefined`. Symbol-keyed and non-enumerable
 * properties of plain objects are not part of the tree. A cycle is an error
 * naming the path where the tree reaches an object it is already inside;
 * shared subtrees (the same object twice, not inside itself) are fine.
 */

import { inspect } from "node:util";
import { DeviceArray } from "./device-array.js";
import { bfloat16BitsToNumber, type DType, dtypeInfo, float16BitsToNumber } from "./dtype.js";
import { BridgeInputError } from "./errors.js";
import { Module, type ModuleClass, type ModuleField } from "./module.js";
import { NDArray, type Scalar } from "./ndarray.js";
import { compareKeys, type KeyEntry, type KeyPath, keystr, pyStrRepr } from "./keypath.js";
import { describe, isPlainObject } from "./describe.js";

export { compareKeys, keystr, pyStrRepr, type KeyEntry, type KeyPath } from "./keypath.js";

// ---------------------------------------------------------------------------
// Key paths (keypath.ts) in messages

/** "at key path ['a'].w", or "at the root". */
function atKeyPath(path: KeyPath): string {
  return path.length === 0 ? "at the root" : `at key path ${keystr(path)}`;
}

/** A path for messages: the keystr, or "the root" for the empty path. */
function where(path: KeyPath): string {
  return path.length === 0 ? "the root" : keystr(path);
}

// ---------------------------------------------------------------------------
// Leaves and nodes

const arrayClasses: Array<abstract new (...args: never[]) => Shaped> = [NDArray, DeviceArray];

/** What every array leaf has, whatever its class: a dtype and a shape. */
export interface Shaped {
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/**
 * Array leaves, like `eqx.is_array`: `NDArray`, `DeviceArray` and classes
 * registered with `registerArrayClass` (the tracer). Numbers and other JS
 * values are not arrays (a Python float is not either). The one array
 * predicate: code above this layer asks it rather than listing classes.
 */
export function isArray(x: unknown): x is Shaped {
  if (typeof x !== "object" || x === null) return false;
  if (x instanceof NDArray || x instanceof DeviceArray) return true;
  for (let i = 2; i < arrayClasses.length; i++) if (x instanceof arrayClasses[i]!) return true;
  return false;
}

/**
 * Count instances of `cls` as array leaves (for the tracer, which cannot be
 * imported here without a cycle). Compared by identity in `treeEqual`.
 */
export function registerArrayClass(cls: abstract new (...args: never[]) => Shaped): void {
  if (!arrayClasses.includes(cls)) arrayClasses.push(cls);
}

const LEAF = 0;
const NONE = 1;
const LIST = 2;
const DICT = 3;
const MODULE = 4;
type Kind = typeof LEAF | typeof NONE | typeof LIST | typeof DICT | typeof MODULE;

function kindOf(x: unknown): Kind {
  if (x === null || x === undefined) return NONE;
  if (typeof x !== "object") return LEAF;
  if (Array.isArray(x)) return LIST;
  if (x instanceof Module) return MODULE;
  return isPlainObject(x) ? DICT : LEAF;
}

/** True for values `flatten` looks into: arrays, plain objects, Modules, null, undefined. */
export function isNode(x: unknown): boolean {
  return kindOf(x) !== LEAF;
}

/** Predicate marking values to treat as leaves even when they are nodes (JAX's `is_leaf`). */
export type IsLeaf = (x: unknown) => boolean;

function sortedKeys(x: object): string[] {
  return Object.keys(x).sort(compareKeys);
}

// ---------------------------------------------------------------------------
// TreeDef

/** One node of a tree structure. */
export type TreeNode =
  | { readonly kind: "leaf" }
  | { readonly kind: "none"; readonly value: null | undefined }
  | { readonly kind: "list"; readonly children: readonly TreeNode[] }
  | {
      readonly kind: "dict";
      /** Sorted as Python sorts str keys. */
      readonly keys: readonly string[];
      readonly children: readonly TreeNode[];
      /** Rebuilt with `Object.create(null)` (not part of equality). */
      readonly nullPrototype: boolean;
    }
  | {
      readonly kind: "module";
      readonly cls: ModuleClass;
      /** The prototype instances are rebuilt on; class identity. */
      readonly proto: object;
      /** Every field in order, static ones included. */
      readonly fields: readonly ModuleField[];
      /** Values of the static fields, in field order. */
      readonly statics: readonly unknown[];
      /** One per non-static field, in field order. */
      readonly children: readonly TreeNode[];
    };

const LEAF_NODE: TreeNode = Object.freeze({ kind: "leaf" });
const NULL_NODE: TreeNode = Object.freeze({ kind: "none", value: null });
const UNDEFINED_NODE: TreeNode = Object.freeze({ kind: "none", value: undefined });

/** The structure of a pytree: everything but its leaves. */
export class TreeDef {
  readonly root: TreeNode;
  readonly numLeaves: number;

  constructor(root: TreeNode, numLeaves?: number) {
    this.root = root;
    this.numLeaves = numLeaves ?? countLeaves(root);
  }

  /** Number of nodes, leaves included (JAX's `num_nodes`). */
  get numNodes(): number {
    const count = (n: TreeNode): number => (n.kind === "leaf" || n.kind === "none" ? 1 : 1 + n.children.reduce((s, c) => s + count(c), 0));
    return count(this.root);
  }

  /** Same structure, as `treedefEqual`. */
  equals(other: TreeDef): boolean {
    return treedefEqual(this, other);
  }

  /** `TreeDef({'a': [*, null], 'm': MLP(w=*, act='relu')})`: `*` marks a leaf. */
  toString(): string {
    return `TreeDef(${nodeStr(this.root)})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

function countLeaves(n: TreeNode): number {
  if (n.kind === "leaf") return 1;
  if (n.kind === "none") return 0;
  let s = 0;
  for (const c of n.children) s += countLeaves(c);
  return s;
}

function nodeStr(n: TreeNode): string {
  switch (n.kind) {
    case "leaf":
      return "*";
    case "none":
      return String(n.value);
    case "list":
      return `[${n.children.map(nodeStr).join(", ")}]`;
    case "dict":
      return `{${n.keys.map((k, i) => `${pyStrRepr(k)}: ${nodeStr(n.children[i]!)}`).join(", ")}}`;
    case "module": {
      let d = 0;
      let s = 0;
      const parts = n.fields.map((f) => `${f.name}=${f.static ? describe(n.statics[s++]) : nodeStr(n.children[d++]!)}`);
      return `${Module.nameOf(n.cls)}(${parts.join(", ")})`;
    }
  }
}

/** Same structure: node kinds, list lengths, dict keys, Module classes, fields and static values. */
export function treedefEqual(a: TreeDef, b: TreeDef): boolean {
  return a === b || (a.numLeaves === b.numLeaves && nodeEqual(a.root, b.root));
}

function nodeEqual(a: TreeNode, b: TreeNode): boolean {
  if (a === b) return true;
  switch (a.kind) {
    case "leaf":
      return b.kind === "leaf";
    case "none":
      return b.kind === "none" && a.value === b.value;
    case "list":
      return b.kind === "list" && childrenEqual(a.children, b.children);
    case "dict":
      return b.kind === "dict" && stringsEqual(a.keys, b.keys) && childrenEqual(a.children, b.children);
    case "module":
      return (
        b.kind === "module" &&
        a.proto === b.proto &&
        fieldsEqual(a.fields, b.fields) &&
        a.statics.every((v, i) => staticValueEqual(v, b.statics[i])) &&
        childrenEqual(a.children, b.children)
      );
  }
}

function childrenEqual(a: readonly TreeNode[], b: readonly TreeNode[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!nodeEqual(a[i]!, b[i]!)) return false;
  return true;
}

function stringsEqual(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function fieldsEqual(a: readonly ModuleField[], b: readonly ModuleField[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.name !== b[i]!.name || a[i]!.static !== b[i]!.static) return false;
  return true;
}

/**
 * Equality of static field values, as part of the structure (equinox
 * compares them with `==`). Primitives by SameValueZero (so NaN equals NaN
 * here and a structure always equals itself); JS arrays and plain objects
 * element by element; anything else (functions, class instances, arrays)
 * by identity.
 */
export function staticValueEqual(a: unknown, b: unknown, depth = 0): boolean {
  if (a === b || (a !== a && b !== b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null || depth > 100) return false;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((v, i) => staticValueEqual(v, b[i], depth + 1));
  }
  if (kindOf(a) === DICT && kindOf(b) === DICT) {
    const ka = sortedKeys(a);
    const kb = sortedKeys(b);
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    return stringsEqual(ka, kb) && ka.every((k) => staticValueEqual(ra[k], rb[k], depth + 1));
  }
  return false;
}

// ---------------------------------------------------------------------------
// Errors

/**
 * Two pytrees that should share a structure do not. The message reads like
 * JAX's: the rule broken, the key path, what each side had.
 */
export class TreeStructureError extends BridgeInputError {
  override name = "TreeStructureError";
  constructor(message: string, path: KeyPath) {
    super(message, keystr(path));
    // BridgeInputError prefixes "at <path>: "; this message names the path itself.
    this.message = message;
  }
}

/** Throw for a cycle: `x` is an ancestor of itself at `path`. */
function cycleError(path: KeyPath, ancestorDepth: number): never {
  throw new BridgeInputError(
    `pytree contains a cycle: the object at ${where(path)} is the same object as its ancestor at ${where(path.slice(0, ancestorDepth))}. ` +
      `A pytree must be finite; share subtrees, but do not put a node inside itself.`,
    keystr(path),
  );
}

// ---------------------------------------------------------------------------
// Flatten / unflatten

interface FlattenCtx {
  leaves: unknown[];
  paths: KeyPath[] | null;
  stack: KeyEntry[];
  objs: object[];
  isLeaf: IsLeaf | undefined;
}

function enter(ctx: { stack: KeyEntry[]; objs: object[] }, x: object): void {
  const i = ctx.objs.indexOf(x);
  if (i >= 0) cycleError(ctx.stack, i);
  ctx.objs.push(x);
}

function flattenNode(x: unknown, ctx: FlattenCtx): TreeNode {
  if (ctx.isLeaf !== undefined && ctx.isLeaf(x)) return pushLeaf(x, ctx);
  switch (kindOf(x)) {
    case LEAF:
      return pushLeaf(x, ctx);
    case NONE:
      return x === null ? NULL_NODE : UNDEFINED_NODE;
    case LIST: {
      const xs = x as unknown[];
      enter(ctx, xs);
      const children: TreeNode[] = new Array(xs.length);
      for (let i = 0; i < xs.length; i++) {
        ctx.stack.push({ kind: "index", index: i });
        children[i] = flattenNode(xs[i], ctx);
        ctx.stack.pop();
      }
      ctx.objs.pop();
      return { kind: "list", children };
    }
    case DICT: {
      const o = x as Record<string, unknown>;
      enter(ctx, o);
      const keys = sortedKeys(o);
      const children: TreeNode[] = new Array(keys.length);
      for (let i = 0; i < keys.length; i++) {
        ctx.stack.push({ kind: "key", key: keys[i]! });
        children[i] = flattenNode(o[keys[i]!], ctx);
        ctx.stack.pop();
      }
      ctx.objs.pop();
      return { kind: "dict", keys, children, nullPrototype: Object.getPrototypeOf(o) === null };
    }
    case MODULE: {
      const m = x as Module;
      enter(ctx, m);
      const fields = Module.fieldsOf(m);
      const statics: unknown[] = [];
      const children: TreeNode[] = [];
      const r = m as unknown as Record<string, unknown>;
      for (const f of fields) {
        if (f.static) {
          statics.push(r[f.name]);
          continue;
        }
        ctx.stack.push({ kind: "attr", name: f.name });
        children.push(flattenNode(r[f.name], ctx));
        ctx.stack.pop();
      }
      ctx.objs.pop();
      return { kind: "module", cls: m.constructor as ModuleClass, proto: Object.getPrototypeOf(m) as object, fields, statics, children };
    }
  }
}

function pushLeaf(x: unknown, ctx: FlattenCtx): TreeNode {
  ctx.leaves.push(x);
  if (ctx.paths !== null) ctx.paths.push(ctx.stack.slice());
  return LEAF_NODE;
}

function run(tree: unknown, withPaths: boolean, isLeaf: IsLeaf | undefined): { leaves: unknown[]; paths: KeyPath[] | null; treedef: TreeDef } {
  const ctx: FlattenCtx = { leaves: [], paths: withPaths ? [] : null, stack: [], objs: [], isLeaf };
  const root = flattenNode(tree, ctx);
  return { leaves: ctx.leaves, paths: ctx.paths, treedef: new TreeDef(root, ctx.leaves.length) };
}

/** Options for flattening: `isLeaf` stops the descent at values it accepts. */
export interface FlattenOptions {
  isLeaf?: IsLeaf;
}

/** Leaves in JAX's order with the structure (`jax.tree_util.tree_flatten`). */
export function flatten(tree: unknown, opts: FlattenOptions = {}): { leaves: unknown[]; treedef: TreeDef } {
  const { leaves, treedef } = run(tree, false, opts.isLeaf);
  return { leaves, treedef };
}

/** Leaves with their key paths (`jax.tree_util.tree_flatten_with_path`). */
export function flattenWithPath(tree: unknown, opts: FlattenOptions = {}): { leaves: { path: KeyPath; value: unknown }[]; treedef: TreeDef } {
  const { leaves, paths, treedef } = run(tree, true, opts.isLeaf);
  return { leaves: leaves.map((value, i) => ({ path: paths![i]!, value })), treedef };
}

/** The leaves, depth first (`jax.tree.leaves`). */
export function treeLeaves(tree: unknown, opts: FlattenOptions = {}): unknown[] {
  return run(tree, false, opts.isLeaf).leaves;
}

/** The structure alone (`jax.tree.structure`). */
export function treeStructure(tree: unknown, opts: FlattenOptions = {}): TreeDef {
  return run(tree, false, opts.isLeaf).treedef;
}

/**
 * The tree with structure `treedef` and these leaves, in order
 * (`jax.tree.unflatten`). Dicts come back with sorted keys; Modules are
 * rebuilt on their class's prototype without running the constructor.
 */
export function unflatten(treedef: TreeDef, leaves: readonly unknown[]): unknown {
  if (leaves.length !== treedef.numLeaves) {
    const shown = String(treedef);
    throw new BridgeInputError(
      `unflatten: ${shown.length > 200 ? `${shown.slice(0, 197)}...` : shown} has ${treedef.numLeaves} leaves, got ${leaves.length}`,
    );
  }
  const pos = { i: 0 };
  return rebuild(treedef.root, leaves, pos);
}

function rebuild(n: TreeNode, leaves: readonly unknown[], pos: { i: number }): unknown {
  switch (n.kind) {
    case "leaf":
      return leaves[pos.i++];
    case "none":
      return n.value;
    case "list":
      return n.children.map((c) => rebuild(c, leaves, pos));
    case "dict": {
      const out: Record<string, unknown> = n.nullPrototype ? (Object.create(null) as Record<string, unknown>) : {};
      for (let i = 0; i < n.keys.length; i++) setKey(out, n.keys[i]!, rebuild(n.children[i]!, leaves, pos));
      return out;
    }
    case "module": {
      let d = 0;
      let s = 0;
      const values = n.fields.map((f) => (f.static ? n.statics[s++] : rebuild(n.children[d++]!, leaves, pos)));
      return Module.build(n.proto, n.fields.map((f) => f.name), values);
    }
  }
}

/** Set an own data property, also for the key `__proto__`. */
function setKey(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
  else o[k] = v;
}

// ---------------------------------------------------------------------------
// Mapping several trees together

/**
 * Walk `trees[0]` and, in step, the other trees, which must have it as a
 * prefix (where the first tree has a leaf, the others may have any
 * subtree). `f` gets the leaf of the first tree and what the others have
 * there; the result has the first tree's structure.
 */
function mapTrees(
  f: (path: KeyEntry[], xs: unknown[]) => unknown,
  trees: readonly unknown[],
  isLeaf: IsLeaf | undefined,
): unknown {
  const stack: KeyEntry[] = [];
  const objs: object[] = [];
  const ctx = { stack, objs };
  const walk = (xs: unknown[]): unknown => {
    const x = xs[0];
    if (isLeaf !== undefined && isLeaf(x)) return f(stack, xs);
    const kind = kindOf(x);
    if (kind === LEAF) return f(stack, xs);
    for (let j = 1; j < xs.length; j++) checkSameNode(kind, x, xs[j], j, stack);
    switch (kind) {
      case NONE:
        return x;
      case LIST: {
        const a = x as unknown[];
        enter(ctx, a);
        const out: unknown[] = new Array(a.length);
        for (let i = 0; i < a.length; i++) {
          stack.push({ kind: "index", index: i });
          out[i] = walk(xs.map((t) => (t as unknown[])[i]));
          stack.pop();
        }
        objs.pop();
        return out;
      }
      case DICT: {
        const o = x as Record<string, unknown>;
        enter(ctx, o);
        const out: Record<string, unknown> = Object.getPrototypeOf(o) === null ? (Object.create(null) as Record<string, unknown>) : {};
        for (const k of sortedKeys(o)) {
          stack.push({ kind: "key", key: k });
          setKey(out, k, walk(xs.map((t) => (t as Record<string, unknown>)[k])));
          stack.pop();
        }
        objs.pop();
        return out;
      }
      default: {
        const m = x as Module;
        enter(ctx, m);
        const fields = Module.fieldsOf(m);
        const values: unknown[] = [];
        for (const fl of fields) {
          if (fl.static) {
            values.push((m as unknown as Record<string, unknown>)[fl.name]);
            continue;
          }
          stack.push({ kind: "attr", name: fl.name });
          values.push(walk(xs.map((t) => (t as Record<string, unknown>)[fl.name])));
          stack.pop();
        }
        objs.pop();
        return Module.build(Object.getPrototypeOf(m) as object, fields.map((fl) => fl.name), values);
      }
    }
  };
  return walk([...trees]);
}

function treeName(j: number): string {
  return j === 0 ? "the first tree" : `tree ${j + 1}`;
}

/** Check that `y` (tree j) is the same kind of node as `x` (the first tree) with the same metadata. */
function checkSameNode(kind: Kind, x: unknown, y: unknown, j: number, path: KeyPath): void {
  const fail = (what: string, mine: string, theirs: string): never => {
    throw new TreeStructureError(
      `pytree structure error: ${what} ${atKeyPath(path)}: the first tree has ${mine}, but ${treeName(j)} has ${theirs}`,
      path,
    );
  };
  const ky = kindOf(y);
  if (ky !== kind) return fail("different types", describeNode(x), describeNode(y));
  switch (kind) {
    case NONE:
      if (x !== y) fail("different types", String(x), String(y));
      return;
    case LIST: {
      const a = x as unknown[];
      const b = y as unknown[];
      if (a.length !== b.length) fail("different lengths of list", `a list of length ${a.length}`, `a list of length ${b.length}`);
      return;
    }
    case DICT: {
      const ka = sortedKeys(x as object);
      const kb = sortedKeys(y as object);
      if (!stringsEqual(ka, kb)) fail("different dict keys", `keys ${keysStr(ka)}`, `keys ${keysStr(kb)}`);
      return;
    }
    default: {
      const a = x as Module;
      const b = y as Module;
      if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) fail("custom node type mismatch", describeNode(a), describeClassOf(b, a));
      const fa = Module.fieldsOf(a);
      const fb = Module.fieldsOf(b);
      if (!fieldsEqual(fa, fb)) fail(`different ${a.className} fields`, `fields (${fieldsStr(fa)})`, `fields (${fieldsStr(fb)})`);
      for (const f of fa) {
        if (!f.static) continue;
        const va = (a as unknown as Record<string, unknown>)[f.name];
        const vb = (b as unknown as Record<string, unknown>)[f.name];
        if (!staticValueEqual(va, vb)) {
          throw new TreeStructureError(
            `pytree structure error: different ${a.className} static field ${atKeyPath([...path, { kind: "attr", name: f.name }])}: ` +
              `the first tree has ${describe(va)}, but ${treeName(j)} has ${describe(vb)}`,
            [...path, { kind: "attr", name: f.name }],
          );
        }
      }
    }
  }
}

/**
 * Apply `f` to the leaves of `tree` and the matching parts of `rest`
 * (`jax.tree.map`). Each tree in `rest` must have `tree`'s structure, or
 * `tree` as a prefix: where `tree` has a leaf, `f` gets whatever subtree
 * the others have there. Static leaves are leaves too. A mismatch throws
 * `TreeStructureError` naming the key path and what each tree had.
 */
export function treeMap(f: (leaf: any, ...rest: any[]) => unknown, tree: unknown, ...rest: unknown[]): unknown {
  return mapTrees((_p, xs) => f(...(xs as [unknown, ...unknown[]])), [tree, ...rest], undefined);
}

/** `treeMap` whose `f` also gets the leaf's key path (`jax.tree_util.tree_map_with_path`). */
export function treeMapWithPath(f: (path: KeyPath, leaf: any, ...rest: any[]) => unknown, tree: unknown, ...rest: unknown[]): unknown {
  return mapTrees((p, xs) => f(p.slice(), ...(xs as [unknown, ...unknown[]])), [tree, ...rest], undefined);
}

// ---------------------------------------------------------------------------
// partition / combine

/** A leaf of a filter spec: a boolean for a whole subtree, or a predicate applied to each leaf. */
export type Filter = boolean | ((leaf: unknown) => unknown);

/**
 * Split a tree in two, like `eqx.partition(tree, filter)`: the first has
 * the leaves `filter` accepts and `null` in place of the others, the second
 * the reverse. `filter` is a predicate (default `isArray`), a boolean, or a
 * tree of those that is a prefix of `tree` (`{w: true, act: false}`).
 * Empty subtrees (`null`, `undefined`) stay in both. `combine` undoes it.
 *
 * Typed as two `T`s because the halves keep `tree`'s shape; their leaves
 * may be `null`.
 */
export function partition<T>(tree: T, filter: unknown = isArray, opts: FlattenOptions = {}): [T, T] {
  const isLeaf = opts.isLeaf;
  const { leaves, treedef } = run(tree, false, isLeaf);
  let keep: boolean[];
  if (typeof filter === "function") {
    keep = leaves.map((x) => Boolean((filter as (x: unknown) => unknown)(x)));
  } else {
    // A prefix tree of filters: expand each to a mask over its subtree, as
    // equinox's _make_filter_tree does, then read the mask in leaf order.
    const mask = mapTrees(
      (path, [spec, sub]) => {
        if (typeof spec === "boolean") return mapTrees(() => spec, [sub], isLeaf);
        if (typeof spec === "function") return mapTrees((_p, [x]) => Boolean((spec as (x: unknown) => unknown)(x)), [sub], isLeaf);
        throw new BridgeInputError(
          `partition: a filter spec must consist of booleans and functions only; found ${describe(spec)} at ${where(path)}`,
          keystr(path),
        );
      },
      [filter, tree],
      undefined,
    );
    keep = run(mask, false, undefined).leaves as boolean[];
  }
  // Leaves replaced by null, in place: the result has `tree`'s shape with null leaves.
  const dynamic = unflatten(treedef, leaves.map((x, i) => (keep[i] ? x : null)));
  const statics = unflatten(treedef, leaves.map((x, i) => (keep[i] ? null : x)));
  return [dynamic as T, statics as T];
}

/**
 * Merge trees made by `partition`, like `eqx.combine`: each leaf is the
 * first non-`null` among the trees at that place. A `null` in the first
 * tree may stand for a whole subtree of the others.
 */
export function combine<T>(...trees: T[]): T {
  if (trees.length === 0) throw new BridgeInputError("combine: needs at least one tree");
  return mapTrees(
    (_p, xs) => {
      for (const x of xs) if (x !== null) return x;
      return null;
    },
    trees,
    (x) => x === null,
  ) as T;
}

// ---------------------------------------------------------------------------
// Equality

/** Where two trees first differ (depth-first order) and what each side has there. */
export interface Difference {
  /** keystr form: `['params'].act`; "" at the root. */
  path: string;
  keyPath: KeyPath;
  left: string;
  right: string;
}

/**
 * Whether the trees are equal as `eqx.tree_equal` says: same structure (node
 * kinds, list lengths, dict keys, Module classes and static fields), static
 * leaves `===` (so NaN is unequal to itself, as Python's `==` says),
 * NDArrays of the same shape and dtype with every element equal (integers
 * and bools exactly; floats and complex by value: -0 equals 0, NaN equals
 * nothing).
 *
 * DeviceArrays cannot be read synchronously: two are equal exactly when they
 * are the same handle of the same sidecar (`owner.instance` and `handle`);
 * a DeviceArray never equals an NDArray. Fetch with `toHost()` to compare
 * contents. Other registered array classes (tracers) compare by identity.
 */
export function treeEqual(a: unknown, b: unknown, ...more: unknown[]): boolean {
  if (findDifference(a, b) !== null) return false;
  for (const c of more) if (findDifference(a, c) !== null) return false;
  return true;
}

/**
 * The first key path where `a` and `b` differ under `treeEqual`'s rules, with
 * a short description of each side, or `null` if they are equal.
 * `{path: "['params'].act", left: "'relu'", right: "'tanh'"}`.
 */
export function firstDifference(a: unknown, b: unknown): Difference | null {
  const d = findDifference(a, b);
  if (d === null) return null;
  const [left, right] = d.describe();
  return { path: keystr(d.path), keyPath: d.path, left, right };
}

interface RawDifference {
  path: KeyPath;
  describe(): [string, string];
}

function findDifference(a0: unknown, b0: unknown): RawDifference | null {
  const stack: KeyEntry[] = [];
  const ctxA = { stack, objs: [] as object[] };
  const ctxB = { stack, objs: [] as object[] };
  const found = (describe: () => [string, string], extra?: KeyEntry): RawDifference => ({
    path: extra ? [...stack, extra] : stack.slice(),
    describe,
  });
  const visit = (a: unknown, b: unknown): RawDifference | null => {
    const ka = kindOf(a);
    const kb = kindOf(b);
    if (ka !== kb) return found(() => [describeNode(a), describeNode(b)]);
    switch (ka) {
      case LEAF:
        return leafDifference(a, b, found);
      case NONE:
        return a === b ? null : found(() => [String(a), String(b)]);
      case LIST: {
        const xa = a as unknown[];
        const xb = b as unknown[];
        if (xa.length !== xb.length) return found(() => [`a list of length ${xa.length}`, `a list of length ${xb.length}`]);
        enter(ctxA, xa);
        enter(ctxB, xb);
        for (let i = 0; i < xa.length; i++) {
          stack.push({ kind: "index", index: i });
          const d = visit(xa[i], xb[i]);
          stack.pop();
          if (d) return d;
        }
        ctxA.objs.pop();
        ctxB.objs.pop();
        return null;
      }
      case DICT: {
        const ra = a as Record<string, unknown>;
        const rb = b as Record<string, unknown>;
        const keys = sortedKeys(ra);
        const kb2 = sortedKeys(rb);
        if (!stringsEqual(keys, kb2)) return found(() => [`a dict with keys ${keysStr(keys)}`, `a dict with keys ${keysStr(kb2)}`]);
        enter(ctxA, ra);
        enter(ctxB, rb);
        for (const k of keys) {
          stack.push({ kind: "key", key: k });
          const d = visit(ra[k], rb[k]);
          stack.pop();
          if (d) return d;
        }
        ctxA.objs.pop();
        ctxB.objs.pop();
        return null;
      }
      default: {
        const ma = a as Module;
        const mb = b as Module;
        if (Object.getPrototypeOf(ma) !== Object.getPrototypeOf(mb)) return found(() => [describeNode(ma), describeClassOf(mb, ma)]);
        const fa = Module.fieldsOf(ma);
        const fb = Module.fieldsOf(mb);
        if (!fieldsEqual(fa, fb)) return found(() => [`${ma.className} with fields (${fieldsStr(fa)})`, `${mb.className} with fields (${fieldsStr(fb)})`]);
        const ra = ma as unknown as Record<string, unknown>;
        const rb = mb as unknown as Record<string, unknown>;
        for (const f of fa) {
          if (f.static && !staticValueEqual(ra[f.name], rb[f.name])) {
            return found(() => [describe(ra[f.name]), describe(rb[f.name])], { kind: "attr", name: f.name });
          }
        }
        enter(ctxA, ma);
        enter(ctxB, mb);
        for (const f of fa) {
          if (f.static) continue;
          stack.push({ kind: "attr", name: f.name });
          const d = visit(ra[f.name], rb[f.name]);
          stack.pop();
          if (d) return d;
        }
        ctxA.objs.pop();
        ctxB.objs.pop();
        return null;
      }
    }
  };
  return visit(a0, b0);
}

function leafDifference(a: unknown, b: unknown, found: (d: () => [string, string]) => RawDifference): RawDifference | null {
  const aa = isArray(a);
  const ab = isArray(b);
  if (!aa && !ab) return a === b ? null : found(() => [describe(a), describe(b)]);
  if (aa !== ab) return found(() => [describe(a), describe(b)]);
  if (a instanceof NDArray && b instanceof NDArray) {
    if (a.dtype !== b.dtype || a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
      return found(() => [describe(a), describe(b)]);
    }
    const i = firstUnequalElement(a, b);
    if (i < 0) return null;
    return found(() => [`${describe(a)} with ${elementAt(a, i)}`, `${describe(b)} with ${elementAt(b, i)}`]);
  }
  if (a instanceof DeviceArray && b instanceof DeviceArray) {
    if (a.owner.instance === b.owner.instance && a.handle === b.handle) return null;
    return found(() => [
      `${a} of sidecar ${a.owner.instance}`,
      `${b} of sidecar ${b.owner.instance} (DeviceArrays are equal only as the same handle; fetch with toHost() to compare contents)`,
    ]);
  }
  if (a === b) return null;
  if ((a instanceof NDArray && b instanceof DeviceArray) || (a instanceof DeviceArray && b instanceof NDArray)) {
    return found(() => [describe(a), `${describe(b)} (an NDArray never equals a DeviceArray; fetch with toHost() to compare contents)`]);
  }
  return found(() => [describe(a), describe(b)]);
}

/** Flat index of the first element where `a != b` as numpy's `==` says, or -1. Same shape and dtype. */
function firstUnequalElement(a: NDArray, b: NDArray): number {
  const x = a.data as ArrayLike<number | bigint>;
  const y = b.data as ArrayLike<number | bigint>;
  const n = x.length;
  switch (a.dtype) {
    case "bool":
      for (let i = 0; i < n; i++) if ((x[i] !== 0) !== (y[i] !== 0)) return i;
      return -1;
    case "float16":
    case "bfloat16": {
      const dec = a.dtype === "float16" ? float16BitsToNumber : bfloat16BitsToNumber;
      for (let i = 0; i < n; i++) if (dec(x[i] as number) !== dec(y[i] as number)) return i;
      return -1;
    }
    default: {
      const lanes = dtypeInfo(a.dtype).lanes;
      for (let i = 0; i < n; i++) if (x[i] !== y[i]) return Math.floor(i / lanes);
      return -1;
    }
  }
}

// ---------------------------------------------------------------------------
// Descriptions for messages

function elementAt(a: NDArray, flat: number): string {
  const idx: number[] = [];
  let r = flat;
  for (let k = a.shape.length - 1; k >= 0; k--) {
    const d = a.shape[k]!;
    idx.unshift(r % d);
    r = Math.floor(r / d);
  }
  return `${a.shape.length === 0 ? "value" : `[${idx.join(", ")}]`} = ${scalarStr(a.flatItem(flat))}`;
}

function scalarStr(v: Scalar): string {
  if (typeof v === "object") return `(${numStr(v.re)}${v.im < 0 || Object.is(v.im, -0) ? "-" : "+"}${numStr(Math.abs(v.im))}j)`;
  if (typeof v === "number") return numStr(v);
  return String(v);
}

function numStr(n: number): string {
  return Object.is(n, -0) ? "-0" : String(n);
}

function keysStr(keys: readonly string[]): string {
  const shown = keys.slice(0, 8).map(pyStrRepr);
  if (keys.length > 8) shown.push(`... (${keys.length} keys)`);
  return `[${shown.join(", ")}]`;
}

function fieldsStr(fields: readonly ModuleField[]): string {
  return fields.map((f) => (f.static ? `${f.name} (static)` : f.name)).join(", ");
}

/** What a node is, for messages: `a list of length 2`, `a dict with keys ['a']`, `module MLP`, or the leaf. */
function describeNode(x: unknown): string {
  switch (kindOf(x)) {
    case NONE:
      return String(x);
    case LIST:
      return `a list of length ${(x as unknown[]).length}`;
    case DICT:
      return `a dict with keys ${keysStr(sortedKeys(x as object))}`;
    case MODULE:
      return describe(x);
    default:
      return isArray(x) ? describe(x) : `a leaf (${describe(x)})`;
  }
}

/** Describe `b`'s class, saying so when it merely shares a name with `a`'s. */
function describeClassOf(b: Module, a: Module): string {
  const d = describeNode(b);
  return b.className === a.className ? `${d} (a different class with the same name)` : d;
}
