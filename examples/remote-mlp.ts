/**
 * A model kept in Python, orchestrated from TypeScript, saved and loaded:
 *
 * 1. build two equinox MLPs in the sidecar (`equinox.nn.MLP`): an online
 *    network and a target copy;
 * 2. run them inside one traced `filterScan` over a batch of observations:
 *    each step calls both networks' `__call__` in Python (`pyCall`) and moves
 *    the target towards the online network by `polyakAverage`, so the
 *    target's weights are a scan carry;
 * 3. serialize both with lerax's file layout (fingerprint + equinox leaves);
 * 4. close the session (and its embedded sidecar), start a fresh one, load
 *    both files into freshly built skeletons and check that they give the
 *    same outputs.
 *
 * `node --import tsx examples/remote-mlp.ts [--json] [--dir DIR]`. With
 * `--json` the last line holds the numbers and file paths that
 * test/examples.test.ts checks against equinox and lerax in Python.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  array,
  connect,
  deserializeRemote,
  filterScan,
  kw,
  polyakAverage,
  pyCall,
  serializeRemote,
  type DeviceArray,
  type NDArray,
  type RemoteModule,
  type Session,
  type Tracer,
} from "../src/index.js";

const SHAPE = { in_size: 4, out_size: 2, width_size: 16, depth: 2 };
const TAU = 0.1;
const STEPS = 8;

interface Carry {
  online: RemoteModule;
  target: RemoteModule;
}

/** One step of the scan: both networks on the observation, then the Polyak update. */
function step(c: Carry, x: Tracer): readonly [Carry, { online: Tracer; target: Tracer }] {
  const y = pyCall<Tracer>(c.online, x);
  const yt = pyCall<Tracer>(c.target, x);
  const target = polyakAverage(c.online, c.target, TAU) as unknown as RemoteModule;
  return [{ online: c.online, target }, { online: y, target: yt }] as const;
}

/** A network's outputs on a batch, one `__call__` per row inside a scan. */
async function outputs(model: RemoteModule, xs: NDArray): Promise<number[][]> {
  const [, ys] = await filterScan((m: RemoteModule, x: Tracer) => [m, pyCall<Tracer>(m, x)] as const, model, xs);
  const host = await (ys as DeviceArray).toHost();
  return host.toList() as number[][];
}

async function mlp(jb: Session, seed: number): Promise<RemoteModule> {
  const eqxnn = await jb.import("equinox.nn");
  const key = await jb.call<DeviceArray>("jax.random.PRNGKey", seed);
  try {
    return (await eqxnn.MLP(kw({ ...SHAPE, key }))) as RemoteModule;
  } finally {
    key.dispose();
  }
}

function observations(rows: number, phase: number): NDArray {
  const data: number[][] = [];
  for (let i = 0; i < rows; i++) data.push([0, 1, 2, 3].map((j) => Math.sin(phase + 0.7 * i + 1.3 * j)));
  return array(data, "float32");
}

const json = process.argv.includes("--json");
const dirFlag = process.argv.indexOf("--dir");
const dir = dirFlag > 0 ? process.argv[dirFlag + 1]! : await mkdtemp(join(tmpdir(), "jaxbridge-remote-mlp-"));
const xs = observations(STEPS, 0);
const probes = observations(3, 0.5);
// A remote sidecar (JAXBRIDGE_URL) must be started with `--allow equinox.nn`.
const options = () => (process.env.JAXBRIDGE_URL ? { url: process.env.JAXBRIDGE_URL } : { allow: ["equinox.nn"] });

let before: { online: number[][]; target: number[][] };
let scanned: { online: number[][]; target: number[][] };
let paths: { online: string; target: string };
{
  const jb = await connect(options());
  try {
    console.log(`remote-mlp: two equinox MLPs ${JSON.stringify(SHAPE)} on ${jb.info.backend} (JAX ${jb.info.jax})`);
    const online = await mlp(jb, 0);
    const target = await mlp(jb, 1);
    const [c, ys] = await filterScan(step, { online, target }, xs);
    const carry = c as unknown as Carry;
    const y = ys as unknown as { online: DeviceArray; target: DeviceArray };
    scanned = { online: (await y.online.toHost()).toList() as number[][], target: (await y.target.toHost()).toList() as number[][] };
    console.log(`scan: ${STEPS} steps, each calling both networks in Python and Polyak-averaging the target (tau ${TAU})`);
    paths = {
      online: await serializeRemote(jb, carry.online, join(dir, "online")),
      target: await serializeRemote(jb, carry.target, join(dir, "target")),
    };
    console.log(`saved ${paths.online} and ${paths.target}`);
    before = { online: await outputs(carry.online, probes), target: await outputs(carry.target, probes) };
  } finally {
    await jb.close();
  }
}

let after: { online: number[][]; target: number[][] };
{
  const jb = await connect(options());
  try {
    // Skeletons built with the same constructor arguments (any key: the file overwrites every leaf).
    const online = await deserializeRemote(jb, paths.online, await mlp(jb, 42));
    const target = await deserializeRemote(jb, paths.target, await mlp(jb, 42));
    after = { online: await outputs(online, probes), target: await outputs(target, probes) };
  } finally {
    await jb.close();
  }
}

const same = JSON.stringify(before) === JSON.stringify(after);
// With JAXBRIDGE_URL the second session reaches the same sidecar; embedded, it is a new process.
const fresh = process.env.JAXBRIDGE_URL ? "fresh session" : "fresh sidecar";
console.log(`${fresh}: loaded both files; outputs on ${probes.shape[0]} probes ${same ? "are identical" : "DIFFER"}`);
console.log(`online(probe 0) = [${after.online[0]!.map((v) => v.toFixed(6)).join(", ")}], target(probe 0) = [${after.target[0]!.map((v) => v.toFixed(6)).join(", ")}]`);
if (json) console.log(JSON.stringify({ shape: SHAPE, tau: TAU, xs: xs.toList(), probes: probes.toList(), scanned, before, after, paths }));
if (!same) process.exitCode = 1;
