/**
 * Callback chunks end to end (issue 15, item 4): a scan whose callbacks the
 * sidecar delivers once per chunk of steps. The oracle is the same scan in
 * Python JAX with a per-step ordered `jax.debug.callback`: the events
 * TypeScript receives equal the ones JAX's callbacks see, in order and bit
 * for bit (dtype, shape, bytes), over generated cases (lengths that are not
 * a multiple of the chunk, reverse scans, nested scans, pytrees with static
 * leaves, dtypes); a callback that throws at step k rejects the call with
 * its error and sees no later step.
 */
import assert from "node:assert/strict";
import { NDArray, array } from "../../src/values/ndarray.js";
import type { DType } from "../../src/values/dtype.js";
import { callbackWrapper, DEFAULT_CALLBACK_CHUNK } from "../../src/lerax/callbacks.js";
import { filterCond, filterScan } from "../../src/lerax/utils.js";
import { vmap } from "../../src/trace/lib/transforms.js";
import { jit } from "../../src/trace/jit.js";
import "../../src/trace/lib/index.js"; // installs the array methods (x.add) on Tracer
import type { Tracer } from "../../src/trace/tracer.js";
import { CallEvents, type BatchEntry, type CallbackStats } from "../../src/session/callback-events.js";
import { useSession } from "../support/session.js";
import { runPython } from "../support/python.js";

process.env.JAXBRIDGE_QUIET = "1";

interface Case {
  length: number;
  chunk: number | undefined;
  reverse: boolean;
  dtype: DType;
  inner: number;
  width: number;
  seed: number;
}

type Wire = { dtype: string; shape: number[]; b64: string };
const wire = (a: NDArray): Wire => ({ dtype: a.dtype, shape: [...a.shape], b64: Buffer.from(a.bytes()).toString("base64") });

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function data(dtype: DType, shape: number[], next: () => number): NDArray {
  const n = shape.reduce((p, d) => p * d, 1);
  const vals = Array.from({ length: n }, () => (dtype === "float32" ? (next() - 0.5) * 8 : Math.floor(next() * 100)));
  const ctor = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array, int8: Int8Array, int16: Int16Array }[dtype as "float32"];
  return new NDArray(ctor.from(vals) as never, shape, dtype);
}

function cases(n: number, seed: number): Case[] {
  const next = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  return Array.from({ length: n }, (_, i) => ({
    length: 1 + Math.floor(next() * 300),
    chunk: pick([undefined, 2, 5, 16, 50]),
    reverse: next() < 0.5,
    dtype: pick(["float32", "int32", "uint8", "int8", "int16"] as const),
    inner: pick([0, 0, 1, 3]),
    width: pick([1, 2]),
    seed: i + 1,
  }));
}

/** The Python side: each case's scan with a per-step ordered jax.debug.callback, its events and outputs. */
const ORACLE = `
import base64, json, sys, jax, jax.numpy as jnp, numpy as np
def arr(w): return np.frombuffer(base64.b64decode(w["b64"]), dtype=w["dtype"]).reshape(w["shape"])
def enc(a):
    a = np.asarray(a)
    return {"dtype": str(a.dtype), "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}
out = []
for case in json.load(sys.stdin):
    seen = []
    def rec(tag):
        return lambda *a: seen.append([tag, *[enc(v) for v in a]])
    inner = case["inner"]
    def step(c, x):
        jax.debug.callback(rec("A"), c, x, ordered=True)
        c = c + x
        if inner:
            def ist(e, _):
                jax.debug.callback(rec("B"), e, ordered=True)
                return e + x, None
            c, _ = jax.lax.scan(ist, c, None, length=inner)
        jax.debug.callback(rec("C"), c, ordered=True)
        return c, c
    c, ys = jax.jit(lambda c, xs: jax.lax.scan(step, c, xs, reverse=case["reverse"]))(arr(case["init"]), arr(case["xs"]))
    jax.effects_barrier()
    out.append({"events": seen, "c": enc(c), "ys": enc(ys)})
print(json.dumps(out))
`;

describe("callback chunks: events from a chunked scan equal JAX's per-step callbacks", function () {
  const session = useSession();
  this.timeout(600000);

  it("in order and bit for bit, over generated cases (lengths, chunks, reverse, nested scans, pytrees, dtypes)", async () => {
    const jb = session();
    const all = cases(14, 15);
    const inputs = all.map((c) => {
      const next = rng(c.seed * 7919);
      return { init: data(c.dtype, [c.width], next), xs: data(c.dtype, [c.length, c.width], next) };
    });
    const want = await runPython<{ events: unknown[][]; c: Wire; ys: Wire }[]>(
      ORACLE,
      all.map((c, i) => ({ ...c, init: wire(inputs[i]!.init), xs: wire(inputs[i]!.xs) })),
    );
    const batchesBefore = jb.callbackStats.batches;
    let steps = 0;
    for (const [i, c] of all.entries()) {
      const seen: unknown[][] = [];
      const opts = { ordered: true, chunk: c.chunk };
      // A pytree with a static leaf, a single array, and a list: each rebuilt around the rows it receives.
      const cbA = callbackWrapper((t: { c: NDArray; x: NDArray }, tag: string) => seen.push([tag === "tag" ? "A" : "?", wire(t.c), wire(t.x)]), opts);
      const cbB = callbackWrapper((e: NDArray) => seen.push(["B", wire(e)]), opts);
      const cbC = callbackWrapper(([v]: [NDArray]) => seen.push(["C", wire(v)]), opts);
      const step = (carry: Tracer, x: Tracer) => {
        cbA({ c: carry, x }, "tag");
        let next = carry.add(x);
        if (c.inner) next = (filterScan((e: Tracer) => (cbB(e), [e.add(x), null] as const), next as never, null, { length: c.inner }) as unknown as [Tracer])[0];
        cbC([next]);
        return [next, next] as const;
      };
      const [carry, ys] = (await filterScan(step as never, inputs[i]!.init, inputs[i]!.xs, { reverse: c.reverse, fetch: true })) as unknown as [NDArray, NDArray];
      const w = want[i]!;
      const label = JSON.stringify(c);
      assert.equal(seen.length, w.events.length, `${label}: event count`);
      for (let k = 0; k < seen.length; k++) assert.deepEqual(seen[k], w.events[k], `${label}: event ${k}`);
      assert.deepEqual(wire(carry), w.c, `${label}: carry`);
      assert.deepEqual(wire(ys), w.ys, `${label}: ys`);
      steps += c.length;
    }
    // Chunks are what make it fast: far fewer batches than steps.
    assert.ok(jb.callbackStats.batches - batchesBefore < steps / 4, `${jb.callbackStats.batches - batchesBefore} batches for ${steps} steps`);
  });

  it("a callback that throws at step k rejects the call with its error; no later step reaches it; the session keeps serving", async () => {
    for (const [length, k, chunk] of [
      [1000, 0, undefined],
      [1000, 517, undefined],
      [301, 300, 7],
      [50, 13, 1],
    ] as const) {
      const calls: number[] = [];
      const boom = callbackWrapper(
        (x: NDArray) => {
          const i = x.item() as number;
          calls.push(i);
          if (i === k) throw new RangeError(`boom at step ${i}`);
        },
        { ordered: true, chunk },
      );
      const f = jit((x: NDArray) => (filterScan((c: Tracer) => (boom(c), [c.add(1), null] as const), x as never, null, { length }) as unknown as [Tracer])[0]);
      await assert.rejects(f(array(0, "int32")), (e: Error) => e instanceof RangeError && e.message === `boom at step ${k}`);
      assert.deepEqual(calls, Array.from({ length: k + 1 }, (_, i) => i), `length ${length}, k ${k}: steps 0..k ran in order, none after`);
      const ok = (await f.withOptions({ fetch: true })(array(-5000, "int32"))) as NDArray;
      assert.equal(ok.item(), -5000 + length);
    }
  });

  it("a scan under vmap stays unchunked and a scan in a cond branch is chunked: both fire as JAX fires them", async () => {
    const seen: unknown[] = [];
    const cb = callbackWrapper((tag: string, v: NDArray) => seen.push([tag, v.toList()]), { ordered: true, chunk: 4 });
    const scan = (tag: string) => (a: Tracer) => (filterScan((c: Tracer) => (cb(tag, c), [c.add(1), null] as const), a as never, null, { length: 7 }) as unknown as [Tracer])[0];
    await vmap(scan("vmap"))(array([[1, 2], [3, 4], [5, 6]], "float32"));
    await jit((p: Tracer, x: Tracer) => filterCond(p, scan("cond"), (x: Tracer) => x, x))(array(true), array([10, 20], "float32"));
    const want = await runPython<unknown[]>(`
import json, jax, jax.numpy as jnp, numpy as np
seen = []
def scan(tag):
    def step(c, _):
        jax.debug.callback(lambda v: seen.append([tag, np.asarray(v).tolist()]), c, ordered=True)
        return c + 1, None
    return lambda a: jax.lax.scan(step, a, None, length=7)[0]
jax.block_until_ready(jax.vmap(scan("vmap"))(jnp.array([[1, 2], [3, 4], [5, 6]], jnp.float32)))
jax.block_until_ready(jax.jit(lambda p, x: jax.lax.cond(p, scan("cond"), lambda x: x, x))(True, jnp.array([10, 20], jnp.float32)))
jax.effects_barrier()
print(json.dumps(seen))
`);
    assert.deepEqual(seen, want);
  });

  it("the chunk option is checked where the wrapper is made", () => {
    assert.equal(DEFAULT_CALLBACK_CHUNK, 128);
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 21]) {
      assert.throws(() => callbackWrapper(() => {}, { chunk: bad }), (e: Error) => e instanceof RangeError && /option chunk must be an integer from 1/.test(e.message) && e.message.includes(String(bad)));
    }
  });
});

describe("callback chunks on the client: expanding a chunk entry", function () {
  function events(entries: BatchEntry[]) {
    const got: [number, unknown[]][] = [];
    const warnings: string[] = [];
    const acks: number[] = [];
    const stats: CallbackStats = { batches: 0, events: 0, dropped: 0 };
    const table = [0, 1].map((id) => ({ ordered: true, deliver: (arrays: NDArray[]) => void got.push([id, arrays.map((a) => [a.shape, a.toList()])]) }));
    const ev = new CallEvents(7, table, { sendAck: (_c, b) => void acks.push(b), warnOnce: (_k, m) => void warnings.push(m), callbackStats: stats });
    ev.onBatch(0, entries);
    return { got, warnings, acks, stats, ev };
  }

  it("delivers the k-th event of each callback from row k of its arrays, in the chunk's order, after the single events before it", async () => {
    const order = new NDArray(Int32Array.from([0, 1, 1, 0, 1]), [5], "int32");
    const a = new NDArray(Float32Array.from([1, 2, 3, 4]), [2, 2], "float32");
    const b = new NDArray(Int32Array.from([7, 8, 9]), [3], "int32");
    const { got, warnings, acks, stats, ev } = events([[1, [array(5, "int32")]], { order, args: [[0, [a]], [1, [b]]] }]);
    await ev.drained();
    assert.deepEqual(got, [
      [1, [[[], 5]]],
      [0, [[[2], [1, 2]]]],
      [1, [[[], 7]]],
      [1, [[[], 8]]],
      [0, [[[2], [3, 4]]]],
      [1, [[[], 9]]],
    ]);
    assert.deepEqual(warnings, []);
    assert.deepEqual(acks, [0]);
    assert.equal(stats.events, 6);
  });

  it("drops a malformed chunk with one warning naming what is wrong, and keeps the rest of the batch", async () => {
    const ok = new NDArray(Int32Array.from([0]), [1], "int32");
    const one = new NDArray(Float32Array.from([1]), [1], "float32");
    for (const [entry, why] of [
      [{ order: new NDArray(Float32Array.from([0]), [1], "float32"), args: [[0, [one]]] }, /int32 `order`/],
      [{ order: ok, args: [[1, [one]]] }, /names callback 0, which its args lack/],
      [{ order: new NDArray(Int32Array.from([0, 0]), [2], "int32"), args: [[0, [one]]] }, /fewer rows than its events/],
      [{ order: ok, args: [[0, [array(1, "float32")]]] }, /leading axis/],
    ] as const) {
      const { got, warnings, acks, ev } = events([entry as unknown as BatchEntry, [0, [one]]]);
      await ev.drained();
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, why);
      assert.match(warnings[0]!, /call 7 received a malformed callback chunk/);
      assert.equal(got.length, 1, "the single event after it is delivered");
      assert.deepEqual(acks, [0], "the batch is still acked, so the sidecar is not held up");
    }
  });
});
