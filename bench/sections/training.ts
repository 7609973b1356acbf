/**
 * Training from TypeScript (issue 14):
 *
 * (a) one training step (MLP 32-256-256-10, batch 256, softmax
 *     cross-entropy, `valueAndGrad`, `optax.adam`) 1,000 times inside one
 *     `filterScan`, against the same step jitted in Python inside one
 *     `lax.scan` in the sidecar process (ops/bench.py: bench_train_step,
 *     op for op), compile excluded on both sides; ours includes the round
 *     trip; the ratio is the median of back-to-back rounds' ratios. Goal ≤ 1.05x.
 * (b) the same step called once per step from TypeScript (a cached jitted
 *     program, parameters and Adam state as handles in and out), against a
 *     bare ZeroMQ echo between the same two processes plus the step's own
 *     compute (the jitted step called from Python in the sidecar). Goal ≤ 1.5x.
 * (c) DQN on CartPole (examples/dqn-cartpole.ts, full budget, seed 0) to
 *     solved, against the same algorithm in Python (test/examples/
 *     dqn_cartpole.py), both with their programs compiled beforehand.
 *
 * Both step benchmarks check that TypeScript and Python computed the same
 * bits; a row says "RESULTS DIFFER" otherwise.
 */
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, filterScan, jit, jnp, nn, NDArray, optax, treeLeaves, valueAndGrad, type DeviceArray, type Session, type Tracer } from "../../src/index.js";
import { benchOp, fmtRatio, fmtUs, median, time } from "../measure.js";
import type { Row } from "../run.js";
import { echoer } from "./wire.js";
import { det } from "./trace.js";
import { CONFIG, run as runDqn } from "../../examples/dqn-cartpole.js";

const SIZES = [32, 256, 256, 10];
const BATCH = 256;
const SCAN_STEPS = 1000;
const CALLS = 300;
const REPEATS = 7;

type Params = Record<"w1" | "b1" | "w2" | "b2" | "w3" | "b3", Tracer>;

const opt = optax.adam(1e-3);

/** The step bench_train_step runs in Python (ops/bench.py: train_step_fns), op for op. */
function apply(p: Params, x: Tracer): Tracer {
  const h1 = nn.relu(jnp.add(jnp.matmul(x, p.w1), p.b1));
  const h2 = nn.relu(jnp.add(jnp.matmul(h1, p.w2), p.b2));
  return jnp.add(jnp.matmul(h2, p.w3), p.b3);
}
function loss(p: Params, x: Tracer, y: Tracer): Tracer {
  return jnp.mean(optax.softmaxCrossEntropy(apply(p, x), nn.oneHot(y, SIZES[SIZES.length - 1]!, { dtype: "float32" })));
}
function step(c: { p: Params; s: optax.OptState }, x: Tracer, y: Tracer) {
  const [value, grads] = valueAndGrad(loss)(c.p, x, y) as unknown as [Tracer, Params];
  const [updates, s] = opt.update(grads, c.s, c.p) as unknown as [Params, optax.OptState];
  return [{ p: optax.applyUpdates(c.p, updates) as unknown as Params, s }, value] as const;
}

const sameBits = (a: NDArray[], b: NDArray[]): boolean => a.length === b.length && a.every((x, i) => Buffer.from(x.bytes()).equals(Buffer.from(b[i]!.bytes())));
const verdict = (ratio: number, goal: number): string => (ratio <= goal ? "PASS" : "FAIL");

async function stepBenchmarks(rows: Row[]): Promise<void> {
  const echoUrl = `ipc://${join(mkdtempSync(join(tmpdir(), "jaxbridge-bench-train-")), "echo.sock")}`;
  const jb: Session = await connect({ args: ["--bench-echo", echoUrl], env: { JAXBRIDGE_BENCH_OPS: "1" } });
  const e = await echoer(echoUrl);
  try {
    const host: Record<string, NDArray> = {};
    for (let i = 0; i < 3; i++) {
      host[`w${i + 1}`] = det([SIZES[i]!, SIZES[i + 1]!], 1 / Math.sqrt(SIZES[i]!), 10 + i);
      host[`b${i + 1}`] = det([SIZES[i + 1]!], 0.01, 20 + i);
    }
    const x = det([BATCH, SIZES[0]!], 1, 30);
    const y = new NDArray(Int32Array.from({ length: BATCH }, (_, i) => (i * 7) % SIZES[3]!), [BATCH], "int32");
    const dev = (await jb.put({ params: host, x, y })) as unknown as { params: Params; x: DeviceArray; y: DeviceArray };
    const init = { p: dev.params, s: await opt.init(dev.params) };
    const py = (mode: "scan" | "calls", steps: number, repeats: number) =>
      benchOp<{ seconds: number[]; params: Record<string, NDArray>; losses: NDArray }>(jb, "bench_train_step", { params: dev.params, x: dev.x, y: dev.y, steps, repeats, mode }, { timeoutMs: 600_000 });
    const pyLeaves = (r: { params: Record<string, NDArray> }) => treeLeaves(r.params) as NDArray[];

    // (a) 1,000 steps in one filterScan.
    const body = (c: { p: Params; s: optax.OptState }) => step(c, dev.x as unknown as Tracer, dev.y as unknown as Tracer);
    const ours = async () => (await filterScan(body, init, null, { length: SCAN_STEPS, session: jb })) as unknown as [{ p: Params }, DeviceArray];
    const [first] = await ours(); // compile (excluded)
    const ref = await py("scan", SCAN_STEPS, 1);
    const same = sameBits(treeLeaves(await jb.get(first.p)) as NDArray[], pyLeaves(ref));
    // Rounds of Python then TypeScript back to back; the ratio is the median of the rounds' ratios,
    // so load that drifts on a shared machine hits both sides of a round alike.
    const tsUs: number[] = [];
    const pyUs: number[] = [];
    const ratios: number[] = [];
    for (let round = 0; round < REPEATS; round++) {
      const p = (await py("scan", SCAN_STEPS, 1)).seconds[0]! * 1e6;
      const t0 = performance.now();
      await ours();
      const t = (performance.now() - t0) * 1000;
      pyUs.push(p);
      tsUs.push(t);
      ratios.push(t / p);
    }
    const ts = median(tsUs);
    const native = median(pyUs);
    const ratio = median(ratios);
    rows.push({ name: `train step (MLP ${SIZES.join("-")}, batch ${BATCH}, adam) x${SCAN_STEPS} in lax.scan, Python jitted in the sidecar`, value: fmtUs(native), ratio: "1.00x", goal: "baseline" });
    rows.push({
      name: `  the same from TypeScript, one filterScan (round trip included)${same ? "; same bits" : "; RESULTS DIFFER"}`,
      value: fmtUs(ts),
      ratio: fmtRatio(ratio),
      goal: `≤ 1.05x ${same ? verdict(ratio, 1.05) : "FAIL"}`,
    });
    rows.push({ name: `    (per step ${(ts / SCAN_STEPS).toFixed(1)} µs here, ${(native / SCAN_STEPS).toFixed(1)} µs in Python)`, value: "" });

    // (b) one call per step.
    const jitted = jit(step);
    let c = init;
    for (let i = 0; i < 5; i++) c = ((await jitted(c as never, dev.x as never, dev.y as never)) as unknown as [typeof init])[0]; // compile, warm up
    const perCall: number[] = [];
    c = init;
    for (let i = 0; i < CALLS; i++) {
      const t0 = performance.now();
      const [next] = (await jitted(c as never, dev.x as never, dev.y as never)) as unknown as [typeof init];
      perCall.push((performance.now() - t0) * 1000);
      if (c !== init) for (const l of treeLeaves(c) as DeviceArray[]) l.dispose();
      c = next;
    }
    const callsRef = await py("calls", CALLS, 1);
    const sameCalls = sameBits(treeLeaves(await jb.get(c.p)) as NDArray[], pyLeaves(callsRef));
    const compute = median(callsRef.seconds.map((s) => s * 1e6));
    const echo = (await time(() => e.echo([Buffer.alloc(64, 1)]), { warmup: 200, runs: 2000 })).medianUs;
    const call = median(perCall);
    rows.push({ name: "bare zmq echo, 64 B", value: fmtUs(echo), ratio: "", goal: "baseline" });
    rows.push({ name: "the step jitted in Python, one call (in the sidecar)", value: fmtUs(compute), ratio: "", goal: "baseline" });
    rows.push({
      name: `  one step per call from TypeScript (handles in and out)${sameCalls ? "; same bits" : "; RESULTS DIFFER"}`,
      value: fmtUs(call),
      ratio: `${fmtRatio(call / (echo + compute))} of echo + step`,
      goal: `≤ 1.5x ${sameCalls ? verdict(call / (echo + compute), 1.5) : "FAIL"}`,
    });
  } finally {
    e.close();
    await jb.close();
  }
}

function pythonDqn(python: string): Promise<{ trainSeconds: number; solvedChunk: number | null; envSteps: number; history: number[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [join("test", "examples", "dqn_cartpole.py"), "--time"], { env: { ...process.env, JAX_PLATFORMS: "cpu" }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("close", (code) => (code === 0 ? resolve(JSON.parse(out.trim().split("\n").pop()!)) : reject(new Error(`dqn_cartpole.py exited ${code}: ${err.slice(-2000)}`))));
  });
}

async function cartpole(jb: Session, python: string, rows: Row[]): Promise<void> {
  // Compile every program first (a one-chunk run of another seed: the sidecar keeps programs by hash).
  await runDqn(jb, { ...CONFIG, seed: 1, maxChunks: 1 }, { verbose: false });
  const ours = await runDqn(jb, CONFIG, { verbose: false });
  const theirs = await pythonDqn(python);
  const same = JSON.stringify(ours.history) === JSON.stringify(theirs.history);
  const solved = ours.solvedChunk !== null;
  rows.push({ name: `DQN on CartPole to solved, Python (equinox + optax), seed ${CONFIG.seed}, compiled beforehand`, value: fmtUs(theirs.trainSeconds * 1e6), ratio: "1.00x", goal: "baseline" });
  rows.push({
    name: `  examples/dqn-cartpole.ts from TypeScript${same ? "; same evaluations" : "; RESULTS DIFFER"}`,
    value: fmtUs(ours.trainSeconds * 1e6),
    ratio: fmtRatio(ours.trainSeconds / theirs.trainSeconds),
    goal: `≤ 1.25x ${same ? verdict(ours.trainSeconds / theirs.trainSeconds, 1.25) : "FAIL"}`,
  });
  rows.push({
    name: `  solved at chunk ${ours.solvedChunk ?? "-"} of ${CONFIG.maxChunks}: ${ours.envSteps} env steps, ${ours.updates} updates (mean return ${ours.history[ours.history.length - 1]?.toFixed(1)})`,
    value: "",
    goal: `solve within ${CONFIG.maxChunks * CONFIG.chunkSteps * CONFIG.numEnvs} env steps ${solved ? "PASS" : "FAIL"}`,
  });
}

export async function trainingSection(ctx: { jb: Session; python: string; rows: Row[] }): Promise<void> {
  await stepBenchmarks(ctx.rows);
  await cartpole(ctx.jb, ctx.python, ctx.rows);
}
