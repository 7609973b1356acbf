/**
 * Callbacks: ordered callback events per second delivered to TypeScript
 * from a scan (goal >= 50,000/s), and the cost of a scan with a per-step
 * callback against the same scan without one. The bound JAX itself puts on
 * a per-step `jax.debug.callback` (a Python no-op callback in the sidecar
 * process, via `bench_lerax_scan`'s neighbour) is reported for context.
 */
import { array, callbackWrapper, filterScan, jit, type NDArray, type Session, type Tracer } from "../../src/index.js";
import type { Row } from "../run.js";

export async function callbacksSection(ctx: { jb: Session; rows: Row[] }): Promise<void> {
  const { jb, rows } = ctx;
  const n = Number(process.env.BENCH_CALLBACK_STEPS ?? 100_000);
  let got = 0;
  const cb = callbackWrapper(() => void got++, { ordered: true });
  const withCb = jit((c: NDArray) => (filterScan((c: Tracer) => (cb(c), [c.add(1), null] as const), c as never, null, { length: n }) as unknown as [Tracer])[0], { session: jb });
  const without = jit((c: NDArray) => (filterScan((c: Tracer) => [c.add(1), null] as const, c as never, null, { length: n }) as unknown as [Tracer])[0], { session: jb });
  const x = array(0, "int32");
  await withCb(x);
  await without(x);
  const best = async (f: () => Promise<unknown>, runs = 3) => {
    let b = Infinity;
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await f();
      b = Math.min(b, performance.now() - t0);
    }
    return b;
  };
  got = 0;
  const before = jb.callbackStats.batches;
  const tCb = await best(() => withCb(x));
  const batches = (jb.callbackStats.batches - before) / 3;
  const tNo = await best(() => without(x));
  rows.push({ name: `ordered callback events/s (scan of ${n})`, value: `${Math.round(n / (tCb / 1000)).toLocaleString("en")}/s`, goal: ">= 50,000/s" });
  rows.push({ name: "event batches per call", value: `${Math.round(batches)}` });
  rows.push({ name: "scan with per-step callback", value: `${tCb.toFixed(1)} ms`, ratio: `${(tCb / tNo).toFixed(1)}x` });
  rows.push({ name: "same scan without callback", value: `${tNo.toFixed(1)} ms`, ratio: "1.0x" });
  rows.push({ name: "per-step overhead of the callback", value: `${(((tCb - tNo) / n) * 1000).toFixed(1)} us` });
}
