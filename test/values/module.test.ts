import assert from "node:assert/strict";
import { BridgeInputError } from "../../src/values/errors.js";
import { Module } from "../../src/values/module.js";
import { NDArray, array } from "../../src/values/ndarray.js";
import {
  TreeStructureError,
  combine,
  firstDifference,
  flatten,
  flattenWithPath,
  keystr,
  partition,
  treeEqual,
  treeMap,
  treeStructure,
  treedefEqual,
  unflatten,
} from "../../src/values/tree.js";
import { runPython } from "../support/python.js";

let constructed = 0;

class Linear extends Module {
  weight: unknown;
  act: string;
  bias: unknown;
  static staticFields = ["act"];
  constructor(weight: unknown, act: string, bias: unknown) {
    super();
    constructed++;
    this.weight = weight;
    this.act = act;
    this.bias = bias;
  }
  apply(x: number): number {
    return x * Number(this.weight);
  }
}

/** Inherits Linear's fields and its static list; adds its own. */
class Scaled extends Linear {
  extra: unknown;
  scale: number;
  static override staticFields = ["scale"];
  constructor(weight: unknown, act: string, bias: unknown, extra: unknown, scale: number) {
    super(weight, act, bias);
    this.extra = extra;
    this.scale = scale;
  }
}

class Seq extends Module {
  layers: Module[];
  name: string;
  meta: Record<string, unknown>;
  static staticFields = ["name"];
  constructor(layers: Module[], name: string, meta: Record<string, unknown>) {
    super();
    this.layers = layers;
    this.name = name;
    this.meta = meta;
  }
}

const PY_MODULES = `
import json, sys, base64
from typing import Any
import numpy as np
import jax
import jax.tree_util as jtu
import equinox as eqx

class Linear(eqx.Module):
    weight: Any
    act: str = eqx.field(static=True)
    bias: Any

class Scaled(Linear):
    extra: Any
    scale: float = eqx.field(static=True)

class Seq(eqx.Module):
    layers: list
    name: str = eqx.field(static=True)
    meta: dict

CLASSES = {"Linear": Linear, "Scaled": Scaled, "Seq": Seq}

def hook(d):
    if "__module__" in d:
        return CLASSES[d["__module__"]](**d["fields"])
    if "__nd__" in d:
        s = d["__nd__"]
        return np.frombuffer(base64.b64decode(s["b64"]), dtype=np.dtype(s["dtype"])).reshape(s["shape"]).copy()
    return d

def tag(x):
    if eqx.is_array(x):
        return "array:" + str(x.dtype) + str(list(x.shape))
    return x
`;

/** JSON for the oracle: Modules as {__module__, fields}, arrays as base64. */
function encode(t: unknown): unknown {
  if (t instanceof Module) {
    const fields: Record<string, unknown> = {};
    for (const f of Module.fieldsOf(t)) fields[f.name] = encode((t as unknown as Record<string, unknown>)[f.name]);
    return { __module__: t.className, fields };
  }
  if (t instanceof NDArray) return { __nd__: { dtype: t.dtype, shape: t.shape, b64: Buffer.from(t.bytes()).toString("base64") } };
  if (Array.isArray(t)) return t.map(encode);
  if (t !== null && typeof t === "object") {
    return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, encode(v)]));
  }
  return t;
}

function tag(x: unknown): unknown {
  return x instanceof NDArray ? `array:${x.dtype}[${x.shape.join(", ")}]` : x;
}

function models(): { name: string; tree: unknown }[] {
  return [
    { name: "linear", tree: new Linear(array([1, 2], "float32"), "relu", 3) },
    { name: "linear, null bias", tree: new Linear(1, "tanh", null) },
    { name: "scaled (inherited static fields)", tree: new Scaled(1, "relu", [2, 3], { b: 4, a: 5 }, 0.5) },
    {
      name: "seq of layers",
      tree: new Seq([new Linear(array([[1]], "float64"), "relu", 1), new Scaled(2, "gelu", 3, 4, 2)], "mlp", { "😀": 6, "\uff21": 7, lr: 8 }),
    },
    { name: "in a dict and a list", tree: { params: [new Linear(1, "relu", 2), null], opt: new Seq([], "empty", {}) } },
  ];
}

describe("module: against equinox", () => {
  it("flattens in an equivalent eqx.Module's order, with its key paths, static fields left out", async () => {
    const cases = models();
    const code = `${PY_MODULES}
cases = json.load(sys.stdin, object_hook=hook)
out = []
for t in cases:
    lp, td = jtu.tree_flatten_with_path(t)
    out.append({"paths": [jtu.keystr(p) for p, _ in lp], "leaves": [tag(v) for _, v in lp], "n": td.num_leaves})
print(json.dumps(out))
`;
    const py = await runPython<{ paths: string[]; leaves: unknown[]; n: number }[]>(code, cases.map((c) => encode(c.tree)));
    cases.forEach((c, i) => {
      const { leaves, treedef } = flattenWithPath(c.tree);
      assert.deepEqual(leaves.map((l) => keystr(l.path)), py[i]!.paths, c.name);
      assert.deepEqual(leaves.map((l) => tag(l.value)), py[i]!.leaves, c.name);
      assert.equal(treedef.numLeaves, py[i]!.n, c.name);
    });
    assert.deepEqual(py[2]!.paths, [".weight", ".bias[0]", ".bias[1]", ".extra['a']", ".extra['b']"]);
  });

  it("treats structures as equal exactly when jax does (static fields compared by value, classes by identity)", async () => {
    const pairs: [string, unknown, unknown][] = [
      ["same", new Linear(1, "relu", 2), new Linear(5, "relu", 6)],
      ["static differs", new Linear(1, "relu", 2), new Linear(1, "tanh", 2)],
      ["inherited static differs", new Scaled(1, "relu", 2, 3, 0.5), new Scaled(1, "relu", 2, 3, 2)],
      ["subclass", new Linear(1, "relu", 2), new Scaled(1, "relu", 2, 3, 0.5)],
      ["child structure differs", new Linear([1], "relu", 2), new Linear(1, "relu", 2)],
      ["nested static differs", new Seq([new Linear(1, "relu", 2)], "m", {}), new Seq([new Linear(1, "gelu", 2)], "m", {})],
      ["seq name differs", new Seq([], "a", {}), new Seq([], "b", {})],
      ["meta keys differ", new Seq([], "a", { x: 1 }), new Seq([], "a", { y: 1 })],
    ];
    const code = `${PY_MODULES}
pairs = json.load(sys.stdin, object_hook=hook)
print(json.dumps([[jtu.tree_structure(a) == jtu.tree_structure(b), bool(eqx.tree_equal(a, b))] for a, b in pairs]))
`;
    const py = await runPython<[boolean, boolean][]>(code, pairs.map(([, a, b]) => [encode(a), encode(b)]));
    pairs.forEach(([name, a, b], i) => {
      assert.equal(treedefEqual(treeStructure(a), treeStructure(b)), py[i]![0], `${name}: treedefEqual`);
      assert.equal(treeEqual(a, b), py[i]![1], `${name}: treeEqual`);
    });
    assert.deepEqual(
      py.map((r) => r[0]),
      [true, false, false, false, false, false, false, false],
    );
  });

  it("partitions like eqx.partition(module, eqx.is_array)", async () => {
    const m = new Seq([new Linear(array([1, 2], "float32"), "relu", 3), new Linear(array([3], "int32"), "tanh", array([4], "float64"))], "mlp", { lr: 0.1 });
    const code = `${PY_MODULES}
m = json.load(sys.stdin, object_hook=hook)
dyn, st = eqx.partition(m, eqx.is_array)
def describe(t):
    lp, _ = jtu.tree_flatten_with_path(t, is_leaf=lambda x: x is None)
    return [[jtu.keystr(p), tag(x)] for p, x in lp]
print(json.dumps([describe(dyn), describe(st)]))
`;
    const py = await runPython<[string, unknown][][]>(code, encode(m));
    const [dyn, st] = partition(m);
    const describe = (t: unknown): [string, unknown][] =>
      flattenWithPath(t, { isLeaf: (x) => x === null }).leaves.map((l) => [keystr(l.path), tag(l.value)]);
    assert.deepEqual(describe(dyn), py[0]);
    assert.deepEqual(describe(st), py[1]);
    assert.ok(dyn instanceof Seq && st instanceof Seq);
    assert.equal(st.name, "mlp");
    const back = combine(dyn, st);
    assert.ok(back instanceof Seq);
    assert.ok(treeEqual(back, m));
  });
});

describe("module: Module", () => {
  it("lists fields in order with static ones marked, merging staticFields along the class chain", () => {
    const s = new Scaled(1, "relu", 2, 3, 0.5);
    assert.deepEqual(Module.fieldsOf(s), [
      { name: "weight", static: false },
      { name: "act", static: true },
      { name: "bias", static: false },
      { name: "extra", static: false },
      { name: "scale", static: true },
    ]);
    assert.deepEqual([...Module.staticFieldsOf(Scaled)].sort(), ["act", "scale"]);
    assert.equal(s.className, "Scaled");
    assert.equal(String(new Linear(array([1, 2], "float32"), "relu", null)), 'Linear(weight=float32[2], act="relu", bias=null)');
  });

  it("unflatten rebuilds the class without running its constructor", () => {
    const m = new Linear(2, "relu", 3);
    const { leaves, treedef } = flatten(m);
    assert.deepEqual(leaves, [2, 3]);
    assert.equal(treedef.toString(), "TreeDef(Linear(weight=*, act='relu', bias=*))");
    const before = constructed;
    const back = unflatten(treedef, [10, 11]) as Linear;
    assert.equal(constructed, before, "the constructor must not run");
    assert.ok(back instanceof Linear);
    assert.deepEqual(Module.fieldsOf(back), Module.fieldsOf(m));
    assert.equal(back.act, "relu");
    assert.equal(back.bias, 11);
    assert.equal(back.apply(3), 30, "methods work on the rebuilt instance");
    const mapped = treeMap((x: number) => x + 1, m) as Linear;
    assert.ok(mapped instanceof Linear && mapped.weight === 3 && mapped.act === "relu");
  });

  it("replace returns a changed copy, like dataclasses.replace", () => {
    const m = new Linear(1, "relu", 2);
    const before = constructed;
    const r = m.replace({ act: "tanh", weight: 5 });
    assert.equal(constructed, before);
    assert.ok(r instanceof Linear && r !== m);
    assert.deepEqual([r.weight, r.act, r.bias], [5, "tanh", 2]);
    assert.deepEqual([m.weight, m.act, m.bias], [1, "relu", 2]);
    assert.deepEqual(Object.keys(r), ["weight", "act", "bias"]);
    assert.throws(() => m.replace({ nope: 1 } as never), (e: unknown) => e instanceof BridgeInputError && /"nope" is not a field of Linear \(fields: weight, act, bias\)/.test(e.message));
  });

  it("tells apart two classes with the same name", () => {
    const makeClass = () =>
      class Twin extends Module {
        x = 1;
      };
    const A = makeClass();
    const B = makeClass();
    const a = new A();
    const b = new B();
    assert.equal(a.className, b.className);
    assert.equal(treedefEqual(treeStructure(a), treeStructure(b)), false);
    assert.equal(treeEqual(a, b), false);
    assert.deepEqual(firstDifference({ m: a }, { m: b }), {
      path: "['m']",
      keyPath: [{ kind: "key", key: "m" }],
      left: "module Twin",
      right: "module Twin (a different class with the same name)",
    });
    assert.throws(
      () => treeMap(() => 0, { m: a }, { m: b }),
      (e: unknown) =>
        e instanceof TreeStructureError &&
        e.message === "pytree structure error: custom node type mismatch at key path ['m']: the first tree has module Twin, but tree 2 has module Twin (a different class with the same name)",
    );
  });

  it("static field values are compared by value, arrays and plain objects element by element", () => {
    class Cfg extends Module {
      w = 1;
      sizes: unknown;
      static staticFields = ["sizes"];
      constructor(sizes: unknown) {
        super();
        this.sizes = sizes;
      }
    }
    const t = (v: unknown): ReturnType<typeof treeStructure> => treeStructure(new Cfg(v));
    assert.ok(treedefEqual(t([1, 2, { a: "x" }]), t([1, 2, { a: "x" }])));
    assert.ok(!treedefEqual(t([1, 2]), t([1, 3])));
    assert.ok(treedefEqual(t(NaN), t(NaN)), "a structure equals itself, NaN static included");
    const f = (): void => {};
    assert.ok(treedefEqual(t(f), t(f)));
    assert.ok(!treedefEqual(t(f), t(() => {})));
  });

  it("rejects a malformed staticFields", () => {
    class Bad extends Module {
      x = 1;
      static staticFields = "x";
    }
    assert.throws(() => flatten(new Bad()), /Bad\.staticFields must be an array of field names/);
  });

  it("a field set differently (extra field, other order) is a different structure", () => {
    const a = new Linear(1, "relu", 2);
    const b = new Linear(1, "relu", 2);
    (b as unknown as Record<string, unknown>).more = 3;
    assert.equal(treeEqual(a, b), false);
    assert.match(firstDifference(a, b)!.right, /Linear with fields \(weight, act \(static\), bias, more\)/);
    assert.throws(() => treeMap(() => 0, a, b), /different Linear fields at the root/);
  });

  it("modules inside a cycle are reported with the path", () => {
    const s = new Seq([], "loop", {});
    s.layers.push(s);
    assert.throws(() => flatten(s), /cycle: the object at \.layers\[0\] is the same object as its ancestor at the root/);
  });
});
