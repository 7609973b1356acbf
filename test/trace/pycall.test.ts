/**
 * pyCall: a traced TypeScript function calls a remote equinox module (or
 * PyRef) in the sidecar. Every number is compared with equinox called
 * directly in Python from the same keys.
 */
import assert from "node:assert/strict";
import { array, connect, filterCond, filterScan, jit, jnp, kw, Module, polyakAverage, programStats, pyCall, pyMethod, SidecarError, TraceError, Tracer, treeMap, unstackPytree, type DeviceArray, type NDArray, type PyRef, type RemoteModule } from "../../src/index.js";
import { traceFlat, PyShapesNeeded, resolvePyShapes, runProgram } from "../../src/internal.js";
import { runPython } from "../support/python.js";
import { useSession } from "../support/session.js";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// A user's own package the test sidecar allow-lists (PYTHONPATH and --allow, as a user would).
const USER_PKG = join(dirname(fileURLToPath(import.meta.url)), "..", "support", "pyuser");

const ORACLE = `
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, equinox as eqx, numpy as np
d = json.load(sys.stdin)
x = jnp.asarray(np.array(d["x"], dtype=np.float32))
mlp = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(0))
cell = eqx.nn.LSTMCell(3, 2, key=jax.random.PRNGKey(1))
def step(hc, xi):
    h, c = cell(xi, hc)
    return (h, c), h
(h, c), hs = jax.jit(lambda xs: jax.lax.scan(step, (jnp.zeros(2), jnp.zeros(2)), xs))(x)
other = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(1))
o, static = eqx.partition(mlp, eqx.is_inexact_array)
t, _ = eqx.partition(other, eqx.is_inexact_array)
averaged = eqx.combine(jax.tree.map(lambda a, b: 0.25 * a + (1 - 0.25) * b, o, t), static)
print(json.dumps({
    "mlp2": np.asarray(jax.jit(lambda v: 2 * mlp(v))(x[0])).tolist(),
    "other": np.asarray(other(x[0])).tolist(),
    "averaged": np.asarray(averaged(x[0])).tolist(),
    "averaged_w0": np.asarray(averaged.layers[0].weight).tolist(),
    "mlp": np.asarray(mlp(x[0])).tolist(),
    "relu": np.asarray(jax.nn.relu(x[0])).tolist(),
    "lstm": {"h": np.asarray(h).tolist(), "c": np.asarray(c).tolist(), "hs": np.asarray(hs).tolist()},
}))
`;

interface Oracle {
  mlp2: number[];
  other: number[];
  averaged: number[];
  averaged_w0: number[][];
  mlp: number[];
  relu: number[];
  lstm: { h: number[]; c: number[]; hs: number[][] };
}

describe("pyCall: remote equinox modules inside traced TypeScript functions", () => {
  const jb = useSession({ allow: ["equinox.nn", "jb_userpkg"], env: { PYTHONPATH: USER_PKG } });
  const xs = array(
    [
      [1, -2, 0.5],
      [0.25, 0, -1],
      [3, 1, -0.5],
      [-1, -1, 2],
    ],
    "float32",
  );
  let want: Oracle;

  async function build(cls: "MLP" | "LSTMCell", seed: number, args: Record<string, unknown>): Promise<RemoteModule> {
    const nn = await jb().import("equinox.nn");
    const key = await jb().call<DeviceArray>("jax.random.PRNGKey", seed);
    try {
      return (await nn[cls](kw({ ...args, key }))) as RemoteModule;
    } finally {
      key.dispose();
    }
  }
  const mlp = () => build("MLP", 0, { in_size: 3, out_size: 2, width_size: 4, depth: 2 });
  const rows = (a: NDArray) => a.toList() as number[][];

  before(async function () {
    this.timeout(120_000);
    want = await runPython<Oracle>(ORACLE, { x: rows(xs) });
  });

  it("records one pycall equation in jit, asks for its types once, and matches equinox", async () => {
    const m = await mlp();
    const x0 = array(rows(xs)[0]!, "float32");
    const f = jit((model: RemoteModule, x: NDArray) => pyCall<Tracer>(model, x).mul(2));
    const before = await programStats(jb());
    const y = (await f(m, x0)) as DeviceArray;
    assert.equal(y.dtype, "float64", "float32 input, float64 weights (x64): JAX's promotion");
    assert.deepEqual(Array.from((await y.toHost()).data as Float64Array), want.mlp2);
    const prims = f.programs[0]!.program.eqns.map((e) => e.prim);
    assert.deepEqual(prims, ["pycall", "mul"]);
    // The model's six arrays are program inputs, not constants baked into the program.
    assert.equal(f.programs[0]!.program.inputs.length, 7);
    const y2 = (await f(m, x0)) as DeviceArray;
    assert.deepEqual(Array.from((await y2.toHost()).data as Float64Array), want.mlp2);
    assert.deepEqual(f.stats, { traces: 1, hits: 1, calls: 2, programsSent: 1 });
    const after = await programStats(jb());
    assert.equal(after.lowered - before.lowered, 1);
  });

  it("traceFlat stops at an untyped call with PyShapesNeeded; resolvePyShapes types it for the next trace", async () => {
    // A signature no other test typed (the cache is per sidecar, and PyRefs like relu are shared).
    const m = await build("MLP", 0, { in_size: 3, out_size: 2, width_size: 5, depth: 1 });
    const fn = (x: Tracer) => pyCall<Tracer>(m, x);
    const spec = [{ dtype: "float32" as const, shape: [3] }];
    const x64 = jb().info.x64;
    let need: unknown;
    try {
      traceFlat(fn, spec, { x64 });
    } catch (e) {
      need = e;
    }
    assert.ok(need instanceof PyShapesNeeded && need.request.method === "__call__" && need.instance === jb().instance);
    await resolvePyShapes(jb(), need);
    const traced = traceFlat(fn, spec, { x64 });
    assert.deepEqual(traced.outputs, [{ dtype: "float64", shape: [2] }]);
    const x0 = array(rows(xs)[0]!, "float32");
    const r = await runProgram(jb(), traced, [x0], { fetch: true });
    const eager = await (await jb().callMethod<DeviceArray>(m, "__call__", x0)).toHost();
    assert.deepEqual(Array.from((r.outputs[0] as NDArray).data as Float64Array), Array.from(eager.data as Float64Array));
  });

  it("runs at top level as its own program and agrees with the eager callMethod", async () => {
    const m = await mlp();
    const x0 = array(rows(xs)[0]!, "float32");
    const y = await pyCall<Promise<DeviceArray>>(m, x0);
    const eager = await jb().callMethod<DeviceArray>(m, "__call__", x0);
    assert.deepEqual(Array.from((await y.toHost()).data as Float64Array), want.mlp);
    assert.deepEqual(Array.from((await eager.toHost()).data as Float64Array), want.mlp);
  });

  it("carries a module through filterScan: list arguments and tuple results keep their structure (LSTMCell)", async () => {
    const cell = await build("LSTMCell", 1, { input_size: 3, hidden_size: 2 });
    const init = { cell, h: array([0, 0], "float64"), c: array([0, 0], "float64") };
    const [out, hs] = await filterScan(
      (s: { cell: RemoteModule; h: Tracer; c: Tracer }, x: Tracer) => {
        const r = pyCall<[Tracer, Tracer]>(s.cell, x, [s.h, s.c]);
        assert.ok(Array.isArray(r) && r.length === 2, "a Python tuple arrives as an array");
        return [{ cell: s.cell, h: r[0], c: r[1] }, r[0]] as const;
      },
      init,
      xs,
    );
    const o = out as unknown as { cell: RemoteModule; h: DeviceArray; c: DeviceArray };
    assert.equal(o.cell.className, "LSTMCell", "the module comes back out of the scan as a remote module");
    assert.deepEqual(Array.from((await o.h.toHost()).data as Float64Array), want.lstm.h);
    assert.deepEqual(Array.from((await o.c.toHost()).data as Float64Array), want.lstm.c);
    assert.deepEqual(rows(await (hs as DeviceArray).toHost()), want.lstm.hs);
  });

  it("calls a PyRef of the user's own allow-listed package: __call__ and a method returning a dict and a tuple", async () => {
    const user = await jb().import("jb_userpkg");
    const scaler = (await user.make_scaler(2.5)) as PyRef;
    const x = array([1.5, -2, 0.25], "float32");
    const f = jit((s: PyRef, v: NDArray) => ({ scaled: pyCall<Tracer>(s, v), parts: pyMethod<{ pos: Tracer; neg: [Tracer, null] }>(s, "split", v) }));
    const r = (await f(scaler, x)) as { scaled: DeviceArray; parts: { pos: DeviceArray; neg: [DeviceArray, null] } };
    const got = await runPython<{ scaled: number[]; pos: number[]; neg: number[] }>(
      `import json, sys, numpy as np, jax.numpy as jnp
sys.path.insert(0, ${JSON.stringify(USER_PKG)})
import jb_userpkg
s = jb_userpkg.make_scaler(2.5); x = jnp.asarray(np.array(json.load(sys.stdin), np.float32)); p = s.split(x)
print(json.dumps({"scaled": np.asarray(s(x)).tolist(), "pos": np.asarray(p["pos"]).tolist(), "neg": np.asarray(p["neg"][0]).tolist()}))`,
      Array.from(x.data as Float32Array),
    );
    assert.equal(r.scaled.dtype, "float32", "a Python float times a float32 array stays float32 (weak typing, in JAX)");
    assert.deepEqual(Array.from((await r.scaled.toHost()).data as Float32Array), got.scaled);
    assert.deepEqual(Array.from((await r.parts.pos.toHost()).data as Float32Array), got.pos);
    assert.deepEqual(Array.from((await r.parts.neg[0].toHost()).data as Float32Array), got.neg);
    assert.equal(r.parts.neg[1], null);
    await assert.rejects(
      jit((v: NDArray) => pyMethod(scaler, "module", v))(x),
      (e: unknown) => e instanceof SidecarError && e.remoteType === "ProgramError" && /Scaler\.module\(\.\.\.\) is an instance of equinox\.nn\.\S+Identity/.test(e.message),
    );
  });

  it("refuses a PyRef whose class lives outside the allow-list (the MLP's activation, jax.nn.relu)", async () => {
    const m = await mlp();
    const relu = (m as unknown as { activation: PyRef }).activation;
    await assert.rejects(
      jit((x: NDArray) => pyCall<Tracer>(relu, x))(array([1], "float32")),
      (e: unknown) => e instanceof SidecarError && e.remoteType === "NotAllowed" && /custom_jvp .* outside the allow-list/.test(e.message),
    );
  });

  it("lerax's utilities take remote modules: polyakAverage, filterCond, unstackPytree and jit", async () => {
    const online = await mlp();
    const target = await build("MLP", 1, { in_size: 3, out_size: 2, width_size: 4, depth: 2 });
    const x0 = array(rows(xs)[0]!, "float32");
    const host = async (a: unknown) => Array.from((await (a as DeviceArray).toHost()).data as Float64Array);

    const averaged = (await polyakAverage(online, target, 0.25)) as unknown as RemoteModule;
    assert.equal(averaged.className, "MLP");
    const w0 = (averaged as unknown as { layers: { weight: DeviceArray }[] }).layers[0]!.weight;
    assert.deepEqual(rows(await w0.toHost()), want.averaged_w0);
    assert.deepEqual(await host(await jb().callMethod(averaged, "__call__", x0)), want.averaged, "sent back, it is the equinox module lerax's formula gives");

    const pick = (p: boolean) => filterCond(array(p), (a: RemoteModule, b: RemoteModule, x: Tracer) => pyCall<Tracer>(a, x), (a: RemoteModule, b: RemoteModule, x: Tracer) => pyCall<Tracer>(b, x), online, target, x0);
    assert.deepEqual(await host(await pick(true)), want.mlp);
    assert.deepEqual(await host(await pick(false)), want.other);

    // Stack two modules leaf by leaf in a jitted function, then unstack them: each is its original again.
    const stack = jit((a: RemoteModule, b: RemoteModule) => treeMap((u: unknown, v: unknown) => (u instanceof Tracer ? jnp.stack([u, v as Tracer]) : u), a, b));
    const stacked = (await stack(online, target)) as RemoteModule;
    const [first, second] = (await unstackPytree(stacked)) as unknown as RemoteModule[];
    assert.equal(first!.className, "MLP");
    assert.deepEqual(await host(await pyCall(first!, x0)), want.mlp);
    assert.deepEqual(await host(await pyCall(second!, x0)), want.other);
  });

  it("refuses bad targets and methods with errors that say what was wrong, and the sidecar keeps serving", async () => {
    const m = await mlp();
    const x0 = array(rows(xs)[0]!, "float32");
    class Local extends Module {
      w = array([1], "float32");
    }
    await assert.rejects(
      jit((x: NDArray) => pyCall(new Local() as unknown as RemoteModule, x))(x0),
      (e: unknown) => e instanceof TraceError && /TypeScript Local/.test(e.message),
    );
    await assert.rejects(
      jit((x: NDArray) => pyMethod(m, "_private", x))(x0),
      (e: unknown) => e instanceof TraceError && /only public methods and __call__/.test(e.message),
    );
    await assert.rejects(
      jit((x: NDArray) => pyMethod(m, "save", x))(x0),
      (e: unknown) => e instanceof SidecarError && e.remoteType === "NotAllowed" && /save/.test(e.message),
    );
    // A wrong input size is JAX's to refuse, inside equinox's __call__, with its own message.
    await assert.rejects(
      jit((x: NDArray) => pyCall(m, x))(array([1, 2, 3, 4, 5], "float32")),
      (e: unknown) => e instanceof SidecarError && /dot_general|shape|size/i.test(e.message),
    );
    // A field of the target that TypeScript changed to something the sidecar never sent.
    const broken = m.replace({ activation: 3 } as never);
    await assert.rejects(
      jit((x: NDArray) => pyCall(broken, x))(x0),
      (e: unknown) => e instanceof TraceError && /target\.activation is a JS number/.test(e.message),
    );
    const y = (await jit((x: NDArray) => pyCall<Tracer>(m, x))(x0)) as DeviceArray;
    assert.deepEqual(Array.from((await y.toHost()).data as Float64Array), want.mlp);
  });

  it("refuses an object of another sidecar, naming both", async () => {
    const user = await jb().import("jb_userpkg");
    const scaler = (await user.make_scaler(2)) as PyRef;
    const other = await connect({ allow: ["equinox.nn", "jb_userpkg"], env: { PYTHONPATH: USER_PKG } });
    try {
      await assert.rejects(
        jit((x: NDArray) => pyCall(scaler, x), { session: other })(array([1], "float32")),
        (e: unknown) => e instanceof TraceError && e.message.includes(jb().instance) && e.message.includes(other.instance),
      );
    } finally {
      await other.close();
    }
  });
});
