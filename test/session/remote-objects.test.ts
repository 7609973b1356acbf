import assert from "node:assert/strict";
import { array, kw, DeviceArray, NDArray, PyRef, RemoteModule, treeEqual, flatten, partition, combine, SidecarError } from "../../src/index.js";
import { treedefEqual } from "../../src/internal.js";
import { runPython } from "../support/python.js";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serializeRemote, deserializeRemote } from "../../src/io/remote-serialize.js";
import { FingerprintMismatchError } from "../../src/io/eqx-file.js";
import { useSession } from "../support/session.js";

const MLP_ORACLE = `
import json, sys, hashlib, io
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, equinox as eqx, numpy as np
d = json.load(sys.stdin)
m = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(d["seed"]))
y = m(jnp.asarray(np.array(d["x"], dtype=np.float32)))
buf = io.BytesIO(); eqx.tree_serialise_leaves(buf, m)
print(json.dumps({"y": np.asarray(y).tolist(), "fp": hashlib.sha256(repr(jax.tree.structure(m)).encode()).hexdigest(), "leaves": buf.getvalue().hex(), "w0": np.asarray(m.layers[0].weight).ravel().tolist()}))
`;

describe("Python objects as TypeScript pytrees (equinox modules, PyRefs)", () => {
  const jb = useSession({ allow: ["equinox.nn"] });

  async function mlp(seed = 0): Promise<RemoteModule> {
    const nn = await jb().import("equinox.nn");
    const key = await jb().call<DeviceArray>("jax.random.PRNGKey", seed);
    const m = (await nn.MLP(kw({ in_size: 3, out_size: 2, width_size: 4, depth: 2, key }))) as RemoteModule;
    key.dispose();
    return m;
  }

  it("builds an equinox MLP through a module proxy and keeps its class, fields and leaves", async () => {
    const m = await mlp();
    assert.ok(m instanceof RemoteModule);
    assert.equal(m.className, "MLP");
    const layers = (m as unknown as { layers: RemoteModule[] }).layers;
    assert.equal(layers.length, 3);
    const w = (layers[0] as unknown as { weight: DeviceArray }).weight;
    assert.ok(w instanceof DeviceArray);
    assert.deepEqual(w.shape, [4, 3]);
    const act = (m as unknown as { activation: PyRef }).activation;
    assert.ok(act instanceof PyRef);
    assert.match(act.repr, /relu/);
    const want = await runPython<{ w0: number[] }>(MLP_ORACLE, { seed: 0, x: [0, 0, 0] });
    assert.deepEqual(Array.from((await w.toHost()).data as Float64Array), want.w0);
  });

  it("calls the module's __call__ in the sidecar and matches equinox", async () => {
    const m = await mlp();
    const x = array([1, -2, 0.5], "float32");
    const y = await jb().callMethod<DeviceArray>(m, "__call__", x);
    const want = await runPython<{ y: number[] }>(MLP_ORACLE, { seed: 0, x: [1, -2, 0.5] });
    assert.deepEqual(Array.from((await y.toHost()).data as Float64Array), want.y);
  });

  it("two modules of one structure share a TypeScript structure; partition keeps PyRefs static", async () => {
    const a = await mlp(0);
    const b = await mlp(1);
    assert.ok(treedefEqual(flatten(a).treedef, flatten(b).treedef));
    assert.equal((a as unknown as { activation: PyRef }).activation, (b as unknown as { activation: PyRef }).activation, "one PyRef per Python object");
    const [arrays, statics] = partition(a);
    assert.ok(treeEqual(combine(arrays, statics), a));
    const host = await jb().get(a);
    assert.ok((host as unknown as { layers: { weight: NDArray }[] }).layers[0]!.weight instanceof NDArray);
  });

  it("a module sent back is rebuilt exactly: lerax's fingerprint and equinox's leaf bytes", async () => {
    const m = await mlp(3);
    const want = await runPython<{ fp: string; leaves: string }>(MLP_ORACLE, { seed: 3, x: [0, 0, 0] });
    const fp = await jb().fingerprint(m);
    assert.equal(Buffer.from(fp).toString("hex"), want.fp);
    const s = await jb().serialiseLeaves(m);
    assert.equal(Buffer.from(s.leaves).toString("hex"), want.leaves);
  });

  it("refuses modules outside the allow-list and private methods, and keeps serving", async () => {
    await assert.rejects(jb().import("os"), (e: unknown) => e instanceof SidecarError && e.remoteType === "NotAllowed");
    const m = await mlp();
    await assert.rejects(jb().callMethod(m, "__reduce__"), (e: unknown) => e instanceof SidecarError && e.remoteType === "NotAllowed");
    await jb().ping();
  });

  it("lists a module's attributes for completion", async () => {
    const nn = await jb().import("equinox.nn");
    const names = await nn.$dir();
    assert.ok(names.includes("MLP") && names.includes("Linear"));
    assert.equal(nn.MLP.$path, "equinox.nn.MLP");
  });

  it("serializes a remote module to fingerprint + equinox leaves that Python loads, and loads a Python-written file back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jb-remote-ser-"));
    const m = await mlp(5);
    const written = await serializeRemote(jb(), m, join(dir, "sub", "policy.pt"));
    assert.equal(written, join(dir, "sub", "policy.eqx"));
    const check = await runPython<{ fp_ok: boolean; equal: boolean }>(
      `import json, sys, hashlib, io
import jax
jax.config.update("jax_enable_x64", True)
import equinox as eqx
d = json.load(sys.stdin)
data = open(d["path"], "rb").read()
like = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(0))
ref = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(5))
fp_ok = data[:32] == hashlib.sha256(repr(jax.tree.structure(like)).encode()).digest()
got = eqx.tree_deserialise_leaves(io.BytesIO(data[32:]), like)
out = io.BytesIO(); eqx.tree_serialise_leaves(out, ref)
# and a file written the same way by Python, for the TypeScript side to load
open(d["py_path"], "wb").write(hashlib.sha256(repr(jax.tree.structure(ref)).encode()).digest() + out.getvalue())
print(json.dumps({"fp_ok": fp_ok, "equal": bool(eqx.tree_equal(got, ref))}))`,
      { path: written, py_path: join(dir, "from-python.eqx") },
    );
    assert.deepEqual(check, { fp_ok: true, equal: true });
    const skeleton = await mlp(11);
    const loaded = await deserializeRemote(jb(), join(dir, "from-python.eqx"), skeleton);
    const a = await jb().callMethod<DeviceArray>(loaded, "__call__", array([0.5, 0.25, -1], "float32"));
    const b = await jb().callMethod<DeviceArray>(m, "__call__", array([0.5, 0.25, -1], "float32"));
    assert.deepEqual(Array.from((await a.toHost()).data as Float64Array), Array.from((await b.toHost()).data as Float64Array));
    const bytes = readFileSync(written);
    writeFileSync(join(dir, "short.eqx"), bytes.subarray(0, 20));
    await assert.rejects(deserializeRemote(jb(), join(dir, "short.eqx"), skeleton), /truncated/);
    const nn = await jb().import("equinox.nn");
    const key = await jb().call<DeviceArray>("jax.random.PRNGKey", 0);
    const other = await nn.MLP(kw({ in_size: 3, out_size: 2, width_size: 8, depth: 2, key }));
    await assert.rejects(deserializeRemote(jb(), written, other), (e: unknown) => e instanceof FingerprintMismatchError && /different structure/.test((e as Error).message));
  });
});
