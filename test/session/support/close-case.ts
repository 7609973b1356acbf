/**
 * One way to close a session, run as its own Node process so that the test
 * sees the exit code (test/session/close.test.ts): `node --import tsx
 * close-case.ts <case>`. Prints `pending: <error class>` for the call left
 * running, then `closed in N ms` after `await jb.close()`, and must exit 0
 * on its own: no process.exit here, so an unsettled close() shows as exit code 13.
 */
import { connect } from "../../../src/session/session.js";
import { filterScan } from "../../../src/lerax/utils.js";
import { jnp } from "../../../src/trace/lib/index.js";
import { array } from "../../../src/values/ndarray.js";
import type { Tracer } from "../../../src/trace/tracer.js";

const which = process.argv[2];
const jb = await connect();
const pid = jb.sidecar!.pid!;
console.log(`sidecar ${pid}`);

/** A scan that keeps the sidecar busy for minutes: 5e6 steps of a 128x128 matmul. */
function longScan(): Promise<unknown> {
  const w = array(Array.from({ length: 128 * 128 }, (_, i) => Math.sin(i) / 128), "float32", [128, 128]);
  const body = (c: Tracer): [Tracer, null] => [jnp.tanh(jnp.matmul(c, w)), null];
  return filterScan(body, array(new Float32Array(128).fill(1), "float32"), null, { length: 5_000_000 }) as Promise<unknown>;
}

function settleOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => "resolved",
    (e: unknown) => (e instanceof Error ? e.constructor.name : typeof e),
  );
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let pending: Promise<string> | undefined;
let t0 = 0;
const closing = (): void => void (t0 = performance.now());

switch (which) {
  case "busy":
    pending = settleOf(longScan());
    await sleep(1500);
    closing();
    await jb.close();
    break;
  case "stopped":
    pending = settleOf(jb.call("jax.numpy.arange", 10));
    process.kill(pid, "SIGSTOP");
    closing();
    await jb.close();
    break;
  case "dead":
    process.kill(pid, "SIGKILL");
    closing();
    await jb.close();
    break;
  case "twice": {
    pending = settleOf(longScan());
    await sleep(1500);
    closing();
    await Promise.all([jb.close(), jb.close()]);
    await jb.close();
    break;
  }
  default:
    throw new Error(`unknown case ${which}`);
}
if (pending) console.log(`pending: ${await pending}`);
console.log(`closed in ${Math.round(performance.now() - t0)} ms`);
