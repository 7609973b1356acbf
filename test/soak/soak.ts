/**
 * `npm run soak` (issue 13): four client processes (test/soak/worker.ts) on
 * one tcp+CURVE sidecar under `serve`'s supervisor, doing puts, calls and
 * jits with callbacks, while this driver injects random faults: a client
 * killed (and replaced), a client paused (SIGSTOP, then SIGCONT within the
 * reconnect grace), a malformed message from a raw CURVE peer. It prints one
 * table: requests served, faults injected, sidecar restarts, calls failed
 * (only calls hit by a fault may fail: those in flight in a killed client),
 * arrays lost (must be zero), the sidecar's memory at start and end.
 * Bounded: SOAK_SECONDS (default 150) of load, then a drain. Exits non-zero
 * if a call failed without a fault, an array was lost, or the sidecar
 * restarted.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Dealer } from "zeromq";
import * as msgpack from "msgpackr";
import { connect, type Session } from "../../src/index.js";
import { SidecarRestartedError } from "../../src/values/errors.js";
import { encode } from "../../src/wire/protocol.js";
import { makeKeys, startSidecar } from "../conformance/support.js";

const SECONDS = Number(process.env.SOAK_SECONDS ?? 150);
const WORKERS = 4;
const seed = Number(process.env.SOAK_SEED ?? 13);
let state = seed;
const rand = (): number => {
  state = (state * 1103515245 + 12345) % 2147483648;
  return state / 2147483648;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;

interface Tally {
  requests: number;
  failed: { op: string; error: string }[];
  checked: number;
  lost: string[];
  callbacks: number;
  lostInKilled: number;
}
const tally: Tally = { requests: 0, failed: [], checked: 0, lost: [], callbacks: 0, lostInKilled: 0 };
const faults = { killed: 0, paused: 0, malformed: 0, malformedAnswered: 0 };

const keys = await makeKeys();
const sidecar = await startSidecar([
  "--endpoint", "tcp://127.0.0.1:*",
  "--curve-secret-key", keys.serverSecret,
  "--authorized-keys", keys.authorized,
  "--disconnect-grace-seconds", "15",
  "--max-run-seconds", "120",
]);
const workerFile = fileURLToPath(new URL("./worker.ts", import.meta.url));

interface WorkerReport {
  requests: number;
  failed: Tally["failed"];
  inFlight: number;
  checked: number;
  lost: string[];
  callbacks: number;
  done?: boolean;
}

interface Worker {
  proc: ChildProcess;
  inFlight: number;
  done: boolean;
  exited: Promise<void>;
  last?: WorkerReport;
}

function startWorker(n: number, seconds: number): Worker {
  const proc = spawn(process.execPath, ["--import", "tsx", workerFile], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    env: { ...process.env, SOAK_URL: sidecar.url, SOAK_CURVE: JSON.stringify(keys.client), SOAK_WORKER_SECONDS: String(seconds), SOAK_SEED: String(seed * 100 + n), JAXBRIDGE_QUIET: "1" },
  });
  const w: Worker = { proc, inFlight: 0, done: false, exited: new Promise((r) => proc.once("exit", () => r())) };
  proc.on("message", (m: WorkerReport) => {
    // Failures and losses arrive once each; the counters are running totals.
    tally.failed.push(...m.failed);
    tally.lost.push(...m.lost);
    w.inFlight = m.inFlight;
    w.done = m.done === true;
    w.last = m;
  });
  return w;
}

/** A client's running totals, added once it is gone (killed or finished). */
function addTotals(w: Worker): void {
  if (w.last) {
    tally.requests += w.last.requests;
    tally.checked += w.last.checked;
    tally.callbacks += w.last.callbacks;
  }
}

/** Malformed messages from a raw peer with a valid key: each must get an error reply (or a disconnect), never a crash. */
async function malformed(): Promise<boolean> {
  const sock = new Dealer({ linger: 0, curveServerKey: keys.client.serverPublicKey, curvePublicKey: keys.client.publicKey, curveSecretKey: keys.client.secretKey, receiveTimeout: 20_000 });
  sock.connect(sidecar.url);
  const cases: Buffer[][] = [
    [Buffer.from([0xc1, 0x99, 0x00])],
    [msgpack.pack({ id: 7, op: "put", value: [] }), ...Array.from({ length: 2000 }, () => Buffer.from("x"))],
    [msgpack.pack({ id: 8, op: "call", fn: "jax.lax.iota", args: ["float32", 2 ** 40], kwargs: {} })],
    [msgpack.pack({ id: 9, op: "call", fn: "jax.lax.add_p.def_impl", args: [], kwargs: {} })],
    [nestedModules(400)],
    encode({ id: 10, op: "teleport" }),
  ];
  const c = cases[Math.floor(rand() * cases.length)]!;
  try {
    await sock.send(c);
    const [head] = await sock.receive();
    const env = msgpack.unpack(head!) as { ok?: boolean };
    return env.ok === false;
  } catch {
    return false;
  } finally {
    sock.close();
  }
}

function nestedModules(depth: number): Buffer {
  const ext = (type: number, payload: Buffer): Buffer => {
    const head = payload.length < 256 ? Buffer.from([0xc7, payload.length, type]) : payload.length < 65536 ? Buffer.from([0xc8, payload.length >> 8, payload.length & 255, type]) : (() => {
      const b = Buffer.alloc(6);
      b[0] = 0xc9;
      b.writeUInt32BE(payload.length, 1);
      b[5] = type;
      return b;
    })();
    return Buffer.concat([head, payload]);
  };
  let p: Buffer = msgpack.pack(["k", {}]);
  for (let i = 0; i < depth; i++) p = Buffer.concat([Buffer.from([0x92]), msgpack.pack("k"), Buffer.from([0x81]), msgpack.pack("f"), ext(4, p)]);
  return Buffer.concat([Buffer.from([0x83]), msgpack.pack("id"), msgpack.pack(11), msgpack.pack("op"), msgpack.pack("ping"), msgpack.pack("v"), ext(4, p)]);
}

const t0 = Date.now();
let monitor: Session = await connect({ url: sidecar.url, curve: keys.client });
const instance = monitor.instance;
let restarts = 0;
const rssStart = (await monitor.stats()).rss;
let rssPeak = rssStart;
let rssWarm = 0;
const WARM_SECONDS = 20;
const watch = setInterval(() => {
  monitor
    .stats()
    .then((st) => {
      rssPeak = Math.max(rssPeak, st.rss);
      if (rssWarm === 0 && Date.now() - t0 > WARM_SECONDS * 1000) rssWarm = st.rss;
    })
    .catch(async (e: unknown) => {
      if (e instanceof SidecarRestartedError) {
        restarts++;
        monitor = await connect({ url: sidecar.url, curve: keys.client });
      }
    });
}, 1000);

const workers: Worker[] = [];
for (let i = 0; i < WORKERS; i++) workers.push(startWorker(i, SECONDS));
let spawned = WORKERS;

console.log(`soak: ${WORKERS} clients for ${SECONDS} s against ${sidecar.url} (tcp+CURVE, supervised)`);
while (Date.now() - t0 < (SECONDS - 25) * 1000) {
  await sleep(4000 + rand() * 6000);
  const kind = rand();
  const i = Math.floor(rand() * workers.length);
  const w = workers[i]!;
  if (kind < 0.3 && !w.done) {
    faults.killed++;
    tally.lostInKilled += w.inFlight;
    w.proc.kill("SIGKILL");
    await w.exited;
    addTotals(w);
    const left = Math.max(30, SECONDS - (Date.now() - t0) / 1000);
    workers[i] = startWorker(spawned++, left);
    console.log(`  ${((Date.now() - t0) / 1000).toFixed(0)} s: killed a client (${w.inFlight} calls in flight)`);
  } else if (kind < 0.65 && !w.done) {
    faults.paused++;
    const ms = 2000 + rand() * 8000;
    w.proc.kill("SIGSTOP");
    await sleep(ms);
    w.proc.kill("SIGCONT");
    console.log(`  ${((Date.now() - t0) / 1000).toFixed(0)} s: paused a client for ${(ms / 1000).toFixed(1)} s`);
  } else {
    faults.malformed++;
    if (await malformed()) faults.malformedAnswered++;
    console.log(`  ${((Date.now() - t0) / 1000).toFixed(0)} s: sent a malformed message`);
  }
}
await Promise.all(workers.map((w) => w.exited));
for (const w of workers) addTotals(w);
clearInterval(watch);

// Drain: the killed clients' sessions end after the disconnect grace; then memory is compared.
const drainStart = Date.now();
let st = await monitor.stats();
while (st.sessions > 1 && Date.now() - drainStart < 60_000) {
  await sleep(1000);
  st = await monitor.stats();
}
const served = st.requests;
const rssEnd = st.rss;
if (monitor.instance !== instance && restarts === 0) restarts++;
await monitor.close();
await sidecar.stop();
keys.cleanup();

const faultFailures = tally.lostInKilled;
const unexplained = tally.failed;
const rows: [string, string][] = [
  ["duration", `${((Date.now() - t0) / 1000).toFixed(0)} s (${SECONDS} s of load, then a drain)`],
  ["requests served (sidecar)", String(served)],
  ["requests made by the clients", String(tally.requests)],
  ["callbacks delivered", String(tally.callbacks)],
  ["faults injected", `${faults.killed + faults.paused + faults.malformed} (${faults.killed} clients killed, ${faults.paused} paused, ${faults.malformed} malformed messages, ${faults.malformedAnswered} answered with an error)`],
  ["sidecar restarts", String(restarts)],
  ["calls failed", `${faultFailures + unexplained.length} (${faultFailures} in flight in killed clients; ${unexplained.length} others)`],
  ["arrays checked", String(tally.checked)],
  ["arrays lost", String(tally.lost.length)],
  ["sessions left after drain", String(st.sessions - 1)],
  ["sidecar memory (RSS)", `start ${mib(rssStart)}, after ${WARM_SECONDS} s of load ${mib(rssWarm)}, peak ${mib(rssPeak)}, end (all clients gone) ${mib(rssEnd)}`],
];
console.log("\n| soak | result |\n|---|---|");
for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
for (const f of unexplained.slice(0, 10)) console.log(`unexplained failure: ${f.op}: ${f.error}`);
for (const l of tally.lost.slice(0, 10)) console.log(`lost: ${l}`);
process.exit(unexplained.length || tally.lost.length || restarts ? 1 : 0);
