/**
 * Shardings through a real sidecar with 4 CPU devices
 * (`connect({numCpuDevices: 4})`): where devicePut, jit's out shardings and
 * sharding constraints put arrays (`x.sharding`, `x.addressableShards`)
 * equals what JAX reports in an independent Python process for the same
 * placement, on generated cases; `get` gathers; jit's shardings are
 * jax.jit's (a committed argument placed otherwise is JAX's error).
 */
import assert from "node:assert/strict";
import { NDArray } from "../../src/values/ndarray.js";
import { DeviceArray } from "../../src/values/device-array.js";
import { Mesh, NamedSharding, P, PartitionSpec, SingleDeviceSharding, type Shard } from "../../src/values/sharding.js";
import { SidecarError } from "../../src/values/errors.js";
import { jit } from "../../src/trace/jit.js";
import * as jnp from "../../src/trace/lib/jnp.js";
import * as lax from "../../src/trace/lib/lax.js";
import type { Tracer } from "../../src/trace/tracer.js";
import "../../src/trace/lib/index.js";
import { useSession } from "../support/session.js";
import { runPython } from "../support/python.js";
import { pick, randInt, randomArray, rng } from "../trace/support/oracle.js";

interface Placement {
  mesh: { sizes: number[]; names: string[]; ids: number[] };
  spec: (string[] | null)[];
  shape: number[];
}

const shardsOf = (shards: readonly Shard[]) => shards.map((s) => [s.device, s.index.map(([a, b]) => [a, b]), s.replicaId]);

/** What JAX reports for each placement, computed by plain JAX in its own process (not by the sidecar's code). */
const JAX_PLACEMENTS = `
import json, sys, jax
jax.config.update("jax_num_cpu_devices", 4)
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
by_id = {d.id: d for d in jax.devices()}
out = []
for c in json.load(sys.stdin):
    m = c["mesh"]
    mesh = Mesh(np.array([by_id[i] for i in m["ids"]]).reshape(m["sizes"]), tuple(m["names"]), axis_types=(AxisType.Auto,) * len(m["names"]))
    spec = PartitionSpec(*[None if e is None else tuple(e) for e in c["spec"]])
    x = jax.device_put(np.zeros(c["shape"], np.float32), NamedSharding(mesh, spec))
    s = x.sharding
    out.append({
        "mesh_ids": [d.id for d in s.mesh.devices.flat], "names": list(s.mesh.axis_names),
        "spec": [None if e is None else ([e] if isinstance(e, str) else list(e)) for e in s.spec],
        "shards": [[sh.device.id, [list(sl.indices(n)[:2]) for sl, n in zip(sh.index, x.shape)], sh.replica_id] for sh in x.addressable_shards],
    })
print(json.dumps(out))
`;

function generate(seed: number, n: number): Placement[] {
  const r = rng(seed);
  const meshes = [
    { sizes: [4], names: ["x"] },
    { sizes: [2, 2], names: ["a", "b"] },
    { sizes: [1, 4], names: ["a", "b"] },
    { sizes: [4, 1], names: ["a", "b"] },
    { sizes: [2], names: ["x"] },
  ];
  return Array.from({ length: n }, () => {
    const m = pick(r, meshes);
    const count = m.sizes.reduce((a, b) => a * b, 1);
    const ids = [0, 1, 2, 3].sort(() => r() - 0.5).slice(0, count);
    const rank = randInt(r, 1, 3);
    const spec: (string[] | null)[] = Array.from({ length: randInt(r, 0, rank) }, () => null);
    for (const a of m.names) {
      if (spec.length === 0 || r() < 0.3) continue;
      const k = randInt(r, 0, spec.length - 1);
      spec[k] = [...(spec[k] ?? []), a];
    }
    const shape = Array.from({ length: rank }, (_, i) => {
      const e = spec[i];
      const split = e ? e.reduce((acc, a) => acc * m.sizes[m.names.indexOf(a)]!, 1) : 1;
      return split * randInt(r, 1, 3);
    });
    return { mesh: { ...m, ids }, spec, shape };
  });
}

describe("shardings through a sidecar with 4 CPU devices", function () {
  this.timeout(300_000);
  const session = useSession({ numCpuDevices: 4 });

  it("connect({numCpuDevices}) gives the CPU backend that many devices, with global ids and their process", () => {
    const jb = session();
    assert.deepEqual(jb.info.devices.map((d) => [d.id, d.process_index]), [[0, 0], [1, 0], [2, 0], [3, 0]]);
    assert.deepEqual(jb.makeMesh([2, 2], ["a", "b"]).devices, [[0, 1], [2, 3]]);
    assert.throws(() => jb.makeMesh([8], ["x"]), /need 8 devices, there are 4/);
  });

  it("devicePut places as JAX places: sharding and addressableShards equal what JAX reports (generated placements); get gathers", async () => {
    const jb = session();
    const cases = generate(42, 40);
    const want = await runPython<{ mesh_ids: number[]; names: string[]; spec: (string[] | null)[]; shards: unknown[] }[]>(JAX_PLACEMENTS, cases);
    const r = rng(43);
    for (const [i, c] of cases.entries()) {
      const sharding = new NamedSharding(Mesh.fromIds(c.mesh.ids, c.mesh.sizes, c.mesh.names), new PartitionSpec(...c.spec));
      const host = randomArray(r, pick(r, ["float32", "int32", "bool", "float64"]), c.shape);
      const x = (await jb.devicePut(host, sharding)) as DeviceArray;
      const what = `case ${i}: ${sharding} on [${c.shape.join(", ")}]`;
      const s = x.sharding as NamedSharding;
      assert.ok(s instanceof NamedSharding, what);
      assert.deepEqual([[...s.mesh.deviceIds], [...s.mesh.axisNames], s.spec.toWire()], [want[i]!.mesh_ids, want[i]!.names, want[i]!.spec], what);
      assert.ok(s.equals(sharding), what);
      assert.deepEqual(shardsOf(x.addressableShards), want[i]!.shards, what);
      // The TypeScript rule gives the same shards without asking.
      assert.deepEqual(shardsOf(sharding.shards(c.shape)), want[i]!.shards, what);
      assert.deepEqual(x.addressableShards.map((sh) => sh.shape), x.addressableShards.map(() => sharding.shardShape(c.shape)), what);
      const back = await x.toHost();
      assert.deepEqual(Buffer.from(back.bytes()), Buffer.from(host.bytes()), what);
      x.dispose();
    }
  });

  it("an array on one device reports a SingleDeviceSharding and one whole shard; the older devicePut form still places over the first devices", async () => {
    const jb = session();
    const x = (await jb.put(new NDArray(new Float32Array([1, 2, 3]), [3], "float32"))) as DeviceArray;
    assert.ok(x.sharding instanceof SingleDeviceSharding && x.sharding.device === 0);
    assert.deepEqual(shardsOf(x.addressableShards), [[0, [[0, 3]], 0]]);
    const y = (await jb.devicePut(new NDArray(new Float32Array(8), [4, 2], "float32"), { mesh: { shape: [2], axes: ["x"] }, spec: ["x"] })) as DeviceArray;
    assert.ok(y.sharding.equals(new NamedSharding(Mesh.fromIds([0, 1], [2], ["x"]), P("x"))));
    assert.deepEqual(shardsOf(y.addressableShards), [[0, [[0, 2], [0, 2]], 0], [1, [[2, 4], [0, 2]], 0]]);
  });

  it("jit's inShardings/outShardings and withShardingConstraint place results as jax.jit does in Python", async () => {
    const jb = session();
    const mesh = jb.makeMesh([2, 2], ["a", "b"]);
    const row = new NamedSharding(mesh, P("a"));
    const rep = new NamedSharding(mesh, P());
    const cols = new NamedSharding(mesh, P(null, ["a", "b"]));
    const r = rng(5);
    const x = randomArray(r, "float32", [8, 4]);
    const w = randomArray(r, "float32", [4, 4]);
    const f = jit((a: Tracer, b: Tracer) => {
      const h = lax.withShardingConstraint(jnp.matmul(a, b), new NamedSharding(mesh, P("a", "b")));
      return { y: jnp.tanh(h), s: jnp.sum(h, { axis: 0 }) };
    }, { inShardings: [row, rep], outShardings: { y: cols, s: null } });
    const out = (await f.withOptions({ session: jb })(x as never, w as never)) as { y: DeviceArray; s: DeviceArray };
    const want = await runPython<{ y: unknown; s: unknown; y_spec: unknown; s_spec: unknown; yv: number[]; sv: number[] }>(
      `
import json, sys, jax
jax.config.update("jax_num_cpu_devices", 4)
import numpy as np, jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
d = json.load(sys.stdin)
mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("a", "b"), axis_types=(AxisType.Auto,) * 2)
x = np.array(d["x"], np.float32).reshape(8, 4); w = np.array(d["w"], np.float32).reshape(4, 4)
def f(a, b):
    h = jax.lax.with_sharding_constraint(a @ b, NamedSharding(mesh, P("a", "b")))
    return {"s": jnp.sum(h, axis=0), "y": jnp.tanh(h)}
out = jax.jit(f, in_shardings=(NamedSharding(mesh, P("a")), NamedSharding(mesh, P())), out_shardings={"s": None, "y": NamedSharding(mesh, P(None, ("a", "b")))})(x, w)
shards = lambda v: [[s.device.id, [list(sl.indices(n)[:2]) for sl, n in zip(s.index, v.shape)], s.replica_id] for s in v.addressable_shards]
spec = lambda v: [None if e is None else ([e] if isinstance(e, str) else list(e)) for e in v.sharding.spec]
print(json.dumps({"y": shards(out["y"]), "s": shards(out["s"]), "y_spec": spec(out["y"]), "s_spec": spec(out["s"]),
                  "yv": np.asarray(out["y"]).view(np.uint32).ravel().tolist(), "sv": np.asarray(out["s"]).view(np.uint32).ravel().tolist()}))
`,
      { x: [...(x.data as Float32Array)], w: [...(w.data as Float32Array)] },
    );
    assert.deepEqual((out.y.sharding as NamedSharding).spec.toWire(), want.y_spec);
    assert.deepEqual((out.s.sharding as NamedSharding).spec.toWire(), want.s_spec);
    assert.deepEqual(shardsOf(out.y.addressableShards), want.y);
    assert.deepEqual(shardsOf(out.s.addressableShards), want.s);
    const bits = async (a: DeviceArray) => [...new Uint32Array((await a.toHost()).bytes().buffer.slice(0))];
    assert.deepEqual(await bits(out.y), want.yv);
    assert.deepEqual(await bits(out.s), want.sv);
    const program = f.programs[0]!.program;
    assert.deepEqual(program.in_shardings, [row.toWire(), rep.toWire()]);
    assert.deepEqual(program.out_shardings, [null, cols.toWire()]);
  });

  it("a committed argument placed otherwise is JAX's error; bad shardings fail at trace time naming the argument", async () => {
    const jb = session();
    const mesh = jb.makeMesh([4], ["x"]);
    const placed = (await jb.devicePut(new NDArray(new Float32Array(8), [8], "float32"), new NamedSharding(mesh, P("x")))) as DeviceArray;
    const other = new NamedSharding(jb.makeMesh([2], ["x"]), P("x"));
    const f = jit((a: Tracer) => jnp.add(a, 1), { inShardings: other });
    await assert.rejects(f.withOptions({ session: jb })(placed as never), (e: unknown) => e instanceof SidecarError && /sharding|devices/i.test(e.message));
    const g = jit((a: Tracer) => a, { inShardings: new NamedSharding(mesh, P("x")) });
    await assert.rejects(g.withOptions({ session: jb })(new NDArray(new Float32Array(6), [6], "float32") as never), /inShardings for args\[0\]: .* 6 is not divisible by 4/);
    const h = jit((a: Tracer, b: Tracer) => jnp.add(a, b), { inShardings: [new NamedSharding(mesh, P("x"))] });
    await assert.rejects(h.withOptions({ session: jb })(placed as never, placed as never), /inShardings has no entry for \[1\]/);
    const k = jit((a: Tracer, b: Tracer) => jnp.add(a, b), { inShardings: [new NamedSharding(mesh, P("x")), new NamedSharding(mesh, P())] });
    await assert.rejects(k.withOptions({ session: jb })(placed as never, placed as never), /args\[1\] is the same array as args\[0\], but inShardings gives them/);
  });
});
