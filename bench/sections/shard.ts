/**
 * Collectives: one `psum` over a 4-device mesh (1 process × 4 forced CPU
 * devices), called from TypeScript as a cached `jit(shardMap(...))` on a
 * sharded DeviceArray, against the same `jax.jit(jax.shard_map(psum))`
 * called in Python inside the sidecar process (`bench_psum`, timed call by
 * call there). The difference is what the bridge costs per collective
 * call: a request, a hash lookup, the reply with the result's handle and
 * layout. Two sizes: 8 floats per device (the call's fixed cost) and
 * 1 MiB per device (the collective itself dominates). The goal: the
 * bridge's share of a collective call is at most 1.5x its share of a
 * plain cached jit call on one device (measured here too, in the same
 * run), i.e. sharded arrays and collectives add little to what every call
 * costs.
 *
 * Runs on a sidecar of its own, started with `numCpuDevices: 4` and
 * JAXBRIDGE_BENCH_OPS=1 for the bench-only `bench_psum` op.
 */
import { connect, jit, jnp, lax, NDArray, sharding, shardMap, type DeviceArray, type Tracer } from "../../src/index.js";
import { benchOp, fmtRatio, fmtUs, median, time } from "../measure.js";
import type { Row } from "../run.js";

const ROUNDS = 5;
const CALLS = 200;
const GOAL = 1.5;

export async function shardSection(ctx: { rows: Row[] }): Promise<void> {
  const jb = await connect({ numCpuDevices: 4, env: { JAXBRIDGE_BENCH_OPS: "1" } });
  try {
    const mesh = jb.makeMesh([4], ["x"]);
    const row = new sharding.NamedSharding(mesh, sharding.P("x"));
    const psum = jit(shardMap((b: Tracer) => lax.psum(b, "x"), { mesh, inSpecs: sharding.P("x"), outSpecs: sharding.P() }), { session: jb });

    // The fixed cost of any cached call through the bridge: x + 1 on one device.
    const one = (await jb.put(new NDArray(new Float32Array(8), [8], "float32"))) as DeviceArray;
    const inc = jit((a: Tracer) => jnp.add(a, 1), { session: jb });
    const plain = (await time(async () => ((await inc(one as never)) as DeviceArray).dispose(), { warmup: 100, runs: ROUNDS * CALLS })).medianUs;
    one.dispose();
    ctx.rows.push({ name: "cached jit call on one device (x + 1, 8 f32): the bridge's fixed cost per call", value: fmtUs(plain) });
    for (const [perDevice, label] of [
      [8, "8 f32 per device"],
      [262_144, "1 MiB per device"],
    ] as const) {
      const data = new Float32Array(perDevice * 4);
      for (let i = 0; i < data.length; i++) data[i] = Math.sin(i);
      const x = (await jb.devicePut(new NDArray(data, [data.length], "float32"), row)) as DeviceArray;
      const python = (calls: number) => benchOp<{ seconds: number[]; out: NDArray }>(jb, "bench_psum", { x, repeats: calls }, { timeoutMs: 600_000 });
      const ours = async () => ((await psum(x as never)) as DeviceArray).dispose();

      // Compile both (excluded) and check that they compute the same bits.
      const first = (await psum(x as never)) as DeviceArray;
      const ref = await python(1);
      const same = Buffer.compare(Buffer.from((await first.toHost()).bytes()), Buffer.from(ref.out.bytes())) === 0;
      first.dispose();

      // Interleaved rounds, so that drift on a shared machine hits both alike.
      const pyUs: number[] = [];
      const tsUs: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        pyUs.push(...(await python(CALLS)).seconds.map((s) => s * 1e6));
        for (let i = 0; i < CALLS; i++) {
          const t0 = performance.now();
          await ours();
          tsUs.push((performance.now() - t0) * 1000);
        }
      }
      const py = median(pyUs);
      const ts = median(tsUs);
      const share = Math.max(0, ts - py);
      ctx.rows.push({ name: `psum over 4 devices, ${label}: jax.jit(jax.shard_map) in the sidecar`, value: fmtUs(py), ratio: "1.00x" });
      ctx.rows.push({ name: `  the same from TypeScript: jit(shardMap(lax.psum)) on a DeviceArray${same ? "; same bits" : "; RESULTS DIFFER"}`, value: fmtUs(ts), ratio: fmtRatio(ts / py) });
      ctx.rows.push({
        name: "  the bridge's share per collective call, against a one-device call's",
        value: fmtUs(share),
        ratio: fmtRatio(share / plain),
        goal: `≤ ${GOAL}x: ${share / plain <= GOAL && same ? "pass" : "FAIL"}`,
      });
      x.dispose();
    }
  } finally {
    await jb.close();
  }
}
