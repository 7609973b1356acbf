/**
 * A data-parallel step (linear regression, gradients pmean-ed over a batch
 * axis of 4 devices) on 1 process × 4 CPU devices and on a cluster of
 * 2 processes × 2 devices: weak scaling on one 2-core machine, so the
 * figures are about overhead, not speed-up.
 *
 * Per step from TypeScript, and how much of it is JAX's: the same step
 * looped K times inside one call (a fori_loop in the program) costs
 * K × JAX's step + one call's overhead, so JAX's per-step time is
 * (T(K) − T(1)) / (K − 1), measured through the same processes in the same
 * run. Across processes the step is dominated by gloo's all-reduce over
 * loopback TCP (milliseconds, noisy on a shared machine), so the bridge's
 * share is measured apart: a cached call with no collective (x + 1 on the
 * batch-sharded array), whose time is the bridge's (request, queue, reply;
 * for the cluster one request per process, sent at once) plus JAX's
 * dispatch of a tiny program.
 *
 * Goal: that per-call cost on the cluster is at most 2× one process's (two
 * requests in parallel, waiting for the slower reply).
 *
 * And one collective through the bridge: a psum of 8 floats over the
 * 4 devices of the cluster from TypeScript (`job.jit(shardMap(psum))`)
 * against the same `jax.jit(jax.shard_map(psum))` timed call by call in
 * both sidecars at once (`bench_psum`, in lockstep: it is a collective).
 */
import { cluster, connect, jit, jnp, lax, NDArray, sharding, shardMap, type Tracer } from "../../src/index.js";
import { foriLoopFlat } from "../../src/internal.js";
import { benchOp, fmtRatio, fmtUs, median } from "../measure.js";
import type { Row } from "../run.js";

const K = 20;
const ROUNDS = 5;
const CALLS = 10;
const GOAL = 2;
const ROWS = 64;
const IN = 16;

function local(w: Tracer, b: Tracer, x: Tracer, y: Tracer): [Tracer, Tracer] {
  const err = jnp.subtract(jnp.add(jnp.matmul(x, w), b), y);
  const scale = 2 / x.shape[0]!;
  const g = lax.pmean([jnp.multiply(jnp.matmul(jnp.transpose(x), err), scale), jnp.multiply(jnp.sum(err, { axis: 0 }), scale)], "batch");
  return [jnp.subtract(w, jnp.multiply(g[0]!, 0.01)), jnp.subtract(b, jnp.multiply(g[1]!, 0.01))];
}

function host(): { w: NDArray; b: NDArray; x: NDArray; y: NDArray } {
  const f = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * s));
  return { w: new NDArray(f(IN, 0.3), [IN, 1]), b: new NDArray(f(1, 1), [1]), x: new NDArray(f(ROWS * IN, 0.7), [ROWS, IN]), y: new NDArray(f(ROWS, 1.3), [ROWS, 1]) };
}

/** Median µs of one call of `one` (one step) and of `many` (K steps), interleaved round by round. */
async function measure(one: () => Promise<unknown>, many: () => Promise<unknown>, inc: () => Promise<unknown>): Promise<{ t1: number; tk: number; call: number }> {
  const fns = [one, many, inc];
  for (let i = 0; i < 3; i++) for (const fn of fns) await fn();
  const samples: number[][] = fns.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, fn] of fns.entries()) {
      // The plain call is cheap: take more samples of it.
      for (let i = 0; i < (k === 2 ? 5 * CALLS : CALLS); i++) {
        const t0 = performance.now();
        await fn();
        samples[k]!.push((performance.now() - t0) * 1000);
      }
    }
  }
  const [t1, tk, call] = samples.map(median) as [number, number, number];
  return { t1, tk, call };
}

export async function clusterSection(ctx: { rows: Row[] }): Promise<void> {
  const { NamedSharding, P } = sharding;
  const specs = { inSpecs: [P(), P(), P("batch"), P("batch")], outSpecs: P() };
  const stepBody = (w: Tracer, b: Tracer, x: Tracer, y: Tracer) => local(w, b, x, y);
  const loopBody = (w: Tracer, b: Tracer, x: Tracer, y: Tracer) => foriLoopFlat(0, K, (_i, wc, bc) => local(wc!, bc!, x, y), [w, b]);
  const d = host();

  const results: { t1: number; tk: number; call: number }[] = [];
  const incBody = (x: Tracer) => jnp.add(x, 1);
  const jb = await connect({ numCpuDevices: 4, makeDefault: false });
  try {
    const mesh = jb.makeMesh([4], ["batch"]);
    const [w, b] = (await jb.devicePut([d.w, d.b], new NamedSharding(mesh, P()))) as unknown[];
    const [x, y] = (await jb.devicePut([d.x, d.y], new NamedSharding(mesh, P("batch")))) as unknown[];
    const one = jit(shardMap(stepBody, { mesh, ...specs }), { session: jb });
    const many = jit(shardMap(loopBody, { mesh, ...specs }), { session: jb });
    const inc = jit(incBody, { session: jb });
    const dispose = (r: unknown) => (r as { dispose(): void }[]).forEach((a) => a.dispose());
    results.push(
      await measure(
        async () => dispose(await one(w as never, b as never, x as never, y as never)),
        async () => dispose(await many(w as never, b as never, x as never, y as never)),
        async () => dispose([await inc(x as never)]),
      ),
    );
  } finally {
    await jb.close();
  }

  let psum = { py: 0, ts: 0, same: false };
  const job = await cluster.start({ numProcesses: 2, numCpuDevices: 2, env: { JAXBRIDGE_BENCH_OPS: "1" } });
  try {
    const mesh = job.makeMesh([4], ["batch"]);
    const [w, b] = (await job.devicePut([d.w, d.b], new NamedSharding(mesh, P()))) as cluster.ClusterArray[];
    const [x, y] = (await job.devicePut([d.x, d.y], new NamedSharding(mesh, P("batch")))) as cluster.ClusterArray[];
    const one = job.jit(shardMap(stepBody, { mesh, ...specs }));
    const many = job.jit(shardMap(loopBody, { mesh, ...specs }));
    const inc = job.jit(incBody);
    const dispose = (r: unknown) => (r as cluster.ClusterArray[]).forEach((a) => a.dispose());
    results.push(
      await measure(
        async () => dispose(await one(w, b, x, y)),
        async () => dispose(await many(w, b, x, y)),
        async () => dispose([await inc(x)]),
      ),
    );
    psum = await collective(job, mesh);
  } finally {
    await job.close();
  }

  const [single, multi] = results.map(({ t1, tk, call }) => ({ t1, call, jax: Math.max(0, (tk - t1) / (K - 1)) }));
  ctx.rows.push({ name: "data-parallel step, 1 process x 4 CPU devices: per step from TypeScript", value: fmtUs(single!.t1), ratio: "1.00x" });
  ctx.rows.push({ name: `  of which JAX (the step looped ${K}x in one call)`, value: fmtUs(single!.jax) });
  ctx.rows.push({ name: "the same step, 2 processes x 2 devices (cluster, gloo over loopback)", value: fmtUs(multi!.t1), ratio: fmtRatio(multi!.t1 / single!.t1) });
  ctx.rows.push({ name: `  of which JAX (the step looped ${K}x in one call)`, value: fmtUs(multi!.jax), ratio: fmtRatio(multi!.jax / Math.max(single!.jax, 1e-9)) });
  ctx.rows.push({ name: "a cached call without collectives (x + 1, batch-sharded), 1 process: the bridge's cost per call", value: fmtUs(single!.call), ratio: "1.00x" });
  const ratio = multi!.call / single!.call;
  ctx.rows.push({ name: "  the same call on the cluster (one request per process, at once)", value: fmtUs(multi!.call), ratio: fmtRatio(ratio), goal: `≤ ${GOAL}x: ${ratio <= GOAL ? "pass" : "FAIL"}` });
  ctx.rows.push({ name: "psum over 4 devices on 2 processes, 8 f32: jax.jit(jax.shard_map) in both sidecars", value: fmtUs(psum.py), ratio: "1.00x" });
  ctx.rows.push({ name: `  the same from TypeScript: job.jit(shardMap(lax.psum))${psum.same ? "; same bits" : "; RESULTS DIFFER"}`, value: fmtUs(psum.ts), ratio: fmtRatio(psum.ts / psum.py) });
}

/** Median µs of one psum call: in the sidecars (both at once, call by call) and from TypeScript, in interleaved rounds. */
async function collective(job: cluster.Cluster, mesh: sharding.Mesh): Promise<{ py: number; ts: number; same: boolean }> {
  const { NamedSharding, P } = sharding;
  const data = Float32Array.from({ length: 8 * 4 }, (_, i) => Math.sin(i));
  const x = (await job.devicePut(new NDArray(data, [data.length]), new NamedSharding(mesh, P("batch")))) as cluster.ClusterArray;
  const psum = job.jit(shardMap((b: Tracer) => lax.psum(b, "batch"), { mesh, inSpecs: P("batch"), outSpecs: P() }));
  const python = (calls: number) =>
    Promise.all(job.processes.map((s, i) => benchOp<{ seconds: number[]; out: NDArray }>(s, "bench_psum", { x: x.parts[i], repeats: calls }, { timeoutMs: 600_000 })));
  const first = (await psum(x)) as cluster.ClusterArray;
  const ours = (await job.get(first)) as NDArray;
  first.dispose();
  const [ref] = await python(1);
  const same = Buffer.compare(Buffer.from(ours.bytes()), Buffer.from(ref!.out.bytes())) === 0;
  const pyUs: number[] = [];
  const tsUs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Process 0's own timings: both processes wait for each other in every call.
    pyUs.push(...(await python(5 * CALLS))[0]!.seconds.map((s) => s * 1e6));
    for (let i = 0; i < 5 * CALLS; i++) {
      const t0 = performance.now();
      ((await psum(x)) as cluster.ClusterArray).dispose();
      tsUs.push((performance.now() - t0) * 1000);
    }
  }
  x.dispose();
  return { py: median(pyUs), ts: median(tsUs), same };
}
