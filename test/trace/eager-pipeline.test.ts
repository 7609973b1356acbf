/**
 * Pipelined eager dispatch and memory: dependent ops sent without waiting
 * lose nothing and equal Python; a failure in the middle of a chain rejects
 * exactly the awaits that depend on it, with Python's own error; disposing
 * of an array before it exists is safe; a killed sidecar rejects every
 * pending await; `tidy` / `scope` free what a loop made, and `memory()`
 * (the sidecar's own accounting) shows it. Oracles: jax.numpy in Python
 * (values and the error), the sidecar's handle table (memory).
 */
import assert from "node:assert/strict";
import { connect, type Session } from "../../src/session/session.js";
import { DeviceArray } from "../../src/values/device-array.js";
import { array as hostArray, type NDArray } from "../../src/values/ndarray.js";
import { SidecarDiedError, SidecarError } from "../../src/values/errors.js";
import { jnp } from "../../src/trace/lib/index.js";
import { Oracle } from "./support/oracle.js";
import { useSession } from "../support/session.js";

const oracle = new Oracle();
after(() => oracle.close());

const ints = (a: NDArray): number[] => Array.from(a.data as Int32Array);

/**
 * A bounded wait: resolves with `p`'s settlement, or fails the test if it is
 * still pending after `ms` (a liveness check: it cannot pass by being slow).
 */
async function settlesWithin<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe("eager dispatch: pipelining", function () {
  this.timeout(600_000);
  // The array limit would refuse the 4 TiB array below before XLA sees it: here XLA itself must fail.
  const session = useSession({ x64: false, args: ["--max-array-bytes", String(2 ** 50)] });
  let jb: Session;
  beforeEach(() => (jb = session()));

  it("100,000 dependent tiny ops in flight lose nothing and equal the same chain in Python", async () => {
    // A cycle of three ops whose order matters: an op lost, repeated or reordered changes the result.
    const n = 100_000;
    const x0 = hostArray([1, 2, 3, 4], "int32");
    const start = await jb.memory();
    let x = (await jb.put([x0]))[0]!;
    for (let i = 0; i < n; i++) {
      const next = i % 3 === 0 ? x.mul(5) : i % 3 === 1 ? x.add(7) : x.mod(1_000_003);
      x.dispose(); // freed on the sidecar after the ops before it ran
      x = next;
    }
    assert.ok(jb.inFlight > 0, "the chain is in flight, not run one by one");
    const got = await x.toHost();
    x.dispose();
    assert.equal((await jb.memory()).arrays, start.arrays, "every intermediate was freed");
    const want = await oracle.exec<number[]>(
      false,
      `x = jnp.asarray(args[0])
for i in range(${n}):
    x = x * 5 if i % 3 == 0 else (x + 7 if i % 3 == 1 else x % 1000003)
result = [int(v) for v in x]`,
      [x0],
    );
    assert.deepEqual(ints(got), want);
  });

  it("an error in the middle of a chain rejects exactly the awaits that depend on it, with Python's error", async () => {
    const [a] = await jb.put([hostArray([1, 2, 3], "float32")]);
    const b = a!.add(1);
    // 2**40 float32s: XLA cannot allocate them (RESOURCE_EXHAUSTED) and says so, without touching memory.
    const bad = jnp.zeros([2 ** 40], "float32") as unknown as DeviceArray;
    const head = bad.get(jnp.slice(0, 3)); // depends on bad
    const c = head.add(b); // depends on bad
    const d = c.mul(2); // depends, two steps down
    const e = b.mul(3); // does not
    const f = d.sum(); // depends, three steps down
    const theirs = await oracle.exec<{ type: string; message: string }>(
      false,
      `try:
    jnp.zeros((2**40,), jnp.float32).block_until_ready()
    result = None
except Exception as e:
    t = type(e)
    result = {"type": f"{t.__module__}.{t.__qualname__}", "message": str(e)}`,
    );
    assert.ok(theirs, "Python allocated 4 TiB?");
    const isPythons = (direct: boolean) => (err: unknown) => {
      assert.ok(err instanceof SidecarError, String(err));
      assert.equal(err.remoteType, theirs.type);
      assert.ok(err.remoteMessage.startsWith(theirs.message), `${err.remoteMessage} / ${theirs.message}`);
      assert.equal(/produced by request \d+/.test(err.remoteMessage), !direct);
      return true;
    };
    await assert.rejects(bad.block(), isPythons(true));
    await assert.rejects(c.toHost(), isPythons(false));
    await assert.rejects(d.block(), isPythons(false));
    await assert.rejects(f.toHost(), isPythons(false));
    assert.deepEqual(Array.from((await e.toHost()).data as Float32Array), [6, 9, 12]);
    assert.deepEqual(Array.from((await b.toHost()).data as Float32Array), [2, 3, 4]);
    assert.ok(d.error instanceof SidecarError && e.error === undefined);
    // Freeing the failed arrays removes their poison from the sidecar.
    const before = await jb.memory();
    assert.equal(before.poisoned, 5);
    for (const x of [bad, head, c, d, f]) x.dispose();
    assert.equal((await jb.memory()).poisoned, 0);
    for (const x of [a!, b, e]) x.dispose();
  });

  it("disposing of arrays whose producing op has not run yet is safe and frees them", async () => {
    const [x] = await jb.put([hostArray([1, 2, 3], "float32")]);
    await jb.sync();
    const before = await jb.memory();
    let last: DeviceArray = x!;
    for (let i = 0; i < 2000; i++) {
      const y = last.add(1);
      const z = y.mul(2);
      y.dispose(); // its request has not even left yet, and z's depends on it
      if (last !== x) last.dispose();
      last = z;
    }
    assert.ok(last.pending);
    const after = await jb.memory();
    assert.equal(after.arrays, before.arrays + 1, "only the last array of the chain is left");
    assert.equal(after.poisoned, 0);
    let want = [1, 2, 3];
    for (let i = 0; i < 2000; i++) want = want.map((v) => Math.fround((v + 1) * 2));
    assert.deepEqual(Array.from((await last.toHost()).data as Float32Array), want);
    last.dispose();
    x!.dispose();
  });

  it("frees of arrays still needed by requests waiting for a slot wait for those requests", async () => {
    // With 4 requests in flight at most, the chain's requests wait in TypeScript while the tidy ends
    // and frees its intermediates: those frees must not ride on a request made before them.
    const narrow = await connect({ x64: false, maxInFlight: 4 });
    try {
      const [x] = await narrow.put([hostArray([1, 2], "float32")]);
      await narrow.tidy(async () => void (await x!.mul(0.75).add(1).block())); // compiled: replies now come faster than frees are flushed on their own
      const y = await narrow.tidy(async () => {
        let v = x!;
        for (let i = 0; i < 300; i++) v = v.mul(0.75).add(1);
        return v;
      });
      let want = [1, 2];
      for (let i = 0; i < 300; i++) want = want.map((v) => Math.fround(Math.fround(v * 0.75) + 1));
      assert.deepEqual(Array.from((await y.toHost()).data as Float32Array), want);
      assert.equal((await narrow.memory()).arrays, 2);
    } finally {
      await narrow.close();
    }
  });

  it("a sidecar killed mid-chain rejects every pending await", async () => {
    const doomed = await connect({ x64: false });
    const [x] = await doomed.put([hostArray([1, 2, 3], "float32")]);
    const pending: DeviceArray[] = [];
    let y = x!;
    for (let i = 0; i < 20_000; i++) {
      y = y.add(1);
      if (i % 97 === 0) pending.push(y);
    }
    pending.push(y);
    assert.ok(pending.some((p) => p.pending));
    process.kill(doomed.info.pid, "SIGKILL");
    const results = await settlesWithin(Promise.allSettled(pending.map((p) => p.toHost())), 1000, "the awaits of a dead sidecar's arrays");
    const late = results.filter((r) => r.status === "rejected");
    assert.ok(late.length > 0, "the sidecar finished the chain before it died");
    for (const r of late) assert.ok((r as PromiseRejectedResult).reason instanceof SidecarDiedError, String((r as PromiseRejectedResult).reason));
    assert.equal(results.slice(results.length - 1)[0]!.status, "rejected", "the last array of the chain cannot have been made");
    await doomed.close();
  });
});

describe("eager dispatch: memory (tidy, scope, memory)", function () {
  this.timeout(300_000);
  const session = useSession({ x64: false });
  let jb: Session;
  beforeEach(() => (jb = session()));

  it("a 10,000-step eager loop inside a scope ends with as many live arrays as it started with", async () => {
    const [w] = await jb.put([hostArray([0.5, 0.25], "float32")]);
    const start = await jb.memory();
    {
      using scope = jb.scope();
      let x = w!;
      for (let i = 0; i < 10_000; i++) x = x.mul(0.999).add(w!);
      assert.equal(scope.size, 20_000);
      await x.block();
    }
    const end = await jb.memory();
    assert.equal(end.arrays, start.arrays);
    assert.equal(end.bytes, start.bytes);
    assert.ok(end.peak_bytes >= start.bytes + 8, "the peak saw the loop's arrays");
    w!.dispose();
  });

  it("tidy follows its function across awaits, keeps what it returns (for the enclosing scope) and what keep() marks", async () => {
    const start = await jb.memory();
    let kept!: DeviceArray;
    let returned!: DeviceArray;
    await jb.tidy(async () => {
      const [x] = await jb.put([hostArray([1, 2], "float32")]); // made after an await: still counted
      const y = x!.add(1);
      await y.block();
      kept = jb.keep(y.mul(2));
      returned = await jb.tidy(async () => {
        const t = y.sub(1);
        await new Promise((r) => setTimeout(r, 5));
        return t.add(x!); // returned from the inner tidy: belongs to the outer one
      });
      assert.ok(!returned.disposed);
      return undefined;
    });
    assert.ok(returned.disposed, "the outer tidy freed what the inner one returned");
    assert.ok(!kept.disposed);
    assert.deepEqual(Array.from((await kept.toHost()).data as Float32Array), [4, 6]);
    const end = await jb.memory();
    assert.equal(end.arrays, start.arrays + 1);
    kept.dispose();
    assert.equal((await jb.memory()).arrays, start.arrays);
  });

  it("a scope's keep() hands arrays to the enclosing scope; a tidy that throws frees everything", async () => {
    const start = await jb.memory();
    let out!: DeviceArray;
    {
      using outer = jb.scope();
      {
        using inner = jb.scope();
        const [x] = await jb.put([hostArray([3], "float32")]);
        out = inner.keep(x!.mul(x!));
        x!.add(1);
      }
      assert.ok(!out.disposed);
      assert.equal(outer.size, 1);
      assert.deepEqual(Array.from((await out.toHost()).data as Float32Array), [9]);
    }
    assert.ok(out.disposed);
    await assert.rejects(
      jb.tidy(async () => {
        const [x] = await jb.put([hostArray([1], "float32")]);
        x!.add(1);
        throw new Error("boom");
      }),
      /boom/,
    );
    assert.equal((await jb.memory()).arrays, start.arrays);
  });

  it("memory() reports bytes per device from the sidecar's accounting", async () => {
    const m0 = await jb.memory();
    const [x] = await jb.put([hostArray(new Array(1000).fill(1), "float32")]);
    const y = x!.astype("float16");
    await jb.sync();
    const m1 = await jb.memory();
    const device = jb.info.devices[0]!.str;
    assert.equal(m1.bytes - m0.bytes, 4000 + 2000);
    assert.equal((m1.devices[device] ?? 0) - (m0.devices[device] ?? 0), 6000);
    assert.ok(m1.peak_bytes >= m1.bytes);
    x!.dispose();
    y.dispose();
    assert.equal((await jb.memory()).bytes, m0.bytes);
  });
});
