/**
 * One soak client (test/soak/soak.ts starts four): a session on the shared
 * tcp+CURVE sidecar doing puts, gets, calls and jits with callbacks, every
 * result checked against the same computation done here, and every array it
 * holds checked again and again (an array that comes back different, or
 * not at all, is lost). It reports to the driver over IPC; the driver kills
 * and pauses it.
 */
import { NDArray, array, callbackWrapper, connect, filterScan, jit, jnp, type DeviceArray } from "../../src/index.js";
import type { Tracer } from "../../src/trace/tracer.js";
import type { CurveClientKeys } from "../../src/wire/transport.js";

interface Report {
  kind: "report";
  requests: number;
  failed: { op: string; error: string }[];
  inFlight: number;
  checked: number;
  lost: string[];
  callbacks: number;
  done?: boolean;
}

const url = process.env.SOAK_URL!;
const curve = JSON.parse(process.env.SOAK_CURVE!) as CurveClientKeys;
const seconds = Number(process.env.SOAK_WORKER_SECONDS ?? 60);
const seed = Number(process.env.SOAK_SEED ?? 1);

let state = seed;
const rand = (): number => {
  state = (state * 1103515245 + 12345) % 2147483648;
  return state / 2147483648;
};

const SIZES = [1, 3, 64, 257, 1000, 4096];
const report: Report = { kind: "report", requests: 0, failed: [], inFlight: 0, checked: 0, lost: [], callbacks: 0 };
const send = () => process.send?.({ ...report, failed: report.failed.splice(0), lost: report.lost.splice(0) });

const jb = await connect({ url, curve, heartbeatMs: 1000, reconnectGraceMs: 60_000 });
const ledger = new Map<DeviceArray, NDArray>();

function sameBytes(a: NDArray, b: NDArray): boolean {
  return Buffer.compare(Buffer.from(a.bytes()), Buffer.from(b.bytes())) === 0;
}

async function step<T>(op: string, fn: () => Promise<T>): Promise<T | undefined> {
  report.requests++;
  report.inFlight++;
  try {
    return await fn();
  } catch (e) {
    report.failed.push({ op, error: `${(e as Error).name}: ${(e as Error).message.split("\n")[0]}` });
    return undefined;
  } finally {
    report.inFlight--;
  }
}

let seen = 0;
const cb = callbackWrapper((row: NDArray) => {
  seen++;
  void row;
}, { ordered: true });
const scanned = jit(
  (xs: Tracer) =>
    filterScan(
      (c: Tracer, row: Tracer) => {
        cb(row);
        return [c.add(jnp.sum(row)), null] as const;
      },
      jnp.zeros([], "float32"),
      xs,
    )[0],
  { session: jb, fetch: true },
);

async function verifyAll(): Promise<void> {
  for (const [dev, host] of [...ledger]) {
    const got = await step("get", () => dev.toHost());
    report.checked++;
    if (got === undefined || !sameBytes(got, host)) report.lost.push(`handle ${dev.handle}`);
  }
}

const t0 = Date.now();
const ticker = setInterval(send, 1000);
let lastVerify = Date.now();
while (Date.now() - t0 < seconds * 1000) {
  const r = rand();
  const entries = [...ledger];
  if (r < 0.3 || entries.length === 0) {
    // A few sizes, so the sidecar compiles a bounded set of programs and its memory can settle.
    const n = SIZES[Math.floor(rand() * SIZES.length)]!;
    const host = array(Array.from({ length: n }, () => rand() * 100 - 50), "float32", [n]);
    const dev = await step("put", () => jb.put(host));
    if (dev) ledger.set(dev as DeviceArray, host);
  } else if (r < 0.5) {
    const [dev, host] = entries[Math.floor(rand() * entries.length)]!;
    const got = await step("get", () => dev.toHost());
    report.checked++;
    if (got === undefined || !sameBytes(got, host)) report.lost.push(`handle ${dev.handle}`);
  } else if (r < 0.75) {
    const [dev, host] = entries[Math.floor(rand() * entries.length)]!;
    const out = await step("call", () => jb.call<DeviceArray>("jax.numpy.multiply", dev, 2));
    if (out) {
      const got = await step("get", () => out.toHost());
      const want = new NDArray(Float32Array.from(host.data as Float32Array, (v) => v * 2), host.shape, "float32");
      if (got && !sameBytes(got, want)) report.failed.push({ op: "call", error: "wrong result" });
      out.dispose();
    }
  } else if (r < 0.9) {
    const rows = [5, 17, 64][Math.floor(rand() * 3)]!;
    const xs = array(Array.from({ length: rows * 3 }, () => Math.round(rand() * 10)), "float32", [rows, 3]);
    const before = seen;
    const out = await step("jit+callbacks", () => scanned(xs as unknown as Tracer));
    if (out !== undefined) {
      report.callbacks += seen - before;
      let want = 0;
      for (const v of xs.data as Float32Array) want += v;
      if (seen - before !== rows || Math.abs(Number((out as NDArray).toList()) - want) > 1e-3) report.failed.push({ op: "jit+callbacks", error: `${seen - before} callbacks for ${rows} rows, sum ${String((out as NDArray).toList())} for ${want}` });
    }
  } else if (entries.length > 8) {
    const [dev] = entries[Math.floor(rand() * entries.length)]!;
    ledger.delete(dev);
    dev.dispose();
  }
  if (Date.now() - lastVerify > 20_000) {
    await verifyAll();
    lastVerify = Date.now();
  }
}
await verifyAll();
clearInterval(ticker);
report.done = true;
send();
await jb.close();
process.exit(0);
