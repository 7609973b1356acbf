import { Dealer } from "zeromq";
import { NDArray, array, jit, type DeviceArray, type Session, type Tracer } from "../../src/index.js";
import { MAX_FRAME_BYTES } from "../../src/internal.js";
import { fmtRatio, fmtUs, time } from "../measure.js";
import type { Row } from "../run.js";

export const SIZES_MIB = [1, 16, 64, 256];

/** Round trip of the same frames through the sidecar process's bare echo socket. */
export async function echoer(url: string): Promise<{ echo(frames: Buffer[]): Promise<Buffer[]>; close(): void }> {
  const sock = new Dealer({ sendHighWaterMark: 0, receiveHighWaterMark: 0, linger: 0 });
  sock.connect(url);
  return {
    async echo(frames) {
      await sock.send(frames);
      return (await sock.receive()) as Buffer[];
    },
    close: () => sock.close(),
  };
}

export function chunks(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += MAX_FRAME_BYTES) out.push(bytes.subarray(at, at + MAX_FRAME_BYTES));
  return out;
}

export async function wireSection(ctx: { jb: Session; echoUrl: string; rows: Row[] }): Promise<void> {
  const { jb, rows } = ctx;
  const e = await echoer(ctx.echoUrl);
  try {
    // Small messages: a bare echo of a call-sized envelope vs real calls.
    const small = Buffer.alloc(64, 1);
    const echoSmall = await time(() => e.echo([small]), { warmup: 200, runs: 3000 });
    rows.push({ name: "bare zmq echo, 64 B", value: fmtUs(echoSmall.medianUs), ratio: "1.00x" });
    const ping = await time(() => jb.ping(), { warmup: 200, runs: 3000 });
    rows.push({ name: "ping op (envelope only)", value: fmtUs(ping.medianUs), ratio: fmtRatio(ping.medianUs / echoSmall.medianUs) });
    const one = (await jb.put(array([1], "float32"))) as DeviceArray;
    const call = await time(
      async () => {
        const r = await jb.call<DeviceArray>("jax.numpy.negative", one);
        r.dispose();
      },
      { warmup: 200, runs: 2000 },
    );
    rows.push({ name: "small cached call (jnp.negative, handle in/out)", value: fmtUs(call.medianUs), ratio: fmtRatio(call.medianUs / echoSmall.medianUs), goal: "≤ 1.5x", pass: call.medianUs <= 1.5 * echoSmall.medianUs });
    // A cached jit call of a tiny program: `run` by hash, a handle in and out.
    const neg = jit((x: Tracer) => x.neg());
    (await neg(one)).dispose();
    const jitCall = await time(
      async () => {
        const r = await neg(one);
        r.dispose();
      },
      { warmup: 200, runs: 2000 },
    );
    rows.push({ name: "small cached jit call (x.neg(), run by hash)", value: fmtUs(jitCall.medianUs), ratio: fmtRatio(jitCall.medianUs / echoSmall.medianUs), goal: "≤ 1.5x", pass: jitCall.medianUs <= 1.5 * echoSmall.medianUs });
    one.dispose();

    for (const mib of SIZES_MIB) {
      const n = (mib * 1024 * 1024) / 4;
      const a = new NDArray(new Float32Array(n).fill(1.5), [n], "float32");
      const bytes = Buffer.from(a.bytes());
      const runs = mib >= 64 ? 5 : 15;
      const echo = await time(() => e.echo(chunks(bytes)), { warmup: 1, runs });
      const putGet = await time(
        async () => {
          const d = await jb.put(a);
          await d.toHost();
          d.dispose();
        },
        { warmup: 1, runs },
      );
      // put+get moves the bytes there and back, as the echo does.
      rows.push({ name: `${mib} MiB bare echo (there and back)`, value: fmtUs(echo.medianUs), ratio: `${((2 * mib) / (echo.medianUs / 1e6) / 1024).toFixed(2)} GiB/s` });
      rows.push({ name: `${mib} MiB put+get`, value: fmtUs(putGet.medianUs), ratio: fmtRatio(putGet.medianUs / echo.medianUs), goal: "≤ 1.5x", pass: putGet.medianUs <= 1.5 * echo.medianUs });
      (ctx as { bulk?: Record<number, number> }).bulk ??= {};
      (ctx as unknown as { bulk: Record<number, number> }).bulk[mib] = putGet.medianUs;
    }
    (ctx as { callUs?: number }).callUs = call.medianUs;
  } finally {
    e.close();
  }
}
