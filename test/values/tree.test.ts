import assert from "node:assert/strict";
import { DeviceArray, type HandleOwner } from "../../src/values/device-array.js";
import type { DType } from "../../src/values/dtype.js";
import { BridgeInputError } from "../../src/values/errors.js";
import { Module } from "../../src/values/module.js";
import { NDArray, array } from "../../src/values/ndarray.js";
import {
  type KeyPath,
  TreeStructureError,
  combine,
  compareKeys,
  firstDifference,
  flatten,
  flattenWithPath,
  isArray,
  keystr,
  partition,
  pyStrRepr,
  treeEqual,
  treeLeaves,
  treeMap,
  treeMapWithPath,
  treeStructure,
  treedefEqual,
  unflatten,
} from "../../src/values/tree.js";
import { runPython } from "../support/python.js";
import { mulberry32 } from "../support/random.js";

// ---------------------------------------------------------------------------
// Seeded generation (replay a failure with TREE_TEST_SEED)
// ---------------------------------------------------------------------------

const SEED = Number(process.env.TREE_TEST_SEED ?? 20250214);


class Gen {
  readonly rand: () => number;
  constructor(seed: number) {
    this.rand = mulberry32(seed);
  }
  int(n: number): number {
    return Math.floor(this.rand() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.rand() < p;
  }
}

/**
 * Keys where JS and Python disagree unless done with care: code-point vs
 * UTF-16 order (U+FF21 sorts before U+1F600 in Python, after it in a JS
 * default sort), numeric strings ("10" < "9"), quotes, escapes, characters
 * Python's repr escapes (\xa0, \u2028, \u200b, lone surrogates), `__proto__`.
 */
const KEYS = [
  "a", "b", "params", "w", "B", "_x", "", " ", "10", "9", "01", "-1", "1.5", "2",
  "é", "ß", "日本", "😀", "\uff21", "\ufb01", "𝔘", "a'b", 'a"b', "a'\"b", "back\\slash",
  "new\nline", "tab\t", "cr\r", "\x01ctl", "del\x7f", "nb\xa0sp", "\u2028ls", "zw\u200bsp",
  "\u3000ideo", "lone\ud800", "\udfff", "__proto__", "constructor", "toString", "\u00ff", "\u0100", "\ue000",
];

/** A random list/dict tree of distinct integer leaves, with nulls and empty containers. */
function genKeyTree(g: Gen, depth: number, counter: { n: number }): unknown {
  const r = g.rand();
  if (depth <= 0 || r < 0.25) {
    if (g.chance(0.12)) return null;
    return counter.n++;
  }
  if (r < 0.55) {
    const n = g.chance(0.1) ? 0 : 1 + g.int(4);
    return Array.from({ length: n }, () => genKeyTree(g, depth - 1, counter));
  }
  const n = g.chance(0.1) ? 0 : 1 + g.int(6);
  const o: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    // defineProperty so that `__proto__` is an own key, as JSON.parse makes it
    Object.defineProperty(o, g.pick(KEYS), { value: genKeyTree(g, depth - 1, counter), enumerable: true, writable: true, configurable: true });
  }
  return o;
}

const JTU_PRELUDE = `
import json, sys, base64
import numpy as np
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import equinox as eqx

def dtype_of(name):
    return jnp.bfloat16 if name == "bfloat16" else np.dtype(name)

def hook(d):
    if "__nd__" in d and len(d) == 1:
        spec = d["__nd__"]
        raw = base64.b64decode(spec["b64"])
        return np.frombuffer(raw, dtype=dtype_of(spec["dtype"])).reshape(spec["shape"]).copy()
    if "__nan__" in d and len(d) == 1:
        return float("nan")
    return d

def tag(x):
    if x is None:
        return ["none", None]
    if eqx.is_array(x):
        return ["array", str(x.dtype) + str(list(x.shape))]
    return ["static", x]
`;

// ---------------------------------------------------------------------------
// Arrays in JSON for the oracle
// ---------------------------------------------------------------------------

function encode(tree: unknown): unknown {
  if (tree instanceof NDArray) {
    return { __nd__: { dtype: tree.dtype, shape: tree.shape, b64: Buffer.from(tree.bytes()).toString("base64") } };
  }
  if (typeof tree === "number" && Number.isNaN(tree)) return { __nan__: true };
  if (Array.isArray(tree)) return tree.map(encode);
  if (tree !== null && typeof tree === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(tree)) {
      Object.defineProperty(out, k, { value: encode((tree as Record<string, unknown>)[k]), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return tree;
}

function tagOf(x: unknown): [string, unknown] {
  if (x === null) return ["none", null];
  if (x instanceof NDArray) return ["array", `${x.dtype}[${x.shape.join(", ")}]`];
  return ["static", x];
}

const ARRAY_DTYPES: DType[] = ["float32", "float64", "int32", "int64", "uint8", "bool", "float16", "bfloat16", "complex64", "int8"];

function genShape(g: Gen): number[] {
  const nd = g.int(4);
  return Array.from({ length: nd }, () => (g.chance(0.08) ? 0 : 1 + g.int(3)));
}

function genArray(g: Gen, dtype: DType = g.pick(ARRAY_DTYPES), shape: number[] = genShape(g)): NDArray {
  const size = shape.reduce((a, b) => a * b, 1);
  const vals = Array.from({ length: size }, () => {
    if (dtype === "bool") return g.chance(0.5);
    if (dtype === "uint8") return g.int(256);
    if (dtype === "int8") return g.int(256) - 128;
    if (dtype.startsWith("int")) return g.int(2000) - 1000;
    if (dtype.startsWith("complex")) return { re: g.int(8) / 4 - 1, im: g.int(8) / 4 - 1 };
    return g.int(16) / 4 - 2;
  });
  return array(vals.length === 0 ? [] : vals, dtype, shape);
}

const STATICS = [0, 1, -3, 2.5, "relu", "tanh", "", "é", true, false];

/** A list/dict tree whose leaves mix arrays, static values and nulls. */
function genArrayTree(g: Gen, depth: number): unknown {
  const r = g.rand();
  if (depth <= 0 || r < 0.3) {
    const s = g.rand();
    if (s < 0.5) return genArray(g);
    if (s < 0.6) return null;
    return g.pick(STATICS);
  }
  if (r < 0.6) return Array.from({ length: g.int(4) }, () => genArrayTree(g, depth - 1));
  const o: Record<string, unknown> = {};
  const n = g.int(5);
  for (let i = 0; i < n; i++) o[g.pick(["w", "b", "act", "params", "é", "10", "9", "😀", "\uff21"])] = genArrayTree(g, depth - 1);
  return o;
}

function copyArray(a: NDArray, dtype: DType = a.dtype, shape: readonly number[] = a.shape): NDArray {
  if (dtype === a.dtype) return new NDArray(a.copy().data, shape, dtype);
  return array(a.toList(), dtype, shape);
}

function deepCopy(t: unknown): unknown {
  return treeMap((x) => (x instanceof NDArray ? copyArray(x) : x), t);
}

/** Change one leaf of `t` with `change` (picked by index among leaves matching `want`); null if none matched. */
function changeLeaf(g: Gen, t: unknown, want: (x: unknown) => boolean, change: (x: any) => unknown): unknown | null {
  const { leaves, treedef } = flatten(t);
  const idx = leaves.map((x, i) => (want(x) ? i : -1)).filter((i) => i >= 0);
  if (idx.length === 0) return null;
  const k = g.pick(idx);
  const out = leaves.map((x, i) => (i === k ? change(x) : x));
  return unflatten(treedef, out);
}

function setFlat(a: NDArray, i: number, v: number): NDArray {
  const list = flatValues(a);
  list[i] = v;
  return array(list as never, a.dtype, a.shape);
}

function flatValues(a: NDArray): unknown[] {
  return Array.from({ length: a.size }, (_, i) => a.flatItem(i));
}

const isFloatArray = (x: unknown): boolean => x instanceof NDArray && x.size > 0 && /^(float|bfloat)/.test(x.dtype);

/** A pair for treeEqual: a copy of `a` changed in one way. */
function mutate(g: Gen, a: unknown): { b: unknown; a: unknown; how: string } | null {
  const b = deepCopy(a);
  const how = g.int(14);
  switch (how) {
    case 0:
      return { a, b, how: "identical copy" };
    case 1: {
      const c = changeLeaf(g, b, (x) => x instanceof NDArray && x.size > 0 && x.dtype !== "bool", (x: NDArray) => setFlat(x, g.int(x.size), 3));
      return c === null ? null : { a, b: c, how: "element changed (maybe to an equal value)" };
    }
    case 2: {
      // NaN at the same place on both sides: unequal
      const flatA = flatten(a);
      const idx = flatA.leaves.map((x, i) => (isFloatArray(x) ? i : -1)).filter((i) => i >= 0);
      if (idx.length === 0) return null;
      const k = g.pick(idx);
      const pos = g.int((flatA.leaves[k] as NDArray).size);
      const leavesA = flatA.leaves.map((x, i) => (i === k ? setFlat(x as NDArray, pos, NaN) : x));
      const leavesB = leavesA.map((x) => (x instanceof NDArray ? copyArray(x) : x));
      return { a: unflatten(flatA.treedef, leavesA), b: unflatten(flatA.treedef, leavesB), how: "NaN on both sides" };
    }
    case 3: {
      // -0.0 against 0.0: equal
      const flatA = flatten(a);
      const idx = flatA.leaves.map((x, i) => (isFloatArray(x) ? i : -1)).filter((i) => i >= 0);
      if (idx.length === 0) return null;
      const k = g.pick(idx);
      const pos = g.int((flatA.leaves[k] as NDArray).size);
      const leavesA = flatA.leaves.map((x, i) => (i === k ? setFlat(x as NDArray, pos, 0) : x));
      const leavesB = leavesA.map((x, i) => (i === k ? setFlat(x as NDArray, pos, -0) : x instanceof NDArray ? copyArray(x) : x));
      return { a: unflatten(flatA.treedef, leavesA), b: unflatten(flatA.treedef, leavesB), how: "-0 vs 0" };
    }
    case 4: {
      const c = changeLeaf(g, b, (x) => x instanceof NDArray && (x.dtype === "float32" || x.dtype === "int32"), (x: NDArray) =>
        copyArray(x, x.dtype === "float32" ? "float64" : "int64"),
      );
      return c === null ? null : { a, b: c, how: "dtype widened, same values" };
    }
    case 5: {
      const c = changeLeaf(g, b, (x) => x instanceof NDArray, (x: NDArray) => copyArray(x, x.dtype, [...x.shape, 1]));
      return c === null ? null : { a, b: c, how: "shape with a trailing 1" };
    }
    case 6: {
      const c = changeLeaf(g, b, (x) => !(x instanceof NDArray), (x) => (typeof x === "string" ? `${x}!` : typeof x === "number" ? x + 1 : !x));
      return c === null ? null : { a, b: c, how: "static leaf changed" };
    }
    case 7: {
      const pa = changeLeaf(g, a, (x) => !(x instanceof NDArray), () => NaN);
      return pa === null ? null : { a: pa, b: deepCopy(pa), how: "static NaN on both sides" };
    }
    case 8: {
      const c = changeLeaf(g, b, (x) => x instanceof NDArray, (x: NDArray) => (x.size > 0 ? flatValues(x)[0] : 0));
      return c === null ? null : { a, b: c, how: "array vs scalar" };
    }
    case 9: {
      const c = changeLeaf(g, b, () => true, () => null);
      return c === null ? null : { a, b: c, how: "leaf replaced by null" };
    }
    case 10:
      return { a, b: [b], how: "wrapped in a list" };
    case 11:
      return { a: { k: a, j: 1 }, b: { k: b, i: 1 }, how: "dict keys differ" };
    case 12: {
      const c = changeLeaf(g, b, (x) => x instanceof NDArray && x.dtype === "bool", (x: NDArray) => copyArray(x, "uint8"));
      return c === null ? null : { a, b: c, how: "bool vs uint8" };
    }
    default: {
      // ±0 and NaN in half floats
      const dt: DType = g.pick(["float16", "bfloat16"]);
      const x = array([0, 1, NaN], dt);
      const y = array([-0, 1, g.chance(0.5) ? NaN : 1], dt);
      return { a: [a, x], b: [b, y], how: `${dt} with ±0 and NaN` };
    }
  }
}

// ---------------------------------------------------------------------------
// Oracle tests
// ---------------------------------------------------------------------------

describe("tree: key order and key paths against jax.tree_util", () => {
  it("flattens ~100 random list/dict trees in JAX's leaf order with JAX's keystr paths", async () => {
    const g = new Gen(SEED);
    const cases: unknown[] = [];
    // a fixed case where code-point order and UTF-16 order disagree
    cases.push({ "\uff21": 1, "😀": 2, "10": 3, "9": 4, a: { "": null, b: [] } });
    cases.push(null, [], {}, 7, [null, [null]]);
    for (let i = 0; i < 100; i++) cases.push(genKeyTree(g, 1 + g.int(5), { n: 0 }));
    const code = `${JTU_PRELUDE}
cases = json.load(sys.stdin)
out = []
for t in cases:
    lp, td = jtu.tree_flatten_with_path(t)
    out.append({"paths": [jtu.keystr(p) for p, _ in lp], "leaves": [v for _, v in lp], "n": td.num_leaves})
print(json.dumps(out))
`;
    const py = await runPython<{ paths: string[]; leaves: unknown[]; n: number }[]>(code, cases);
    assert.equal(py.length, cases.length);
    let leavesSeen = 0;
    cases.forEach((t, i) => {
      const { leaves, treedef } = flattenWithPath(t);
      const want = py[i]!;
      const ctx = `case ${i}: ${JSON.stringify(t)}`;
      assert.equal(treedef.numLeaves, want.n, ctx);
      assert.deepEqual(
        leaves.map((l) => keystr(l.path)),
        want.paths,
        ctx,
      );
      assert.deepEqual(
        leaves.map((l) => l.value),
        want.leaves,
        ctx,
      );
      // round trip through unflatten, and treeLeaves/flatten agree
      assert.deepEqual(treeLeaves(t), want.leaves);
      assert.ok(treedefEqual(treeStructure(unflatten(treedef, flatten(t).leaves)), treedef), ctx);
      leavesSeen += want.n;
    });
    assert.ok(leavesSeen > 300, `the generator should make real trees (saw ${leavesSeen} leaves)`);
  });

  it("sorts keys by code point, where a JS default sort would not", () => {
    const keys = ["😀", "\uff21", "a", "10", "9"];
    assert.deepEqual([...keys].sort(compareKeys), ["10", "9", "a", "\uff21", "😀"]);
    assert.deepEqual([...keys].sort(), ["10", "9", "a", "😀", "\uff21"]);
    assert.ok(compareKeys("lone\ud800", "lone\ue000") < 0, "a lone surrogate is code point U+D800");
    assert.ok(compareKeys("x\ud83d\ude00", "x\ud83d") > 0);
    assert.equal(compareKeys("abc", "abc"), 0);
  });
});

describe("tree: partition, combine and treeEqual against equinox", () => {
  it("partition(tree, isArray) splits as eqx.partition(tree, eqx.is_array) does, and combine undoes it", async () => {
    const g = new Gen(SEED + 1);
    const trees: unknown[] = [];
    for (let i = 0; i < 60; i++) trees.push(genArrayTree(g, 1 + g.int(4)));
    // filter specs as prefix trees of booleans, for dict roots
    const specs = trees.map((t) => {
      if (t === null || typeof t !== "object" || Array.isArray(t) || t instanceof NDArray) return null;
      const spec: Record<string, boolean> = {};
      for (const k of Object.keys(t)) spec[k] = g.chance(0.5);
      return spec;
    });
    const code = `${JTU_PRELUDE}
cases = json.load(sys.stdin, object_hook=hook)
def describe(t):
    lp, _ = jtu.tree_flatten_with_path(t, is_leaf=lambda x: x is None)
    return [[jtu.keystr(p)] + tag(x) for p, x in lp]
out = []
for c in cases:
    t = c["tree"]
    dyn, st = eqx.partition(t, eqx.is_array)
    r = {"dyn": describe(dyn), "st": describe(st), "roundtrip": bool(eqx.tree_equal(eqx.combine(dyn, st), t))}
    if c["spec"] is not None:
        d2, s2 = eqx.partition(t, c["spec"])
        r["specDyn"] = describe(d2)
        r["specSt"] = describe(s2)
    out.append(r)
print(json.dumps(out))
`;
    type Row = [string, string, unknown];
    const py = await runPython<{ dyn: Row[]; st: Row[]; roundtrip: boolean; specDyn?: Row[]; specSt?: Row[] }[]>(
      code,
      trees.map((t, i) => ({ tree: encode(t), spec: specs[i] })),
    );
    const describe = (t: unknown): Row[] =>
      flattenWithPath(t, { isLeaf: (x) => x === null }).leaves.map((l) => [keystr(l.path), ...tagOf(l.value)] as Row);
    let arrays = 0;
    let statics = 0;
    trees.forEach((t, i) => {
      const ctx = `case ${i}`;
      const [dyn, st] = partition(t);
      assert.deepEqual(describe(dyn), py[i]!.dyn, ctx);
      assert.deepEqual(describe(st), py[i]!.st, ctx);
      assert.equal(py[i]!.roundtrip, true);
      // combine restores the very same leaves
      const back = combine(dyn, st);
      assert.ok(treedefEqual(treeStructure(back), treeStructure(t)), ctx);
      const lb = treeLeaves(back);
      treeLeaves(t).forEach((x, k) => assert.ok(Object.is(x, lb[k]), ctx));
      assert.ok(treeEqual(back, t), ctx);
      if (specs[i] !== null) {
        const [d2, s2] = partition(t, specs[i]);
        assert.deepEqual(describe(d2), py[i]!.specDyn, `${ctx} spec`);
        assert.deepEqual(describe(s2), py[i]!.specSt, `${ctx} spec`);
        assert.ok(treeEqual(combine(d2, s2), t));
      }
      arrays += py[i]!.dyn.filter((r) => r[1] === "array").length;
      statics += py[i]!.st.filter((r) => r[1] === "static").length;
    });
    assert.ok(arrays > 30 && statics > 20, `generated trees should mix leaves (${arrays} arrays, ${statics} statics)`);
  });

  it("treeEqual agrees with eqx.tree_equal on generated pairs (NaN, -0.0, dtype, shape, structure)", async () => {
    const g = new Gen(SEED + 2);
    const pairs: { a: unknown; b: unknown; how: string }[] = [];
    while (pairs.length < 200) {
      const p = mutate(g, genArrayTree(g, 1 + g.int(3)));
      if (p !== null) pairs.push(p);
    }
    const code = `${JTU_PRELUDE}
pairs = json.load(sys.stdin, object_hook=hook)
print(json.dumps([bool(eqx.tree_equal(p["a"], p["b"])) for p in pairs]))
`;
    const py = await runPython<boolean[]>(code, pairs.map((p) => ({ a: encode(p.a), b: encode(p.b) })));
    const seen = { true: 0, false: 0 };
    pairs.forEach((p, i) => {
      const mine = treeEqual(p.a, p.b);
      assert.equal(mine, py[i], `pair ${i} (${p.how}): eqx.tree_equal says ${py[i]}; first difference ${JSON.stringify(firstDifference(p.a, p.b))}`);
      assert.equal(firstDifference(p.a, p.b) === null, mine, `pair ${i} (${p.how}): firstDifference agrees with treeEqual`);
      seen[String(mine) as "true" | "false"]++;
    });
    assert.ok(seen.true > 30 && seen.false > 30, `both outcomes should be exercised: ${JSON.stringify(seen)}`);
  });
});

// ---------------------------------------------------------------------------
// Unit tests
// ---------------------------------------------------------------------------

describe("tree: keystr and reprs", () => {
  it("writes JAX's keystr form", () => {
    const path: KeyPath = [
      { kind: "index", index: 0 },
      { kind: "key", key: "params" },
      { kind: "attr", name: "w" },
    ];
    assert.equal(keystr(path), "[0]['params'].w");
    assert.equal(keystr([]), "");
    assert.equal(keystr(path, { simple: true, separator: "/" }), "0/params/w");
  });

  it("quotes dict keys as Python's repr does", () => {
    assert.equal(pyStrRepr("a'b"), `"a'b"`);
    assert.equal(pyStrRepr(`a'"b`), `'a\\'"b'`);
    assert.equal(pyStrRepr("\x01\n\t\\"), `'\\x01\\n\\t\\\\'`);
    assert.equal(pyStrRepr("nb\xa0 \u2028\u200b😀\u{e0001}"), `'nb\\xa0 \\u2028\\u200b😀\\U000e0001'`);
  });
});

describe("tree: leaves and nodes", () => {
  it("treats numbers, strings, functions and non-plain objects as static leaves", () => {
    class Foo {
      x = 1;
    }
    const fn = (): number => 1;
    const sym = Symbol("s");
    const m = new Map([[1, 2]]);
    const d = new Date(0);
    const ta = new Float32Array(2);
    const foo = new Foo();
    const t = [1, "s", true, 5n, fn, sym, m, d, ta, foo];
    const { leaves, treedef } = flatten(t);
    assert.equal(leaves.length, t.length);
    leaves.forEach((x, i) => assert.ok(Object.is(x, t[i])));
    assert.equal(treedef.toString(), "TreeDef([*, *, *, *, *, *, *, *, *, *])");
    assert.equal(isArray(array([1])), true);
    assert.equal(isArray(ta), false);
    assert.equal(isArray(1), false);
  });

  it("keeps null and undefined apart as empty subtrees", () => {
    const t = { a: null, b: undefined, c: [undefined, 1] };
    const { leaves, treedef } = flatten(t);
    assert.deepEqual(leaves, [1]);
    assert.equal(treedef.toString(), "TreeDef({'a': null, 'b': undefined, 'c': [undefined, *]})");
    const back = unflatten(treedef, [2]) as typeof t;
    assert.strictEqual(back.a, null);
    assert.ok("b" in back && back.b === undefined);
    assert.deepEqual(back.c, [undefined, 2]);
    assert.equal(treedefEqual(treeStructure({ a: null }), treeStructure({ a: undefined })), false);
    assert.equal(treeEqual({ a: null }, { a: undefined }), false);
    assert.deepEqual(firstDifference({ a: null }, { a: undefined }), { path: "['a']", keyPath: [{ kind: "key", key: "a" }], left: "null", right: "undefined" });
    assert.throws(() => treeMap((x) => x, [null], [undefined]), /different types at key path \[0\]: the first tree has null, but tree 2 has undefined/);
  });

  it("keeps `__proto__` as an own key and null-prototype objects as they were", () => {
    const o = JSON.parse('{"__proto__": [1, 2], "a": 3}') as Record<string, unknown>;
    const { leaves, treedef } = flatten(o);
    assert.deepEqual(leaves, [1, 2, 3]);
    const back = unflatten(treedef, [4, 5, 6]) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(back), Object.prototype);
    assert.ok(Object.prototype.hasOwnProperty.call(back, "__proto__"));
    assert.deepEqual(Object.getOwnPropertyDescriptor(back, "__proto__")!.value, [4, 5]);
    const bare = Object.assign(Object.create(null) as object, { x: 1 });
    const rebuilt = treeMap((x: number) => x + 1, bare) as Record<string, number>;
    assert.equal(Object.getPrototypeOf(rebuilt), null);
    assert.equal(rebuilt.x, 2);
  });

  it("rebuilds dicts with sorted keys, as JAX does", () => {
    const out = treeMap((x) => x, { b: 1, a: 2, "😀": 3, "\uff21": 4 }) as object;
    assert.deepEqual(Object.keys(out), ["a", "b", "\uff21", "😀"]);
  });

  it("rejects cycles with the path where the tree re-enters itself", () => {
    const a: unknown[] = [1];
    const t = { params: { layers: a } };
    a.push({ back: a });
    assert.throws(
      () => flatten(t),
      (e: unknown) =>
        e instanceof BridgeInputError &&
        e.path === "['params']['layers'][1]['back']" &&
        /cycle.*\['params'\]\['layers'\]\[1\]\['back'\].*ancestor at \['params'\]\['layers'\]/.test(e.message),
    );
    assert.throws(() => treeMap((x) => x, t), /cycle/);
    assert.throws(() => treeEqual(t, t), /cycle/);
    const self: Record<string, unknown> = {};
    self.me = self;
    assert.throws(() => flatten(self), /ancestor at the root/);
  });

  it("allows shared subtrees that are not cycles", () => {
    const shared = [1, 2];
    const { leaves } = flatten({ a: shared, b: shared, c: [shared, shared] });
    assert.deepEqual(leaves, [1, 2, 1, 2, 1, 2, 1, 2]);
  });

  it("unflatten checks the number of leaves", () => {
    const { treedef } = flatten([1, [2, 3]]);
    assert.equal(treedef.numLeaves, 3);
    assert.equal(treedef.numNodes, 5);
    assert.throws(() => unflatten(treedef, [1, 2]), /has 3 leaves, got 2/);
  });

  it("isLeaf stops the descent", () => {
    const t = { a: [1, 2], b: null };
    assert.deepEqual(treeLeaves(t, { isLeaf: (x) => Array.isArray(x) || x === null }), [[1, 2], null]);
  });
});

describe("tree: treeMap", () => {
  it("maps several trees leaf by leaf, with paths", () => {
    const a = { w: [1, 2], b: 3 };
    const b = { w: [10, 20], b: 30 };
    assert.deepEqual(treeMap((x: number, y: number) => x + y, a, b), { b: 33, w: [11, 22] });
    const paths: string[] = [];
    treeMapWithPath((p, x) => paths.push(`${keystr(p)}=${x}`), a);
    assert.deepEqual(paths, ["['b']=3", "['w'][0]=1", "['w'][1]=2"]);
  });

  it("lets the other trees have any subtree where the first has a leaf (JAX's prefix rule)", () => {
    assert.deepEqual(treeMap((x: number, y: unknown) => [x, y], { a: 1 }, { a: { deep: [1] } }), { a: [1, { deep: [1] }] });
  });

  it("names the key path and what each tree had on a mismatch", () => {
    const check = (a: unknown, b: unknown, re: RegExp, path: string): void =>
      assert.throws(
        () => treeMap(() => 0, a, b),
        (e: unknown) => e instanceof TreeStructureError && e.path === path && re.test(e.message),
      );
    check({ params: { w: [1] } }, { params: { w: { a: 1 } } }, /^pytree structure error: different types at key path \['params'\]\['w'\]: the first tree has a list of length 1, but tree 2 has a dict with keys \['a'\]$/, "['params']['w']");
    check({ params: { w: [1] } }, { params: { w: [1, 2] } }, /different lengths of list at key path \['params'\]\['w'\]: the first tree has a list of length 1, but tree 2 has a list of length 2/, "['params']['w']");
    check({ params: { w: 1 } }, { params: { x: 1 } }, /different dict keys at key path \['params'\]: the first tree has keys \['w'\], but tree 2 has keys \['x'\]/, "['params']");
    check([[1]], [5], /different types at key path \[0\]: the first tree has a list of length 1, but tree 2 has a leaf \(5\)/, "[0]");
    check([1], { 0: 1 }, /different types at the root/, "");
    assert.throws(() => treeMap(() => 0, [1], [1], [1, 2]), /but tree 3 has a list of length 2/);
  });
});

describe("tree: partition and combine", () => {
  it("replaces the other side's leaves with null and keeps empty subtrees", () => {
    const w = array([1, 2]);
    const t = { a: [1, w, null], b: "x", c: undefined };
    const [dyn, st] = partition(t);
    assert.deepEqual(dyn, { a: [null, w, null], b: null, c: undefined });
    assert.deepEqual(st, { a: [1, null, null], b: "x", c: undefined });
    assert.deepEqual(combine(dyn, st), t);
  });

  it("accepts a boolean, a predicate or a prefix tree of them", () => {
    const t = { a: [1, 2], b: "x" };
    assert.deepEqual(partition(t, true), [t, { a: [null, null], b: null }]);
    assert.deepEqual(partition(t, { a: (x: unknown) => x === 2, b: false }), [
      { a: [null, 2], b: null },
      { a: [1, null], b: "x" },
    ]);
    assert.throws(() => partition(t, { a: 1, b: false }), /filter spec must consist of booleans and functions only; found 1 at \['a'\]/);
  });

  it("combine lets a null stand for a whole subtree of a later tree, and not the other way", () => {
    assert.deepEqual(combine({ a: null }, { a: [1, 2] }), { a: [1, 2] });
    assert.deepEqual(combine([null, 1], [0, null], [9, 9]), [0, 1]);
    assert.throws(() => combine({ a: [1, 2] }, { a: null }), /different types at key path \['a'\]/);
  });
});

class FakeOwner implements HandleOwner {
  readonly closed = false;
  constructor(readonly instance: string) {}
  fetch(): Promise<NDArray> {
    return Promise.reject(new Error("not connected"));
  }
  release(): void {}
}

describe("tree: treeEqual and firstDifference", () => {
  it("compares NDArrays by shape, dtype and value (-0 == 0, NaN != NaN)", () => {
    assert.equal(treeEqual(array([0, 1], "float32"), array([-0, 1], "float32")), true);
    assert.equal(treeEqual(array([NaN]), array([NaN])), false);
    assert.equal(treeEqual(array([1, 2], "float32"), array([1, 2], "float64")), false);
    assert.equal(treeEqual(array([1, 2]), array([[1, 2]])), false);
    assert.equal(treeEqual(array([{ re: 1, im: NaN }], "complex64"), array([{ re: 1, im: NaN }], "complex64")), false);
    assert.equal(treeEqual(array([0, 1], "bfloat16"), array([-0, 1], "bfloat16")), true);
    assert.equal(treeEqual(array([NaN], "float16"), array([NaN], "float16")), false);
    assert.equal(treeEqual(array([5n, 2n ** 62n], "int64"), array([5n, 2n ** 62n], "int64")), true);
    assert.equal(treeEqual([1, "a"], [1, "a"], [1, "a"]), true);
    assert.equal(treeEqual([1, "a"], [1, "a"], [1, "b"]), false);
  });

  it("compares static leaves with === (NaN unequal, as Python's == says)", () => {
    assert.equal(treeEqual({ x: NaN }, { x: NaN }), false);
    assert.equal(treeEqual({ x: -0 }, { x: 0 }), true);
    assert.equal(treeEqual({ x: 1 }, { x: true }), false);
    const f = (): void => {};
    assert.equal(treeEqual([f], [f]), true);
    assert.equal(treeEqual([f], [() => {}]), false);
  });

  it("compares DeviceArrays as handles of the same sidecar", () => {
    const o1 = new FakeOwner("sidecar-1");
    const o1b = new FakeOwner("sidecar-1");
    const o2 = new FakeOwner("sidecar-2");
    const a = new DeviceArray(o1, 7, "float32", [2], "cpu:0");
    assert.equal(treeEqual(a, new DeviceArray(o1b, 7, "float32", [2], "cpu:0")), true);
    assert.equal(treeEqual(a, new DeviceArray(o2, 7, "float32", [2], "cpu:0")), false);
    assert.equal(treeEqual(a, new DeviceArray(o1, 8, "float32", [2], "cpu:0")), false);
    assert.equal(treeEqual(a, array([1, 2])), false);
    assert.match(firstDifference([a], [array([1, 2])])!.right, /never equals a DeviceArray/);
    assert.equal(isArray(a), true);
  });

  it("names the first differing path and both sides", () => {
    assert.deepEqual(firstDifference({ params: { act: "relu", w: 1 } }, { params: { act: "tanh", w: 2 } }), {
      path: "['params']['act']",
      keyPath: [
        { kind: "key", key: "params" },
        { kind: "key", key: "act" },
      ],
      left: "'relu'",
      right: "'tanh'",
    });
    const d = firstDifference([array([[1, 2], [3, 4]])], [array([[1, 2], [3, 5]])])!;
    assert.equal(d.path, "[0]");
    assert.equal(d.left, "int32[2, 2] with [1, 1] = 4");
    assert.equal(d.right, "int32[2, 2] with [1, 1] = 5");
    assert.deepEqual(firstDifference([1, [2]], [1, [2, 3]]), { path: "[1]", keyPath: [{ kind: "index", index: 1 }], left: "a list of length 1", right: "a list of length 2" });
    assert.equal(firstDifference(array([1], "float32"), array([1], "float64"))!.left, "float32[1]");
    assert.equal(firstDifference({ a: 1 }, { b: 1 })!.left, "a dict with keys ['a']");
    assert.equal(firstDifference(1, 1), null);
  });
});

describe("tree: Module nodes (see test/module.test.ts for the equinox oracle)", () => {
  class Lin extends Module {
    w: unknown;
    act: string;
    static staticFields = ["act"];
    constructor(w: unknown, act: string) {
      super();
      this.w = w;
      this.act = act;
    }
  }

  it("reports a static field difference at the field's path", () => {
    const a = { params: new Lin(1, "relu") };
    const b = { params: new Lin(1, "tanh") };
    assert.deepEqual(firstDifference(a, b), {
      path: "['params'].act",
      keyPath: [
        { kind: "key", key: "params" },
        { kind: "attr", name: "act" },
      ],
      left: "'relu'",
      right: "'tanh'",
    });
    assert.throws(
      () => treeMap(() => 0, a, b),
      (e: unknown) =>
        e instanceof TreeStructureError &&
        e.path === "['params'].act" &&
        e.message === "pytree structure error: different Lin static field at key path ['params'].act: the first tree has 'relu', but tree 2 has 'tanh'",
    );
  });
});
