/**
 * Traced programs: (a) `filterScan` over 1e5 steps of a small MLP-style
 * body against `lerax.utils.filter_scan` of the same body in Python, timed
 * inside the sidecar process (compile excluded on both sides; ours includes
 * the round trip); (b) a cached `jit` call of a tiny program against the
 * bare ZeroMQ echo between the same two processes; (c) tracing a function
 * of 1,000 operations into a Program (trace, dead-code pass, canonical
 * encoding and sha256).
 *
 * (a) runs on a sidecar of its own, started with JAXBRIDGE_BENCH_OPS=1 so
 * that it has the bench-only `bench_lerax_scan` op (python/jaxbridge_sidecar/
 * programs.py); a default sidecar never has it.
 */
import { connect, filterScan, jit, jnp, leraxCacheStats, NDArray, type DeviceArray, type Session, type Tracer } from "../../src/index.js";
import { traceFlat } from "../../src/internal.js";
import { benchOp, fmtRatio, fmtUs, median, time } from "../measure.js";
import type { Row } from "../run.js";
import { echoer } from "./wire.js";

const HIDDEN = 32;
const STEPS = 100_000;
const REPEATS = 5;

interface Carry {
  h: Tracer;
  w1: Tracer;
  b1: Tracer;
  w2: Tracer;
  b2: Tracer;
  act: string;
}

/** The body bench_lerax_scan runs in Python (programs.py: bench_mlp_body), op for op. */
const body = (c: Carry) => {
  const z = jnp.tanh(jnp.add(jnp.matmul(c.h, c.w1), c.b1));
  const h = jnp.tanh(jnp.add(jnp.matmul(z, c.w2), c.b2));
  return [{ ...c, h }, jnp.sum(h)] as const;
};

/** A float32 array of deterministic values in ±scale (an LCG from `seed`). */
export function det(shape: number[], scale: number, seed: number): NDArray {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return new NDArray(data, shape, "float32");
}

async function scanVsLerax(rows: Row[]): Promise<void> {
  const jb: Session = await connect({ env: { JAXBRIDGE_BENCH_OPS: "1" } });
  try {
    const host = {
      h: det([HIDDEN], 0.5, 1),
      w1: det([HIDDEN, HIDDEN], 1 / Math.sqrt(HIDDEN), 2),
      b1: det([HIDDEN], 0.1, 3),
      w2: det([HIDDEN, HIDDEN], 1 / Math.sqrt(HIDDEN), 4),
      b2: det([HIDDEN], 0.1, 5),
    };
    const dev = await jb.put(host);
    const carry = { ...dev, act: "tanh" };
    const ours = async () => {
      const [c, ys] = await filterScan(body as never, carry, null, { length: STEPS, session: jb });
      return { c: c as unknown as { h: DeviceArray }, ys: ys as unknown as DeviceArray };
    };
    const python = async (mode: "jit" | "eager", repeats: number) =>
      benchOp<{ seconds: number[]; h: NDArray; ys: NDArray }>(jb, "bench_lerax_scan", { carry: dev, steps: STEPS, repeats, mode }, { timeoutMs: 600_000 });

    // Compile both (excluded), and check that both compute the same numbers.
    const first = await ours();
    const ref = await python("jit", 1);
    const ourH = await first.c.h.toHost();
    const same = ourH.bytes().every((b, i) => b === ref.h.bytes()[i]) && (await first.ys.toHost()).bytes().every((b, i) => b === ref.ys.bytes()[i]);
    first.c.h.dispose();
    first.ys.dispose();

    // Interleave the two so that drift on a shared machine hits both alike.
    const tsUs: number[] = [];
    const pyUs: number[] = [];
    for (let round = 0; round < REPEATS; round++) {
      pyUs.push(...(await python("jit", 1)).seconds.map((s) => s * 1e6));
      const t0 = performance.now();
      const r = await ours();
      tsUs.push((performance.now() - t0) * 1000);
      r.c.h.dispose();
      r.ys.dispose();
    }
    const eager = median((await python("eager", 3)).seconds.map((s) => s * 1e6));
    const ts = median(tsUs);
    const py = median(pyUs);
    rows.push({ name: `lerax.utils.filter_scan in the sidecar, jitted (1e5 steps, h=${HIDDEN})`, value: fmtUs(py), ratio: "1.00x" });
    rows.push({ name: "lerax.utils.filter_scan in the sidecar, eager", value: fmtUs(eager), ratio: fmtRatio(eager / py) });
    rows.push({ name: `filterScan from TypeScript (round trip included)${same ? "; same bits" : "; RESULTS DIFFER"}`, value: fmtUs(ts), ratio: fmtRatio(ts / py), goal: "≤ 1.1x", pass: same && ts / py <= 1.1 });
    const st = leraxCacheStats.filterScan(body as never);
    rows.push({ name: `  (traced ${st.traces}x for ${st.calls} calls; per step ${(ts / STEPS).toFixed(2)} µs)`, value: "" });
  } finally {
    await jb.close();
  }
}

async function cachedJitVsEcho(jb: Session, echoUrl: string, rows: Row[]): Promise<void> {
  const e = await echoer(echoUrl);
  try {
    const small = Buffer.alloc(64, 1);
    const echo = await time(() => e.echo([small]), { warmup: 200, runs: 3000 });
    const x = (await jb.put(new NDArray(new Float32Array([1]), [1], "float32"))) as DeviceArray;
    const neg = jit((a: DeviceArray) => jnp.negative(a as unknown as Tracer));
    const call = await time(
      async () => {
        const r = (await neg(x)) as DeviceArray;
        r.dispose();
      },
      { warmup: 200, runs: 3000 },
    );
    rows.push({ name: "bare zmq echo, 64 B", value: fmtUs(echo.medianUs), ratio: "1.00x" });
    rows.push({ name: "cached jit call (jnp.negative, handle in/out, hash only)", value: fmtUs(call.medianUs), ratio: fmtRatio(call.medianUs / echo.medianUs), goal: "≤ 1.5x", pass: call.medianUs / echo.medianUs <= 1.5 });
    rows.push({ name: `  (traced ${neg.stats.traces}x, program sent ${neg.stats.programsSent}x in ${neg.stats.calls} calls)`, value: "" });
    x.dispose();
  } finally {
    e.close();
  }
}

function tracing(x64: boolean, rows: Row[]): void {
  const fn = (a: Tracer) => {
    let y = a;
    for (let i = 0; i < 500; i++) y = jnp.add(jnp.multiply(y, 1.0001), 0.5);
    return y;
  };
  const spec = [{ dtype: "float32" as const, shape: [8] }];
  let eqns = 0;
  let bytes = 0;
  for (let i = 0; i < 5; i++) traceFlat(fn, spec, { x64 }); // warm up the JIT
  const samples: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    const t = traceFlat(fn, spec, { x64 });
    samples.push((performance.now() - t0) * 1000);
    eqns = t.program.eqns.length;
    bytes = t.bytes.length;
  }
  const us = median(samples);
  rows.push({ name: `trace a ${eqns}-op function (trace, encode ${(bytes / 1024).toFixed(0)} KiB, sha256)`, value: fmtUs(us), ratio: `${(us / eqns).toFixed(2)} µs/op` });
}

export async function traceSection(ctx: { jb: Session; echoUrl: string; rows: Row[] }): Promise<void> {
  await cachedJitVsEcho(ctx.jb, ctx.echoUrl, ctx.rows);
  tracing(ctx.jb.info.x64, ctx.rows);
  await scanVsLerax(ctx.rows);
}
