/**
 * equinox's filtered transformations against equinox itself: the same
 * module and loss in Python, through eqx.filter_value_and_grad /
 * filter_grad / filter_vmap, give the same values and put None (here null)
 * in the same places. Through pyCall, the gradient of a loss that calls a
 * remote equinox MLP has the remote module's structure, with its arrays
 * on the device, and goes back to Python as that module.
 */
import assert from "node:assert/strict";
import {
  array,
  type DeviceArray,
  filterGrad,
  filterJit,
  filterValueAndGrad,
  filterVmap,
  ifArray,
  isInexactArray,
  jit,
  jnp,
  kw,
  Module,
  type NDArray,
  pyCall,
  PyRef,
  RemoteModule,
  type Tracer,
  treeLeaves,
} from "../../src/index.js";
import { runPython } from "../support/python.js";
import { useSession } from "../support/session.js";

class Layer extends Module {
  w: NDArray | Tracer;
  b: NDArray | Tracer;
  steps: NDArray | Tracer;
  scale: number;
  act: string;
  static staticFields = ["act"];
  constructor(w: NDArray, b: NDArray) {
    super();
    this.w = w;
    this.b = b;
    this.steps = array([3, 4], "int32");
    this.scale = 0.5;
    this.act = "tanh";
  }
}

const PY_LAYER = `
import json, sys, jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, equinox as eqx, numpy as np
class Layer(eqx.Module):
    w: jax.Array
    b: jax.Array
    steps: jax.Array
    scale: float
    act: str = eqx.field(static=True)
d = json.load(sys.stdin)
m = Layer(jnp.asarray(np.array(d["w"], np.float32)), jnp.asarray(np.array(d["b"], np.float32)), jnp.array([3, 4], jnp.int32), 0.5, "tanh")
x = jnp.asarray(np.array(d["x"], np.float32))
def loss(m, x):
    return jnp.sum(jnp.tanh(x @ m.w + m.b) * m.steps.astype(jnp.float32)) * m.scale
(v, aux), g = eqx.filter_jit(eqx.filter_value_and_grad(lambda m, x: (loss(m, x), jnp.sum(m.b)), has_aux=True))(m, x)
g2 = eqx.filter_jit(eqx.filter_grad(loss))(m, x)
ys = eqx.filter_jit(eqx.filter_vmap(lambda m, x: (jnp.tanh(x @ m.w + m.b) * m.steps, m.act), in_axes=(None, 0)))(m, x)
none = lambda t: [f for f in ("w", "b", "steps", "scale") if getattr(t, f) is None]
print(json.dumps({
    "v": float(v), "aux": float(aux), "gw": np.asarray(g.w).tolist(), "gb": np.asarray(g.b).tolist(),
    "none": none(g), "none2": none(g2), "act": g.act, "same": bool(eqx.tree_equal(g, g2)),
    "ys": np.asarray(ys[0]).tolist(), "ys_static": ys[1],
}))
`;

describe("equinox's filters", function () {
  this.timeout(300000);
  const jb = useSession({ allow: ["equinox.nn"] });
  const w = array([[1, -2], [0.5, 0.25], [-1, 1.5]], "float32");
  const b = array([0.1, -0.2], "float32");
  const x = array([[0.5, -1, 2], [1, 1, -0.5]], "float32");
  const loss = (m: Layer, xs: Tracer) => jnp.sum(jnp.tanh(jnp.matmul(xs, m.w as Tracer).add(m.b as Tracer)).mul((m.steps as Tracer).astype("float32"))).mul(m.scale);

  it("filterValueAndGrad / filterGrad / filterVmap on a Module match equinox, None where equinox has None", async () => {
    const want = await runPython<{ v: number; aux: number; gw: number[][]; gb: number[]; none: string[]; none2: string[]; act: string; same: boolean; ys: number[][]; ys_static: string }>(PY_LAYER, {
      w: w.toList(),
      b: b.toList(),
      x: x.toList(),
    });
    const m = new Layer(w, b);
    const [[v, aux], g] = (await filterValueAndGrad((mm: Layer, xs: Tracer) => [loss(mm, xs), jnp.sum(mm.b as Tracer)], { hasAux: true })(m, x)) as unknown as [[DeviceArray, DeviceArray], Layer];
    assert.ok(g instanceof Layer, "the gradient is a Layer, like the model");
    assert.equal(g.act, "tanh", "static fields stay in the structure");
    const nulls = (["w", "b", "steps", "scale"] as const).filter((f) => g[f] === null);
    assert.deepEqual(nulls, want.none, "null exactly where equinox gives None (the int array, the Python float)");
    assert.equal(((await v.toHost()).flatItem(0) as number).toFixed(5), want.v.toFixed(5));
    assert.equal(((await aux.toHost()).flatItem(0) as number).toFixed(5), want.aux.toFixed(5));
    assert.deepEqual((await (g.w as unknown as DeviceArray).toHost()).toList(), want.gw);
    assert.deepEqual((await (g.b as unknown as DeviceArray).toHost()).toList(), want.gb);
    const g2 = (await filterGrad(loss)(m, x)) as unknown as Layer;
    assert.deepEqual((["w", "b", "steps", "scale"] as const).filter((f) => g2[f] === null), want.none2);
    assert.deepEqual((await (g2.w as unknown as DeviceArray).toHost()).toList(), want.gw);
    // filterVmap: every array leaf mapped along 0 (the int array too), static outputs returned as they are.
    const [ys, tag] = (await filterVmap((mm: Layer, xs: Tracer) => [jnp.tanh(jnp.matmul(xs, mm.w as Tracer).add(mm.b as Tracer)).mul(mm.steps as Tracer), mm.act] as const, { inAxes: [null, 0] })(m, x)) as unknown as [DeviceArray, string];
    assert.equal(tag, want.ys_static);
    assert.deepEqual((await ys.toHost()).toList(), want.ys);
  });

  it("filterVmap's default maps every array leaf, ifArray and isInexactArray are equinox's", async () => {
    const stacked = { w: array([[1, 2], [3, 4]], "float32"), n: array([5, 6], "int32"), tag: "keep" };
    const out = (await filterVmap((t: { w: Tracer; n: Tracer; tag: string }) => ({ s: jnp.sum(t.w).mul(t.n.astype("float32")), tag: t.tag }))(stacked)) as unknown as { s: DeviceArray; tag: string };
    assert.deepEqual((await out.s.toHost()).toList(), [15, 42]);
    assert.equal(out.tag, "keep");
    assert.equal(ifArray(1)(stacked.w), 1);
    assert.equal(ifArray(1)("x"), null);
    assert.deepEqual([isInexactArray(stacked.w), isInexactArray(stacked.n), isInexactArray(1.5)], [true, false, false]);
    assert.equal(filterJit, jit);
  });

  it("through pyCall: the gradient of a loss calling a remote MLP is that MLP's structure with DeviceArrays, and goes back to Python", async () => {
    const nn = await jb().import("equinox.nn");
    const key = await jb().call<DeviceArray>("jax.random.PRNGKey", 0);
    const mlp = (await nn.MLP(kw({ in_size: 3, out_size: 2, width_size: 4, depth: 2, key }))) as RemoteModule;
    const xs = array([[0.5, -1, 2], [1, 1, -0.5]], "float32");
    const lossR = (m: RemoteModule, xx: Tracer) => jnp.sum(jnp.square(pyCall<Tracer>(m, xx.get(0)))).add(jnp.sum(pyCall<Tracer>(m, xx.get(1))));
    const [v, g] = (await filterValueAndGrad(lossR)(mlp, xs)) as unknown as [DeviceArray, RemoteModule];
    assert.ok(g instanceof RemoteModule && g.constructor === mlp.constructor, "the remote module's own class (its Python structure)");
    const leaves = treeLeaves(g);
    const refs = treeLeaves(mlp).filter((l) => l instanceof PyRef).length;
    assert.ok(refs > 0);
    assert.equal(leaves.filter((l) => l === null).length, 0, "null leaves are empty subtrees, not leaves");
    assert.equal(treeLeaves(mlp).filter((l) => !(l instanceof PyRef)).length, leaves.length, "an array per array of the model; its PyRefs (activations) became null");
    for (const l of leaves) assert.equal((l as DeviceArray).owner, jb(), "arrays stay on the device");
    // Back to Python: the gradient is an MLP there, and its leaves are equinox's own gradient.
    const pyLeaves = (await jb().call<DeviceArray[]>("jax.tree.leaves", g)) as DeviceArray[];
    const want = await runPython<{ v: number; leaves: number[][] }>(
      `
import json, sys, jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, equinox as eqx, numpy as np
mlp = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(0))
xs = jnp.asarray(np.array([[0.5, -1, 2], [1, 1, -0.5]], np.float32))
loss = lambda m, xx: jnp.sum(jnp.square(m(xx[0]))) + jnp.sum(m(xx[1]))
v, g = eqx.filter_jit(eqx.filter_value_and_grad(loss))(mlp, xs)
print(json.dumps({"v": float(v), "leaves": [np.asarray(l).ravel().tolist() for l in jax.tree.leaves(g)]}))
`,
    );
    assert.equal(pyLeaves.length, want.leaves.length);
    for (const [i, l] of pyLeaves.entries()) {
      const got = Array.from((await l.toHost()).data as Float64Array);
      got.forEach((val, k) => assert.ok(Math.abs(val - want.leaves[i]![k]!) <= 1e-12 * Math.max(1, Math.abs(val)), `leaf ${i}[${k}]: ${val} vs ${want.leaves[i]![k]}`));
    }
    assert.ok(Math.abs(((await v.toHost()).flatItem(0) as number) - want.v) <= 1e-12 * Math.abs(want.v));
  });
});
