/**
 * Eager dispatch: a pipelined chain of 10,000 tiny dependent ops
 * (`y = y.add(1)` on a float32[4], each intermediate disposed as it goes),
 * sent without waiting and read once at the end, against the same chain
 * dispatched by JAX in Python inside the sidecar process
 * (`bench_eager_chain`, JAX's own asynchronous dispatch). Goal: at least
 * 50,000 ops/s, and within 3x of Python's own rate. The results must agree.
 *
 * Runs on a sidecar of its own, started with JAXBRIDGE_BENCH_OPS=1 (a
 * default sidecar never has the bench op).
 */
import { array, connect, type DeviceArray, type NDArray, type Session } from "../../src/index.js";
import { benchOp, median } from "../measure.js";
import type { Row } from "../run.js";

const STEPS = 10_000;
const REPEATS = 5;

async function chain(x: DeviceArray, steps: number): Promise<NDArray> {
  let y = x;
  for (let i = 0; i < steps; i++) {
    const next = y.add(1);
    if (y !== x) y.dispose();
    y = next;
  }
  const out = await y.toHost();
  y.dispose();
  return out;
}

export async function eagerSection(ctx: { rows: Row[] }): Promise<void> {
  const jb: Session = await connect({ env: { JAXBRIDGE_BENCH_OPS: "1" } });
  try {
    const host = array([0.5, 1, -2, 3], "float32");
    const x = (await jb.put(host)) as DeviceArray;
    await chain(x, 200); // trace, lower and compile the one program; warm both sides
    const ours: number[] = [];
    let last!: NDArray;
    for (let r = 0; r < REPEATS; r++) {
      const t0 = performance.now();
      last = await chain(x, STEPS);
      ours.push((performance.now() - t0) / 1000);
    }
    // The same chain with every request in a message of its own: what coalescing gains, measured in this run.
    const alone: number[] = [];
    const jb1 = await connect({ coalesce: false });
    try {
      const x1 = (await jb1.put(host)) as DeviceArray;
      await chain(x1, 200);
      for (let r = 0; r < REPEATS; r++) {
        const t0 = performance.now();
        await chain(x1, STEPS);
        alone.push((performance.now() - t0) / 1000);
      }
    } finally {
      await jb1.close();
    }
    const py = await benchOp<{ seconds: number[]; result: NDArray }>(jb, "bench_eager_chain", { x: host, steps: STEPS, repeats: REPEATS });
    const same = Buffer.from(last.bytes()).equals(Buffer.from(py.result.bytes()));
    const rate = STEPS / median(ours);
    const pyRate = STEPS / median(py.seconds);
    const pass = rate >= 50_000 && rate * 3 >= pyRate && same;
    const fmt = (r: number) => `${Math.round(r).toLocaleString("en")} ops/s`;
    ctx.rows.push({ name: "JAX in Python: the same chain, eager, in the sidecar", value: fmt(pyRate) });
    const aloneRate = STEPS / median(alone);
    ctx.rows.push({ name: "the same chain, one request per message (coalescing off)", value: fmt(aloneRate), ratio: `${(pyRate / aloneRate).toFixed(2)}x slower` });
    ctx.rows.push({
      name: `pipelined eager chain of ${STEPS.toLocaleString("en")} tiny dependent ops${same ? "; same bits" : "; RESULTS DIFFER"}`,
      value: fmt(rate),
      ratio: `${(pyRate / rate).toFixed(2)}x slower`,
      goal: "≥ 50,000 ops/s and ≤ 3x slower",
      pass,
    });
  } finally {
    await jb.close();
  }
}
