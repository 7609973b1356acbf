/**
 * Remote Python modules from TypeScript: (a) a traced `filterScan` that calls
 * a remote equinox MLP with `pyCall` every step, against the same scan
 * written in Python (`eqx.filter_jit` of `lax.scan` over `model(x)`), timed
 * inside the sidecar (compile excluded on both sides; ours includes the
 * round trip); (b) one call of the MLP as a cached jitted `pyCall`, and as an
 * eager `callMethod` (rebuild the module from handles, call, export), against
 * the bare ZeroMQ echo between the same two processes.
 *
 * Runs on a sidecar of its own, allowed `equinox.nn` and started with
 * JAXBRIDGE_BENCH_OPS=1 for the bench-only `bench_module_scan` op.
 */
import { connect, filterScan, jit, kw, NDArray, pyCall, type DeviceArray, type RemoteModule, type Tracer } from "../../src/index.js";
import { benchOp, fmtRatio, fmtUs, median, time } from "../measure.js";
import type { Row } from "../run.js";
import { echoer } from "./wire.js";

const STEPS = 100_000;
const REPEATS = 5;
const SHAPE = { in_size: 8, out_size: 4, width_size: 32, depth: 2 };

function rows(n: number, width: number): NDArray {
  const data = new Float32Array(n * width);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(0.37 * i);
  return new NDArray(data, [n, width], "float32");
}

export async function pycallSection(ctx: { echoUrl: string; rows: Row[] }): Promise<void> {
  const jb = await connect({ allow: ["equinox.nn"], env: { JAXBRIDGE_BENCH_OPS: "1" } });
  const e = await echoer(ctx.echoUrl);
  try {
    const nn = await jb.import("equinox.nn");
    const key = await jb.call<DeviceArray>("jax.random.PRNGKey", 0);
    const model = (await nn.MLP(kw({ ...SHAPE, key }))) as RemoteModule;
    const xs = (await jb.put(rows(STEPS, SHAPE.in_size))) as DeviceArray;

    // (a) the scan, both ways; interleaved so that drift on a shared machine hits both alike.
    const body = (m: RemoteModule, x: Tracer) => [m, pyCall<Tracer>(m, x)] as const;
    const ours = async () => (await filterScan(body, model, xs))[1] as unknown as DeviceArray;
    const native = async () => benchOp<{ seconds: number[]; ys: NDArray }>(jb, "bench_module_scan", { model, xs, repeats: 1 }, { timeoutMs: 600_000 });
    const first = await ours(); // traces, asks for the call's types, compiles: excluded
    const ref = await native();
    const got = await first.toHost();
    const same = got.bytes().every((b, i) => b === ref.ys.bytes()[i]);
    first.dispose();
    const tsUs: number[] = [];
    const pyUs: number[] = [];
    for (let r = 0; r < REPEATS; r++) {
      pyUs.push((await native()).seconds[0]! * 1e6);
      const t0 = performance.now();
      (await ours()).dispose();
      tsUs.push((performance.now() - t0) * 1000);
    }
    const ts = median(tsUs);
    const py = median(pyUs);
    ctx.rows.push({ name: `equinox MLP ${SHAPE.in_size}->${SHAPE.width_size}x${SHAPE.depth}->${SHAPE.out_size} in a jitted lax.scan, in the sidecar (${STEPS / 1000}k steps)`, value: fmtUs(py), ratio: "1.00x" });
    ctx.rows.push({ name: `filterScan + pyCall from TypeScript (round trip included)${same ? "; same bits" : "; RESULTS DIFFER"}`, value: fmtUs(ts), ratio: fmtRatio(ts / py), goal: "≤ 1.1x", pass: same && ts / py <= 1.1 });

    // (b) one call: cached jitted pyCall and eager callMethod, against the echo.
    const x = (await jb.put(rows(1, SHAPE.in_size).reshape([SHAPE.in_size]))) as DeviceArray;
    const small = Buffer.alloc(64, 1);
    const echo = await time(() => e.echo([small]), { warmup: 200, runs: 2000 });
    const apply = jit((m: RemoteModule, v: DeviceArray) => pyCall<Tracer>(m, v));
    const jitted = await time(async () => ((await apply(model, x)) as DeviceArray).dispose(), { warmup: 100, runs: 2000 });
    const eager = await time(async () => (await jb.callMethod<DeviceArray>(model, "__call__", x)).dispose(), { warmup: 50, runs: 500 });
    ctx.rows.push({ name: "bare zmq echo, 64 B", value: fmtUs(echo.medianUs), ratio: "1.00x" });
    ctx.rows.push({ name: "one MLP call: jitted pyCall (6 weight handles + x in, hash only)", value: fmtUs(jitted.medianUs), ratio: fmtRatio(jitted.medianUs / echo.medianUs) });
    ctx.rows.push({ name: "one MLP call: eager callMethod (module rebuilt from handles)", value: fmtUs(eager.medianUs), ratio: fmtRatio(eager.medianUs / echo.medianUs) });
    ctx.rows.push({ name: `  (per scan step: ${(ts / STEPS).toFixed(2)} µs traced vs ${fmtUs(eager.medianUs)} per eager call)`, value: "" });
    x.dispose();
    xs.dispose();
    key.dispose();
  } finally {
    e.close();
    await jb.close();
  }
}
