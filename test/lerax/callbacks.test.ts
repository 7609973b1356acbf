/**
 * Callbacks from compiled code into TypeScript against a real sidecar:
 * the argument sequence equals lerax's (callback_wrapper / numpy / list
 * wrappers in Python), ordered delivery from scans and conds, completion and
 * throw semantics, batching, and the faults (unknown callback id, unknown
 * call, a callback that never returns, a session closed mid-call).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { NDArray, array } from "../../src/values/ndarray.js";
import { callbackWithListWrapper, callbackWithNumpyWrapper, callbackWrapper } from "../../src/lerax/callbacks.js";
import { filterCond, filterScan } from "../../src/lerax/utils.js";
import "../../src/trace/lib/index.js"; // installs the array methods (x.add) on Tracer: a named import used only in types is elided
import { jit, runProgram } from "../../src/trace/jit.js";
import type { Tracer } from "../../src/trace/tracer.js";
import { connect } from "../../src/session/session.js";
import { encode } from "../../src/wire/protocol.js";
import { DeadlineError } from "../../src/values/errors.js";
import { useSession } from "../support/session.js";
import { runPython } from "../support/python.js";

process.env.JAXBRIDGE_QUIET = "1";

const LERAX_PROGRAM = `
import json, sys, jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
import lerax.utils as lu
seen = []
def rec(tag):
    return lambda *a: seen.append([tag, *jax.tree.map(lambda x: np.asarray(x).tolist() if hasattr(x, "shape") else x, list(a))])
cb = lu.callback_wrapper(rec("w"), ordered=True)
cbl = lu.callback_with_list_wrapper(rec("l"), ordered=True)
cbn = lu.callback_with_numpy_wrapper(rec("n"), ordered=True)
def step(c, x):
    cb({"c": c, "x": x}, "tag")
    def t(c): cbl(c * 2); return c + x
    def f(c): cbn(c - 1); return c - x
    # lax.cond, which filterCond lowers to: lerax's filter_cond calls both branches eagerly,
    # so the untaken branch's callbacks would fire there (a documented difference).
    c = jax.lax.cond(x > 1.5, t, f, c)
    return c, c.sum()
c, ys = jax.jit(lambda c, xs: lu.filter_scan(step, c, xs))(jnp.array([1.0, 2.0], jnp.float32), jnp.array([1.0, 2.0, 3.0, 0.5], jnp.float32))
jax.effects_barrier()
print(json.dumps(seen))
`;

describe("callbacks from compiled code", function () {
  // Inside the describe: a root-level session would outlive this file and
  // become every later file's default session.
  const session = useSession();
  this.timeout(120000);

  it("delivers the same ordered sequence of arguments as lerax, from a scan with a cond inside", async () => {
    const seen: unknown[] = [];
    const cb = callbackWrapper((tree: { c: NDArray; x: NDArray }, tag: string) => seen.push(["w", { c: tree.c.toList(), x: tree.x.toList() }, tag]), { ordered: true });
    const cbl = callbackWithListWrapper((v: unknown) => seen.push(["l", v]), { ordered: true });
    const cbn = callbackWithNumpyWrapper((v: { data: ArrayLike<number>; shape: number[] }) => seen.push(["n", Array.from(v.data as Float32Array)]), { ordered: true });
    const step = (c: Tracer, x: Tracer) => {
      cb({ c, x }, "tag");
      const next = filterCond(
        x.gt(1.5),
        (c: Tracer) => (cbl(c.mul(2)), c.add(x)),
        (c: Tracer) => (cbn(c.sub(1)), c.sub(x)),
        c,
      ) as Tracer;
      return [next, next.sum()] as const;
    };
    const [c] = (await filterScan(step as never, array([1, 2], "float32"), array([1, 2, 3, 0.5], "float32"), { fetch: true })) as unknown as [NDArray, NDArray];
    // x = 1 (else: c - 1), 2 (then: c + 2), 3 (then: c + 3), 0.5 (else: c - 0.5)
    assert.deepEqual(c.toList(), [4.5, 5.5]);
    const want = await runPython<unknown[]>(LERAX_PROGRAM);
    assert.deepEqual(seen, want);
    assert.equal(seen.length, 8);
  });

  it("resolves only after an async callback finished, and rejects with the callback's error while the session stays healthy", async () => {
    const log: number[] = [];
    const slow = callbackWrapper(async (x: NDArray) => {
      await new Promise((r) => setTimeout(r, 5));
      log.push(x.item() as number);
    }, { ordered: true });
    const f = jit((x: NDArray) => {
      const [c] = filterScan((c: Tracer) => (slow(c), [c.add(1), null] as const), x as never, null, { length: 20 }) as unknown as [Tracer];
      return c;
    });
    const out = (await f.withOptions({ fetch: true })(array(0, "int32"))) as NDArray;
    assert.equal(out.item(), 20);
    assert.deepEqual(log, Array.from({ length: 20 }, (_, i) => i), "in order, all done before the call resolved");

    const boom = callbackWrapper((x: NDArray) => {
      if ((x.item() as number) === 3) throw new Error("boom at 3");
    });
    const g = jit((x: NDArray) => (filterScan((c: Tracer) => (boom(c), [c.add(1), null] as const), x as never, null, { length: 10 }) as unknown as [Tracer])[0]);
    await assert.rejects(g(array(0, "int32")), /boom at 3/);
    const ok = (await g.withOptions({ fetch: true })(array(100, "int32"))) as NDArray;
    assert.equal(ok.item(), 110);
  });

  it("unordered callbacks lose nothing (same multiset)", async () => {
    const seen: number[] = [];
    const cb = callbackWrapper((x: NDArray) => void seen.push(x.item() as number));
    const f = jit((x: NDArray) => (filterScan((c: Tracer) => (cb(c), [c.add(1), null] as const), x as never, null, { length: 500 }) as unknown as [Tracer])[0]);
    await f(array(0, "int32"));
    assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: 500 }, (_, i) => i));
  });

  it("batches events: a 1e5-step scan with a per-step callback sends far fewer messages than steps", async () => {
    const jb = session();
    let n = 0;
    const cb = callbackWrapper(() => void n++, { ordered: true });
    const f = jit((x: NDArray) => (filterScan((c: Tracer) => (cb(c), [c.add(1), null] as const), x as never, null, { length: 100_000 }) as unknown as [Tracer])[0]);
    const before = { ...jb.callbackStats };
    await f(array(0, "int32"));
    const batches = jb.callbackStats.batches - before.batches;
    assert.equal(n, 100_000);
    assert.equal(jb.callbackStats.events - before.events, 100_000);
    assert.ok(batches < 100_000 / 20, `${batches} batches`);
  });

  it("an unknown callback id and an event for an unknown call are logged once and dropped", async () => {
    const jb = session();
    let n = 0;
    const cb = callbackWrapper(() => void n++, { ordered: true });
    const f = jit((x: Tracer) => (cb(x), x.add(1)));
    await f(array(1, "int32") as never);
    assert.equal(n, 1);
    const traced = f.programs[0]!;
    const dropped = jb.callbackStats.dropped;
    // The same program run with an empty callback table on the client side: its event names id 0.
    const r = await runProgram(jb, { ...traced, callbacks: [{ ordered: true, deliver: () => assert.fail("not this one") }, ...[]].slice(1) }, [array(2, "int32")], { fetch: true });
    assert.equal(r.outputs.length, 1);
    // An empty table sends no callbacks at all: use a table whose length is wrong instead.
    const wrong = { ...traced, callbacks: [] as never[] };
    await runProgram(jb, wrong, [array(2, "int32")], { fetch: true });
    // A fabricated event for a call nobody waits for.
    (jb as unknown as { onEvent(f: Buffer[]): void }).onEvent(encode({ event: "callbacks", call: 999999, batch: 0, events: [[0, [array(1, "float32")]]] }));
    (jb as unknown as { onEvent(f: Buffer[]): void }).onEvent(encode({ event: "callbacks", call: 999999, batch: 1, events: [[0, []]] }));
    assert.ok(jb.callbackStats.dropped >= dropped + 2);
    assert.equal(jb.eventWarnings.filter((w) => w.includes("999999")).length, 1, "logged once");
    await jb.ping();
  });

  it("a callback that never returns: the deadline rejects the call and later calls work", async () => {
    const jb = session();
    const hang = callbackWrapper(() => new Promise(() => {}), { ordered: true });
    const f = jit((x: NDArray) => (filterScan((c: Tracer) => (hang(c), [c.add(1), null] as const), x as never, null, { length: 5000 }) as unknown as [Tracer])[0]);
    await assert.rejects(f.withOptions({ timeoutMs: 1500 })(array(0, "int32")), DeadlineError);
    const g = jit((x: Tracer) => x.mul(3));
    const out = (await g.withOptions({ fetch: true, timeoutMs: 20000 })(array(5, "int32") as never)) as NDArray;
    assert.equal(out.item(), 15);
    await jb.ping();
  });

  it("examples/progress.ts trains with a scan and drives a progress bar from its callbacks", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "examples/progress.ts", "1500"], { encoding: "utf8", timeout: 110000, env: { ...process.env, JAXBRIDGE_QUIET: "1" } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /1500\/1500 steps/);
    const m = /done: 1500 steps reported, w=([-\d.]+) b=([-\d.]+)/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.ok(Math.abs(Number(m[1]) - 3) < 0.01 && Math.abs(Number(m[2]) + 2) < 0.01);
  });

  it("closing the session while events are in flight neither hangs nor leaves an unhandled rejection", async () => {
    const jb = await connect();
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const cb = callbackWrapper(() => new Promise((r) => setTimeout(r, 2)), { ordered: true });
      const f = jit((x: NDArray) => (filterScan((c: Tracer) => (cb(c), [c.add(1), null] as const), x as never, null, { length: 20000 }) as unknown as [Tracer])[0]);
      const p = f.withOptions({ session: jb })(array(0, "int32"));
      const settled = p.then(() => null, (e: unknown) => e);
      await new Promise((r) => setTimeout(r, 1500));
      await jb.close();
      const err = await settled;
      assert.ok(err instanceof Error && /closed/.test(err.message), String(err));
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

describe("partitioned callbacks over 4 CPU devices", function () {
  this.timeout(120000);
  const session4 = useSession({ env: { XLA_FLAGS: "--xla_force_host_platform_device_count=4" } });

  it("devicePut shards an array; partitioned delivers each local shard, unpartitioned the whole array, as lerax does", async () => {
    const jb = session4();
    assert.equal(jb.info.devices.length, 4);
    const x = await jb.devicePut(array([0, 1, 2, 3, 4, 5, 6, 7], "float32"), { mesh: { shape: [4], axes: ["x"] }, spec: ["x"] });
    const shards: unknown[] = [];
    const whole: unknown[] = [];
    const part = callbackWithListWrapper((v: unknown) => void shards.push(v), { partitioned: true });
    const full = callbackWithListWrapper((v: unknown) => void whole.push(v));
    const f = jit((a: Tracer) => (part(a.mul(2)), full(a.mul(2)), a.add(1)));
    await f.withOptions({ session: jb })(x as never);
    const want = await runPython<{ shards: number[][]; whole: number[][] }>(
      `
import json, jax, jax.numpy as jnp, numpy as np
import lerax.utils as lu
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
mesh = Mesh(np.array(jax.devices()[:4]).reshape(4), ("x",))
x = jax.device_put(jnp.arange(8, dtype=jnp.float32), NamedSharding(mesh, P("x")))
shards, whole = [], []
p = lu.callback_with_list_wrapper(shards.append, partitioned=True)
w = lu.callback_with_list_wrapper(whole.append)
jax.jit(lambda a: (p(a * 2), w(a * 2), a + 1)[-1])(x)
jax.effects_barrier()
print(json.dumps({"shards": shards, "whole": whole}))
`,
      undefined,
      { env: { XLA_FLAGS: "--xla_force_host_platform_device_count=4" } },
    );
    const sortKey = (v: unknown) => JSON.stringify(v);
    assert.deepEqual([...shards].map(sortKey).sort(), [...want.shards].map(sortKey).sort());
    assert.deepEqual(shards.length, 4);
    assert.deepEqual(whole, want.whole);
    assert.deepEqual(whole, [[0, 2, 4, 6, 8, 10, 12, 14]]);
  });
});
