/**
 * jit and the program runner against a real embedded sidecar: trace once
 * per signature, send the body once, run by hash afterwards without
 * relowering or retracing in the sidecar; static outputs stay here; a
 * refused program leaves the sidecar serving.
 */
import assert from "node:assert/strict";
import { DeviceArray } from "../../src/values/device-array.js";
import { SidecarError } from "../../src/values/errors.js";
import { NDArray, array } from "../../src/values/ndarray.js";
import { filterCond, filterScan } from "../../src/lerax/filter.js";
import { jnp } from "../../src/trace/lib/index.js";
import { sha256Hex } from "../../src/trace/ir.js";
import { jit, runProgram } from "../../src/trace/jit.js";
import { traceFlat } from "../../src/trace/trace.js";
import type { Tracer } from "../../src/trace/tracer.js";
import { useSession } from "../support/session.js";
import { runPython } from "../support/python.js";

describe("jit on a sidecar", function () {
  this.timeout(120000);
  // Inside the describe, so the session lives only as long as these tests
  // (a root-level one would become every other file's default session).
  const session = useSession();

  async function programStats(): Promise<{ programs: number; hits: number; lowered: number; traces: number }> {
    return session().request("program_stats", {});
  }

  it("traces once, sends the program once, then runs by hash with no relowering or retracing", async () => {
    const jb = session();
    let calls = 0;
    const f = jit((p: { w: NDArray; act: string }, x: NDArray) => {
      calls++;
      const h = jnp.matmul(x, p.w);
      return { y: p.act === "tanh" ? jnp.tanh(h) : jnp.maximum(h, 0), act: p.act, n: 3 };
    });
    const w = array([[1, -2], [0.5, 1], [2, 0]], "float32");
    const x = array([[1, 2, 3]], "float32");
    const before = await programStats();
    const r1 = (await f({ w, act: "tanh" }, x)) as { y: DeviceArray; act: string; n: number };
    assert.ok(r1.y instanceof DeviceArray);
    assert.equal(r1.act, "tanh");
    assert.equal(r1.n, 3);
    for (let i = 0; i < 3; i++) await f({ w, act: "tanh" }, x);
    assert.equal(calls, 1, "fn was traced once");
    assert.deepEqual(f.stats, { traces: 1, hits: 3, calls: 4, programsSent: 1 });
    const after = await programStats();
    assert.equal(after.lowered - before.lowered, 1);
    assert.equal(after.traces - before.traces, 1, "JAX compiled once");
    assert.equal(after.hits - before.hits, 3);
    const host = await r1.y.toHost();
    const want = await runPython<number[]>("import json,sys,numpy as np; import jax.numpy as jnp; print(json.dumps(jnp.tanh(jnp.array([[1,2,3]],jnp.float32) @ jnp.array([[1,-2],[0.5,1],[2,0]],jnp.float32)).ravel().tolist()))");
    assert.deepEqual(Array.from(host.data as Float32Array), want.map((v) => Math.fround(v)));
    assert.equal(jb.closed, false);
  });

  it("a new signature (static value, shape or dtype) traces again", async () => {
    let calls = 0;
    const f = jit((x: NDArray, k: number) => {
      calls++;
      return x.shape.length === 1 ? jnp.multiply(x as unknown as Tracer, k) : x;
    });
    await f(array([1, 2], "float32"), 2);
    await f(array([3, 4], "float32"), 2);
    await f(array([3, 4], "float32"), 5);
    await f(array([3, 4, 5], "float32"), 5);
    await f(array([3, 4], "int32"), 5);
    assert.equal(calls, 4);
    assert.equal(f.signatures, 4);
  });

  it("DeviceArray arguments and captures travel as handles; captured NDArrays are placed once", async () => {
    const jb = session();
    const c = array([10, 20], "float32");
    const f = jit((x: DeviceArray) => jnp.add(x as unknown as Tracer, c));
    const x = (await jb.put(array([1, 2], "float32"))) as DeviceArray;
    const r1 = (await f(x)) as DeviceArray;
    const r2 = (await f(r1)) as DeviceArray;
    assert.deepEqual(Array.from((await r2.toHost()).data as Float32Array), [21, 42]);
    // A captured DeviceArray is an input passed by handle: its data never goes through TypeScript.
    const g = jit((y: NDArray) => jnp.multiply(y as unknown as Tracer, r2));
    const before = await jb.stats();
    const r3 = (await g(array([1, 0.5], "float32"))) as DeviceArray;
    assert.deepEqual(Array.from((await r3.toHost()).data as Float32Array), [21, 21]);
    assert.ok((await jb.stats()).handles >= before.handles);
  });

  it("filterCond and filterScan run inside jit, nested", async () => {
    const f = jit((xs: NDArray, h0: NDArray) => {
      const [carry, ys] = filterScan(
        (c: { h: Tracer; mode: string }, x: Tracer) => {
          const h = filterCond(jnp.sum(c.h).gt(0), (v: Tracer) => v.mul(0.5).add(x), (v: Tracer) => v.sub(x), c.h);
          return [{ h, mode: c.mode }, jnp.sum(h)] as const;
        },
        { h: h0 as unknown as Tracer, mode: "m" },
        xs as unknown as Tracer,
      );
      return { carry, ys };
    });
    const out = (await f(array([[1, 2], [-3, 1], [0.5, 0.5]], "float64"), array([0.1, -0.3], "float64"))) as { carry: { h: DeviceArray; mode: string }; ys: DeviceArray };
    assert.equal(out.carry.mode, "m");
    const want = await runPython<number[]>(`
import json, jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from jax import lax
def body(h, x):
    h = lax.cond(jnp.sum(h) > 0, lambda v: v * 0.5 + x, lambda v: v - x, h)
    return h, jnp.sum(h)
h, ys = lax.scan(body, jnp.array([0.1, -0.3]), jnp.array([[1, 2], [-3, 1], [0.5, 0.5]], jnp.float64))
print(json.dumps(list(map(float, h)) + list(map(float, ys))))`);
    const got = [...((await out.carry.h.toHost()).data as Float64Array), ...((await out.ys.toHost()).data as Float64Array)];
    assert.deepEqual(got, want);
  });

  it("a sidecar that does not hold the program answers UnknownProgram and the runner resends it", async () => {
    const jb = session();
    const t = traceFlat((a) => a!.mul(3), [{ dtype: "float32", shape: [2] }], { x64: jb.info.x64 });
    await assert.rejects(jb.request("run", { hash: t.hash, args: [array([1, 2], "float32")] }), (e: unknown) => e instanceof SidecarError && e.remoteType === "UnknownProgram");
    const r = await runProgram(jb, t, [array([1, 2], "float32")], { assumeHeld: true, fetch: true });
    assert.equal(r.sentProgram, true);
    assert.deepEqual(Array.from((r.outputs[0] as NDArray).data as Float32Array), [3, 6]);
    const again = await runProgram(jb, t, [array([1, 2], "float32")], { fetch: true });
    assert.equal(again.sentProgram, false);
    assert.equal(again.lowered, false);
    assert.equal(again.traced, false);
  });

  it("a program naming a primitive outside the table is refused and the sidecar keeps serving", async () => {
    const jb = session();
    const t = traceFlat((a) => a!.mul(3), [{ dtype: "float32", shape: [2] }], { x64: jb.info.x64 });
    const text = new TextDecoder().decode(t.bytes).replace('"prim":"mul"', '"prim":"os.system"');
    const bytes = new TextEncoder().encode(text);
    await assert.rejects(runProgram(jb, { hash: sha256Hex(bytes), bytes, captures: [] }, [array([1, 2], "float32")]), (e: unknown) => e instanceof SidecarError && e.remoteType === "NotAllowed" && /'os\.system'/.test(e.message));
    await jb.ping();
  });
});
