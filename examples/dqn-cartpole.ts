/**
 * DQN on CartPole, written entirely in TypeScript and run by JAX in the
 * sidecar:
 *
 * - the environment is jnp code (examples/cartpole.ts, gymnasium's
 *   CartPole-v1 equations), 4 copies stepped together;
 * - the Q-network is a `Module` laid out as `eqx.nn.MLP(4, 2, 128, depth=2)`
 *   and initialised as equinox initialises it;
 * - the replay buffer is a pytree of device arrays (10,000 transitions),
 *   written in place with `lax.dynamicUpdateSlice`;
 * - each learning step is `valueAndGrad` of a Huber TD loss (double DQN:
 *   the online network picks the next action, the target network values
 *   it), `optax.adam`, and a target network that follows by
 *   `polyakAverage`;
 * - training runs in chunks of 250 steps, each chunk one `filterScan` (one
 *   compiled program; later chunks send only its hash), with a callback
 *   every 25 steps that drives a progress bar while the chunk runs;
 * - after every chunk, 100 greedy episodes are evaluated (capped at 200
 *   steps, CartPole-v0's limit, where "solved" means a mean return of at
 *   least 195) and the whole training state is saved with `Serializable`
 *   (atomically, in equinox's format); at the end the checkpoint is loaded
 *   back and evaluated again.
 *
 * Budget: at most 40 chunks (40,000 environment steps, 9,750 updates).
 *
 *   node --import tsx examples/dqn-cartpole.ts [--seed 0] [--chunks 40] [--dir DIR] [--json]
 *
 * With `--json` the last line holds the numbers test/examples.test.ts
 * compares with the same algorithm written in Python with equinox and optax
 * (test/examples/dqn_cartpole.py).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import cliProgress from "cli-progress";
import {
  array,
  callbackWrapper,
  connect,
  filterCond,
  filterScan,
  jit,
  jnp,
  lax,
  nn,
  NDArray,
  optax,
  polyakAverage,
  random,
  Serializable,
  treeLeaves,
  valueAndGrad,
  type DeviceArray,
  type Session,
  type Tracer,
} from "../src/index.js";
import * as cartpole from "./cartpole.js";
import { initMlp, MLP, type Arr } from "./mlp.js";

export interface Config {
  seed: number;
  numEnvs: number;
  hidden: number;
  depth: number;
  bufferSize: number; // transitions; a multiple of numEnvs, so an insert never wraps
  batchSize: number;
  lr: number;
  gamma: number;
  tau: number;
  epsStart: number;
  epsEnd: number;
  epsSteps: number; // scan steps over which epsilon falls linearly
  learningStarts: number; // scan steps before the first update
  chunkSteps: number; // scan steps per chunk (one filterScan call)
  maxChunks: number;
  maxEpisodeSteps: number;
  solveReturn: number;
  evalEpisodes: number;
}

export const CONFIG: Config = {
  seed: 0,
  numEnvs: 4,
  hidden: 128,
  depth: 2,
  bufferSize: 10_000,
  batchSize: 128,
  lr: 1e-3,
  gamma: 0.99,
  tau: 0.01,
  epsStart: 1.0,
  epsEnd: 0.05,
  epsSteps: 2_500,
  learningStarts: 250,
  chunkSteps: 250,
  maxChunks: 40,
  maxEpisodeSteps: 200,
  solveReturn: 195,
  evalEpisodes: 100,
};

// --- the Q-network: eqx.nn.MLP(4, 2, 128, depth=2)'s layout (examples/mlp.ts) -------------------------

const sizesOf = (cfg: Config): number[] => [cartpole.OBS_SIZE, ...Array<number>(cfg.depth).fill(cfg.hidden), cartpole.NUM_ACTIONS];

// --- the replay buffer: a pytree of device arrays ------------------------------------------------

export interface Buffer {
  obs: Arr; // float32 [C, 4]
  action: Arr; // int32 [C]
  reward: Arr; // float32 [C]
  nextObs: Arr; // float32 [C, 4]
  terminated: Arr; // float32 [C]
  ptr: Arr; // int32: where the next block goes
  size: Arr; // int32: how many transitions it holds
}

type Transitions = Omit<Buffer, "ptr" | "size">;

function bufferInit(cfg: Config): Buffer {
  const c = cfg.bufferSize;
  return {
    obs: jnp.zeros([c, cartpole.OBS_SIZE], "float32"),
    action: jnp.zeros([c], "int32"),
    reward: jnp.zeros([c], "float32"),
    nextObs: jnp.zeros([c, cartpole.OBS_SIZE], "float32"),
    terminated: jnp.zeros([c], "float32"),
    ptr: jnp.zeros([], "int32"),
    size: jnp.zeros([], "int32"),
  };
}

/** Write one block of `numEnvs` transitions at `ptr`. */
function bufferAdd(buf: Buffer, t: Transitions, cfg: Config): Buffer {
  const put = (dst: Arr, src: Arr) => lax.dynamicUpdateSlice(dst as Tracer, src as Tracer, [buf.ptr as Tracer, ...Array<number>((src as Tracer).ndim - 1).fill(0)]);
  return {
    obs: put(buf.obs, t.obs),
    action: put(buf.action, t.action),
    reward: put(buf.reward, t.reward),
    nextObs: put(buf.nextObs, t.nextObs),
    terminated: put(buf.terminated, t.terminated),
    ptr: jnp.remainder(jnp.add(buf.ptr, cfg.numEnvs), cfg.bufferSize),
    size: jnp.minimum(jnp.add(buf.size, cfg.numEnvs), cfg.bufferSize),
  };
}

/** A minibatch drawn uniformly (with replacement) from the transitions held. */
function bufferSample(buf: Buffer, key: Tracer, cfg: Config): Transitions {
  const u = random.uniform(key, [cfg.batchSize], { dtype: "float32" });
  const idx = jnp.minimum(jnp.astype(jnp.floor(jnp.multiply(u, buf.size)), "int32"), jnp.subtract(buf.size, 1));
  const take = (x: Arr) => (x as Tracer).get(idx);
  return { obs: take(buf.obs), action: take(buf.action), reward: take(buf.reward), nextObs: take(buf.nextObs), terminated: take(buf.terminated) };
}

// --- learning ---------------------------------------------------------------------------------

/** The Huber TD loss of double DQN: the online network picks the next action, the target network values it. */
function tdLoss(cfg: Config) {
  return function tdLoss(q: MLP, target: MLP, b: Transitions): Tracer {
    const qSa = jnp.sum(jnp.multiply(q.apply(b.obs), nn.oneHot(b.action, cartpole.NUM_ACTIONS, { dtype: "float32" })), { axis: 1 });
    const aStar = jnp.argmax(q.apply(b.nextObs), { axis: 1 });
    const nextV = jnp.sum(jnp.multiply(target.apply(b.nextObs), nn.oneHot(aStar, cartpole.NUM_ACTIONS, { dtype: "float32" })), { axis: 1 });
    const y = lax.stopGradient(jnp.add(b.reward, jnp.multiply(jnp.multiply(cfg.gamma, jnp.subtract(1, b.terminated)), nextV))) as Tracer;
    return jnp.mean(optax.huberLoss(qSa, y, { delta: 1 }));
  };
}

export interface Carry {
  q: MLP;
  target: MLP;
  optState: optax.OptState;
  buffer: Buffer;
  envState: Arr; // float32 [numEnvs, 4]
  envT: Arr; // int32 [numEnvs]: steps into each episode
  epReturn: Arr; // float32 [numEnvs]
  step: Arr; // int32: scan steps so far
  key: Arr;
}

export interface StepStats {
  loss: Tracer; // NaN before learning starts
  epsilon: Tracer;
  done: Tracer; // bool [numEnvs]
  episodeReturn: Tracer; // float32 [numEnvs]: the return of each episode that ended this step, else 0
}

/** Scan steps between two progress reports (a host callback costs about as much as a learning step). */
export const REPORT_EVERY = 25;

/**
 * The pieces of one training run for a configuration: its functions, traced once and compiled once each.
 * Not exported: its inferred type maps the MLP Module's symbol-keyed members, which a declaration file cannot name.
 */
function makeAgent(cfg: Config, report?: (step: NDArray, loss: NDArray) => void) {
  const opt = optax.adam(cfg.lr);
  const loss = tdLoss(cfg);
  const progress = report ? callbackWrapper(report, { ordered: true }) : undefined;
  const n = cfg.numEnvs;

  const init = jit((seedKey: Arr): Carry => {
    const k = random.split(seedKey as Tracer, 3);
    const q = initMlp(k.get(1), sizesOf(cfg));
    return {
      q,
      target: q,
      optState: opt.init(q) as optax.OptState,
      buffer: bufferInit(cfg),
      envState: cartpole.reset(k.get(2), n),
      envT: jnp.zeros([n], "int32"),
      epReturn: jnp.zeros([n], "float32"),
      step: jnp.zeros([], "int32"),
      key: k.get(0),
    };
  });

  const epsilon = (step: Arr): Tracer => {
    const frac = jnp.minimum(jnp.divide(jnp.astype(step, "float32"), cfg.epsSteps), 1);
    return jnp.add(cfg.epsStart, jnp.multiply(frac, cfg.epsEnd - cfg.epsStart));
  };

  const learn = (q: MLP, target: MLP, optState: optax.OptState, buffer: Buffer, key: Tracer) => {
    const batch = bufferSample(buffer, key, cfg);
    const [value, grads] = valueAndGrad(loss)(q, target, batch) as unknown as [Tracer, MLP];
    const [updates, nextState] = opt.update(grads, optState, q) as unknown as [MLP, optax.OptState];
    const q2 = optax.applyUpdates(q, updates) as unknown as MLP;
    return [q2, polyakAverage(q2, target, cfg.tau) as unknown as MLP, nextState, value] as const;
  };
  const skip = (q: MLP, target: MLP, optState: optax.OptState) => [q, target, optState, jnp.asarray(NaN, "float32")] as const;

  function trainStep(c: Carry): readonly [Carry, StepStats] {
    const ks = random.split(c.key as Tracer, 5);
    const obs = c.envState as Tracer;
    const greedy = jnp.astype(jnp.argmax(c.q.apply(obs), { axis: 1 }), "int32");
    const eps = epsilon(c.step);
    const explore = jnp.less(random.uniform(ks.get(1), [n], { dtype: "float32" }), eps);
    const randomAction = jnp.astype(jnp.floor(jnp.multiply(random.uniform(ks.get(2), [n], { dtype: "float32" }), cartpole.NUM_ACTIONS)), "int32");
    const action = jnp.where(explore, randomAction, greedy);
    const { next, reward, terminated } = cartpole.step(obs, action);
    const envT = jnp.add(c.envT, 1);
    const done = jnp.logicalOr(terminated, jnp.greaterEqual(envT, cfg.maxEpisodeSteps));
    const epReturn = jnp.add(c.epReturn, reward);
    const buffer = bufferAdd(c.buffer, { obs, action, reward, nextObs: next, terminated: jnp.astype(terminated, "float32") }, cfg);
    const fresh = cartpole.reset(ks.get(3), n);
    const envState = jnp.where(jnp.expandDims(done, 1), fresh, next);
    const [q, target, optState, value] = filterCond(jnp.greaterEqual(c.step, cfg.learningStarts), learn, skip, c.q, c.target, c.optState, buffer, ks.get(4)) as unknown as [
      MLP,
      MLP,
      optax.OptState,
      Tracer,
    ];
    const episodeReturn = jnp.where(done, epReturn, 0);
    if (progress) {
      filterCond(
        jnp.equal(jnp.remainder(c.step, REPORT_EVERY), 0),
        (step: Tracer, l: Tracer) => {
          progress(step, l);
          return null;
        },
        () => null,
        c.step,
        value,
      );
    }
    const carry: Carry = {
      q,
      target,
      optState,
      buffer,
      envState,
      envT: jnp.where(done, 0, envT),
      epReturn: jnp.where(done, 0, epReturn),
      step: jnp.add(c.step, 1),
      key: ks.get(0),
    };
    return [carry, { loss: value, epsilon: eps, done, episodeReturn }] as const;
  }

  /** Greedy returns of `evalEpisodes` fresh episodes (at most `maxEpisodeSteps` steps each). */
  const evaluate = jit((q: MLP, seedKey: Arr, round: Arr): Tracer => {
    const key = random.foldIn(random.foldIn(seedKey as Tracer, 10_000), round as Tracer);
    const s0 = cartpole.reset(key, cfg.evalEpisodes);
    const body = (c: { s: Tracer; alive: Tracer; ret: Tracer }) => {
      const a = jnp.astype(jnp.argmax(q.apply(c.s), { axis: 1 }), "int32");
      const { next, reward, terminated } = cartpole.step(c.s, a);
      const ret = jnp.add(c.ret, jnp.where(c.alive, reward, 0));
      return [{ s: next, alive: jnp.logicalAnd(c.alive, jnp.logicalNot(terminated)), ret }, null] as const;
    };
    const init0 = { s: s0, alive: jnp.ones([cfg.evalEpisodes], "bool"), ret: jnp.zeros([cfg.evalEpisodes], "float32") };
    const [final] = filterScan(body, init0, null, { length: cfg.maxEpisodeSteps }) as unknown as [{ ret: Tracer }];
    return final.ret;
  });

  return { opt, init, trainStep, evaluate };
}

// --- checkpoints --------------------------------------------------------------------------------

/** The whole training state, saved after every chunk: enough to resume exactly. */
export class Checkpoint extends Serializable {
  q: MLP;
  target: MLP;
  optState: optax.OptState;
  buffer: Buffer;
  envState: Arr;
  envT: Arr;
  epReturn: Arr;
  step: Arr;
  key: Arr;
  /** A checkpoint of `c`; `deserialize(path, like)` reads a file into the shapes of `like`. */
  constructor(c: Carry) {
    super();
    this.q = c.q;
    this.target = c.target;
    this.optState = c.optState;
    this.buffer = c.buffer;
    this.envState = c.envState;
    this.envT = c.envT;
    this.epReturn = c.epReturn;
    this.step = c.step;
    this.key = c.key;
  }

  carry(): Carry {
    const { q, target, optState, buffer, envState, envT, epReturn, step, key } = this;
    return { q, target, optState, buffer, envState, envT, epReturn, step, key };
  }
}

// --- the training loop ----------------------------------------------------------------------------

export interface RunResult {
  /** Mean evaluation return after each chunk. */
  history: number[];
  solvedChunk: number | null;
  envSteps: number;
  updates: number;
  /** Seconds from initialisation to the end (compilation included where a program is new to the sidecar). */
  trainSeconds: number;
  /** Per scan step of every chunk: the loss (null before learning starts). */
  losses: (number | null)[];
  carry: Carry;
  checkpoint: string | null;
}

export interface RunOptions {
  /** Save a checkpoint in this folder after every chunk. */
  dir?: string | null;
  /** Print a line per chunk and drive a progress bar on stderr (default true). */
  verbose?: boolean;
}

export async function run(jb: Session, cfg: Config, opts: RunOptions = {}): Promise<RunResult> {
  const verbose = opts.verbose ?? true;
  const total = cfg.maxChunks * cfg.chunkSteps * cfg.numEnvs;
  const bar = verbose ? new cliProgress.SingleBar({ format: "chunk {chunk} |{bar}| {value}/{total} env steps | epsilon {eps} | loss {loss}", hideCursor: true }, cliProgress.Presets.shades_classic) : undefined;
  // The progress callback runs inside every chunk, every REPORT_EVERY steps (part of the program either way); it feeds the bar when there is one.
  const agent = makeAgent(cfg, (step, loss) => {
    const s = (step.item() as number) + 1;
    const l = loss.item() as number;
    bar?.update(s * cfg.numEnvs, { loss: Number.isNaN(l) ? "-" : l.toFixed(4), eps: Math.max(cfg.epsEnd, cfg.epsStart + Math.min(s / cfg.epsSteps, 1) * (cfg.epsEnd - cfg.epsStart)).toFixed(3) });
  });
  const t0 = performance.now();
  const seedKey = random.keyData(cfg.seed, jb.info.x64);
  let carry = (await agent.init(seedKey)) as unknown as Carry;
  const history: number[] = [];
  const losses: (number | null)[] = [];
  let solvedChunk: number | null = null;
  let checkpoint: string | null = null;
  bar?.start(total, 0, { chunk: 1, loss: "-", eps: cfg.epsStart.toFixed(3) });
  for (let chunk = 1; chunk <= cfg.maxChunks; chunk++) {
    bar?.update({ chunk });
    const [next, stats] = (await filterScan(agent.trainStep, carry, null, { length: cfg.chunkSteps })) as unknown as [Carry, { loss: DeviceArray; done: DeviceArray; episodeReturn: DeviceArray }];
    carry = next;
    const [lossHost, doneHost, returnHost] = await Promise.all([stats.loss.toHost(), stats.done.toHost(), stats.episodeReturn.toHost()]);
    for (const l of lossHost.data as Float32Array) losses.push(Number.isNaN(l) ? null : l);
    const ended = Array.from(returnHost.data as Float32Array).filter((_, i) => (doneHost.data as Uint8Array)[i]);
    const returns = (await agent.evaluate.withOptions({ fetch: true })(carry.q, seedKey, array(chunk - 1, "int32"))) as unknown as NDArray;
    // The mean on the host, in double precision: the returns are integers, their sum is exact.
    const mean = Array.from(returns.data as Float32Array).reduce((a, b) => a + b, 0) / cfg.evalEpisodes;
    history.push(mean);
    if (opts.dir) checkpoint = await new Checkpoint(carry).serialize(join(opts.dir, "checkpoint"));
    if (verbose) {
      bar?.stop();
      const train = ended.length ? `${ended.length} training episodes ended (mean return ${(ended.reduce((a, b) => a + b, 0) / ended.length).toFixed(1)})` : "no training episode ended";
      console.log(`chunk ${chunk}: ${chunk * cfg.chunkSteps * cfg.numEnvs} env steps, ${train}, evaluation mean return ${mean.toFixed(1)} over ${cfg.evalEpisodes} episodes`);
      if (mean < cfg.solveReturn && chunk < cfg.maxChunks) bar?.start(total, chunk * cfg.chunkSteps * cfg.numEnvs, { chunk: chunk + 1 });
    }
    if (mean >= cfg.solveReturn) {
      solvedChunk = chunk;
      break;
    }
  }
  bar?.stop();
  const chunks = solvedChunk ?? cfg.maxChunks;
  return {
    history,
    solvedChunk,
    envSteps: chunks * cfg.chunkSteps * cfg.numEnvs,
    updates: Math.max(0, chunks * cfg.chunkSteps - cfg.learningStarts),
    trainSeconds: (performance.now() - t0) / 1000,
    losses,
    carry,
    checkpoint,
  };
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const cfg: Config = { ...CONFIG, seed: Number(argValue("--seed") ?? CONFIG.seed), maxChunks: Number(argValue("--chunks") ?? CONFIG.maxChunks) };
  const json = process.argv.includes("--json");
  const dir = argValue("--dir") ?? mkdtempSync(join(tmpdir(), "dqn-cartpole-"));
  const jb = await connect(process.env.JAXBRIDGE_URL ? { url: process.env.JAXBRIDGE_URL } : {});
  try {
    console.log(
      `dqn-cartpole: DQN (double, Huber, adam ${cfg.lr}, Polyak tau ${cfg.tau}) on ${cfg.numEnvs} CartPoles, seed ${cfg.seed}, ` +
        `budget ${cfg.maxChunks} chunks x ${cfg.chunkSteps * cfg.numEnvs} env steps, on ${jb.info.backend} (JAX ${jb.info.jax})`,
    );
    const r = await run(jb, cfg, { dir, verbose: true });
    if (r.solvedChunk !== null) {
      console.log(`solved at chunk ${r.solvedChunk}: ${r.envSteps} env steps, ${r.updates} updates, mean return ${r.history[r.history.length - 1]!.toFixed(1)} >= ${cfg.solveReturn}, ${r.trainSeconds.toFixed(1)} s`);
    } else console.log(`not solved within ${cfg.maxChunks} chunks (${r.envSteps} env steps); best mean return ${Math.max(...r.history).toFixed(1)}`);

    // The last checkpoint, loaded back onto the device into the shapes of a fresh state, evaluates the same.
    const agent = makeAgent(cfg);
    const seedKey = random.keyData(cfg.seed, jb.info.x64);
    const like = (await agent.init(seedKey)) as unknown as Carry;
    const back = (await Checkpoint.deserialize({ path: r.checkpoint!, session: jb }, like)).carry();
    const round = array(r.history.length - 1, "int32");
    const [a, b] = (await Promise.all([agent.evaluate.withOptions({ fetch: true })(r.carry.q, seedKey, round), agent.evaluate.withOptions({ fetch: true })(back.q, seedKey, round)])) as unknown as NDArray[];
    const same = Buffer.from(a!.bytes()).equals(Buffer.from(b!.bytes()));
    console.log(`checkpoint ${r.checkpoint}: reloaded, ${treeLeaves(back).length} arrays; its evaluation ${same ? "is identical" : "DIFFERS"}`);
    if (json) {
      const host = (await jb.get({ q: r.carry.q, target: r.carry.target, optState: r.carry.optState })) as unknown;
      const leaves = (treeLeaves(host) as NDArray[]).map((x) => Buffer.from(x.bytes()).toString("base64"));
      console.log(JSON.stringify({ history: r.history, solvedChunk: r.solvedChunk, envSteps: r.envSteps, updates: r.updates, losses: r.losses, leaves, checkpoint: r.checkpoint, reloadedSame: same }));
    }
  } finally {
    await jb.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
