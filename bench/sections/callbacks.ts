/**
 * Callbacks: ordered callback events per second delivered to TypeScript
 * from a scan with a per-step callback (goal >= 50,000/s), with the
 * default chunk (the program hands the host one chunk of events per call,
 * see python/jaxbridge_sidecar/program/chunking.py) against the same scan
 * with `chunk: 1` (one host call per step) and against JAX alone: the same
 * scan in the sidecar process with an ordered `jax.debug.callback` of a
 * Python no-op per step (`bench_debug_callback_scan`). All three measured
 * here, on a sidecar of this section's own (started with
 * JAXBRIDGE_BENCH_OPS=1 for the bench op).
 */
import { array, callbackWrapper, connect, filterScan, jit, type NDArray, type Session, type Tracer } from "../../src/index.js";
import { DEFAULT_CALLBACK_CHUNK } from "../../src/internal.js";
import { benchOp } from "../measure.js";
import type { Row } from "../run.js";

const GOAL = 50_000;

async function best(f: () => Promise<unknown>, runs = 3): Promise<number> {
  let b = Infinity;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await f();
    b = Math.min(b, performance.now() - t0);
  }
  return b;
}

export async function callbacksSection(ctx: { rows: Row[] }): Promise<void> {
  const { rows } = ctx;
  const n = Number(process.env.BENCH_CALLBACK_STEPS ?? 100_000);
  // The unchunked scan pays a host round trip per step: fewer steps keep it short.
  const nLive = Math.min(n, 20_000);
  const jb: Session = await connect({ env: { JAXBRIDGE_BENCH_OPS: "1" } });
  try {
    let got = 0;
    const scanOf = (steps: number, chunk: number | undefined) => {
      const cb = callbackWrapper(() => void got++, { ordered: true, chunk });
      return jit((c: NDArray) => (filterScan((c: Tracer) => (cb(c), [c.add(1), null] as const), c as never, null, { length: steps }) as unknown as [Tracer])[0], { session: jb });
    };
    const chunked = scanOf(n, undefined);
    const live = scanOf(nLive, 1);
    const without = jit((c: NDArray) => (filterScan((c: Tracer) => [c.add(1), null] as const, c as never, null, { length: n }) as unknown as [Tracer])[0], { session: jb });
    const x = array(0, "int32");
    for (const f of [chunked, live, without]) await f(x); // compile: excluded

    got = 0;
    const before = jb.callbackStats.batches;
    const tChunked = await best(() => chunked(x));
    const batches = (jb.callbackStats.batches - before) / 3;
    if (got !== 3 * n) throw new Error(`chunked scan delivered ${got} events, expected ${3 * n}`);
    const tLive = await best(() => live(x));
    const tNo = await best(() => without(x));
    const py = await benchOp<{ seconds: number[] }>(jb, "bench_debug_callback_scan", { steps: nLive, repeats: 3 }, { timeoutMs: 600_000 });
    const tPy = Math.min(...py.seconds) * 1000;

    const rate = (steps: number, ms: number) => steps / (ms / 1000);
    const fmt = (r: number) => `${Math.round(r).toLocaleString("en")}/s`;
    const rChunked = rate(n, tChunked);
    const rLive = rate(nLive, tLive);
    const rPy = rate(nLive, tPy);
    rows.push({ name: `ordered callback events/s, chunk ${DEFAULT_CALLBACK_CHUNK} (scan of ${n})`, value: fmt(rChunked), ratio: `${(rChunked / rPy).toFixed(1)}x`, goal: ">= 50,000/s", pass: rChunked >= GOAL });
    rows.push({ name: `ordered callback events/s, chunk 1 (scan of ${nLive})`, value: fmt(rLive), ratio: `${(rLive / rPy).toFixed(1)}x` });
    rows.push({ name: `jax.debug.callback alone, in Python (scan of ${nLive})`, value: fmt(rPy), ratio: "1.0x" });
    rows.push({ name: "event batches per chunked call", value: `${Math.round(batches)}` });
    rows.push({ name: "same scan without callback", value: `${tNo.toFixed(1)} ms` });
    rows.push({ name: "per-step cost of the chunked callback", value: `${(((tChunked - tNo) / n) * 1000).toFixed(2)} us` });
  } finally {
    await jb.close();
  }
}
