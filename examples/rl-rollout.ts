/**
 * An RL-flavoured rollout written in TypeScript, run by JAX in the sidecar:
 *
 * - a cart-pole environment whose dynamics are jnp code;
 * - an MLP policy whose parameters are a pytree (a `Module` with a static
 *   activation name) and a linear critic learned by TD(0) against a target
 *   critic that follows it by `polyakAverage`;
 * - `filterScan` over the steps of an iteration, with a `filterCond` that
 *   resets the environment when an episode ends;
 * - the per-step outputs fetched once and `unstackPytree`d into records.
 *
 * The whole iteration (all steps, resets, TD updates and target updates) is
 * one program, traced once and compiled once; later iterations send only its
 * hash. `node --import tsx examples/rl-rollout.ts [--json]`; with `--json` the
 * last line is the numbers test/examples.test.ts compares with the same
 * rollout written in Python with lerax.utils.filter_scan.
 */
import {
  connect,
  filterCond,
  filterScan,
  jit,
  jnp,
  leraxCacheStats,
  Module,
  nn,
  NDArray,
  polyakAverage,
  programStats,
  random,
  unstackPytree,
  type DeviceArray,
  type Tracer,
} from "../src/index.js";

type Arr = NDArray | DeviceArray | Tracer;

const ITERATIONS = 3;
const STEPS = 250;
const HIDDEN = 16;
const SEED = 0;

// Cart-pole (Barto, Sutton & Anderson; the constants of gym's CartPole-v1), with a continuous force.
const GRAVITY = 9.8;
const MASS_CART = 1.0;
const MASS_POLE = 0.1;
const TOTAL_MASS = MASS_CART + MASS_POLE;
const HALF_LENGTH = 0.5;
const POLE_MASS_LENGTH = MASS_POLE * HALF_LENGTH;
const FORCE = 10.0;
const DT = 0.02;
const X_LIMIT = 2.4;
const THETA_LIMIT = 0.2095;
const MAX_EPISODE = 200;

// Learning.
const GAMMA = 0.99;
const ALPHA = 0.01;
const TAU = 0.05;
const NOISE = 0.5;

/** The policy: a two-layer perceptron; the activation is a static field (part of the structure). */
class MLP extends Module {
  w1: Arr;
  b1: Arr;
  w2: Arr;
  b2: Arr;
  activation: "tanh" | "relu";
  static staticFields = ["activation"];
  constructor(w1: Arr, b1: Arr, w2: Arr, b2: Arr, activation: "tanh" | "relu") {
    super();
    this.w1 = w1;
    this.b1 = b1;
    this.w2 = w2;
    this.b2 = b2;
    this.activation = activation;
  }
  apply(x: Arr): Tracer {
    const act = this.activation === "tanh" ? jnp.tanh : nn.relu;
    const h = act(jnp.add(jnp.matmul(x, this.w1), this.b1));
    return jnp.add(jnp.matmul(h, this.w2), this.b2);
  }
}

/** The critic: V(s) = w · φ(s), with φ(s) = [s, s², 1]. */
class Linear extends Module {
  w: Arr;
  constructor(w: Arr) {
    super();
    this.w = w;
  }
  value(s: Arr): Tracer {
    return jnp.dot(this.w, features(s));
  }
}

function features(s: Arr): Tracer {
  return jnp.concatenate([s, jnp.square(s), jnp.ones([1], "float32")]);
}

interface Env {
  state: Arr; // x, x_dot, theta, theta_dot
  t: Arr; // steps into the episode (int32)
}

/** What each step reports (stacked over the steps by filterScan). */
interface StepOut {
  obs: Tracer;
  action: Tracer;
  reward: Tracer;
  done: Tracer;
  value: Tracer;
  td: Tracer;
}

interface Carry {
  env: Env;
  key: Arr;
  policy: MLP;
  critic: Linear;
  target: Linear;
}

/** One Euler step of the cart-pole dynamics. */
function dynamics(s: Tracer, force: Tracer): Tracer {
  const [x, xDot, theta, thetaDot] = jnp.unstack(s);
  const cos = jnp.cos(theta!);
  const sin = jnp.sin(theta!);
  const temp = jnp.divide(jnp.add(force, jnp.multiply(jnp.multiply(POLE_MASS_LENGTH, jnp.square(thetaDot!)), sin)), TOTAL_MASS);
  const thetaAcc = jnp.divide(
    jnp.subtract(jnp.multiply(GRAVITY, sin), jnp.multiply(cos, temp)),
    jnp.multiply(HALF_LENGTH, jnp.subtract(4.0 / 3.0, jnp.divide(jnp.multiply(MASS_POLE, jnp.square(cos)), TOTAL_MASS))),
  );
  const xAcc = jnp.subtract(temp, jnp.divide(jnp.multiply(jnp.multiply(POLE_MASS_LENGTH, thetaAcc), cos), TOTAL_MASS));
  return jnp.stack([
    jnp.add(x!, jnp.multiply(DT, xDot!)),
    jnp.add(xDot!, jnp.multiply(DT, xAcc)),
    jnp.add(theta!, jnp.multiply(DT, thetaDot!)),
    jnp.add(thetaDot!, jnp.multiply(DT, thetaAcc)),
  ]);
}

/** One environment step: act, move, learn, and reset when the episode ends. */
function step(c: Carry): readonly [Carry, StepOut] {
  const keys = random.split(c.key, 3);
  const s = c.env.state as Tracer;
  const noise = jnp.multiply(NOISE, random.normal(keys.get(1), [], { dtype: "float32" }));
  const action = jnp.clip(jnp.add(jnp.multiply(FORCE, jnp.tanh(c.policy.apply(s).get(0))), noise), -FORCE, FORCE);
  const next = dynamics(s, action);
  const t = jnp.add(c.env.t, 1);
  const done = jnp.logicalOr(
    jnp.logicalOr(jnp.greater(jnp.abs(next.get(0)), X_LIMIT), jnp.greater(jnp.abs(next.get(2)), THETA_LIMIT)),
    jnp.greaterEqual(t, MAX_EPISODE),
  );
  const reward = jnp.ones([], "float32");

  // TD(0) for the critic against the target critic, then the target follows by Polyak averaging.
  const value = c.critic.value(s);
  const bootstrap = jnp.multiply(jnp.subtract(1, jnp.astype(done, "float32")), c.target.value(next));
  const td = jnp.subtract(jnp.add(reward, jnp.multiply(GAMMA, bootstrap)), value);
  const critic = new Linear(jnp.add(c.critic.w, jnp.multiply(jnp.multiply(ALPHA, td), features(s))));
  const target = polyakAverage(critic, c.target, TAU);

  const env = filterCond(
    done,
    (k: Tracer) => ({ state: random.uniform(k, [4], { dtype: "float32", minval: -0.05, maxval: 0.05 }), t: jnp.zeros([], "int32") }),
    (_k: Tracer, e: Env) => e,
    keys.get(2),
    { state: next, t } as Env,
  );
  const carry: Carry = { env, key: keys.get(0), policy: c.policy, critic, target };
  return [carry, { obs: s, action, reward, done, value, td }] as const;
}

/** Initial parameters from a key, with jax.random (the same numbers Python draws from the same key). */
const initialise = jit((key: NDArray) => {
  const k = random.split(key as unknown as Tracer, 4);
  const policy = new MLP(
    jnp.multiply(0.5, random.normal(k.get(0), [4, HIDDEN], { dtype: "float32" })),
    jnp.zeros([HIDDEN], "float32"),
    jnp.multiply(0.25, random.normal(k.get(1), [HIDDEN, 1], { dtype: "float32" })),
    jnp.zeros([1], "float32"),
    "tanh",
  );
  const critic = new Linear(jnp.zeros([9], "float32"));
  const env = { state: random.uniform(k.get(2), [4], { dtype: "float32", minval: -0.05, maxval: 0.05 }), t: jnp.zeros([], "int32") };
  return { env, key: k.get(3), policy, critic, target: critic } as Carry;
});

const json = process.argv.includes("--json");
const jb = await connect(process.env.JAXBRIDGE_URL ? { url: process.env.JAXBRIDGE_URL } : {});
try {
  console.log(`rl-rollout: cart-pole with an MLP policy and a TD(0) critic, ${ITERATIONS} iterations x ${STEPS} steps, on ${jb.info.backend} (JAX ${jb.info.jax})`);
  let carry = (await initialise(random.keyData(SEED, jb.info.x64))) as Carry;
  const report: Record<string, unknown>[] = [];
  let episodes = 0;
  let longest = 0;
  let open = 0; // steps of the episode still running when an iteration ends
  for (let it = 1; it <= ITERATIONS; it++) {
    const [next, ys] = await filterScan(step, carry, null, { length: STEPS });
    // The per-step outputs come back once, as host arrays, and are split into records (views, no copies).
    const records = unstackPytree(await jb.get(ys));
    let ended = 0;
    let sumLen = 0;
    let sumTd = 0;
    for (const r of records) {
      sumTd += Math.abs(r.td.item() as number);
      open++;
      if (r.done.item() === true) {
        ended++;
        sumLen += open;
        longest = Math.max(longest, open);
        open = 0;
      }
    }
    episodes += ended;
    carry = next as unknown as Carry;
    const [w, wt] = await Promise.all([(carry.critic.w as DeviceArray).toHost(), (carry.target.w as DeviceArray).toHost()]);
    const norm = (a: NDArray) => Math.sqrt(Array.from(a.data as Float32Array).reduce((s, v) => s + v * v, 0));
    console.log(
      `iteration ${it}: ${ended} episodes ended, mean length ${ended ? (sumLen / ended).toFixed(1) : "-"}, mean |td| ${(sumTd / records.length).toFixed(4)}, critic |w| ${norm(w).toFixed(4)} (target ${norm(wt).toFixed(4)})`,
    );
    report.push({
      critic: Array.from(w.data as Float32Array),
      target: Array.from(wt.data as Float32Array),
      value: records.map((r) => r.value.item()),
      action: records.map((r) => r.action.item()),
      done: records.map((r) => r.done.item()),
    });
  }
  const state = await (carry.env.state as DeviceArray).toHost();
  const stats = leraxCacheStats.filterScan(step);
  const sidecar = await programStats(jb);
  console.log(`total: ${episodes} episodes ended, longest ${longest} steps`);
  console.log(`filterScan traced ${stats.traces} time(s) for ${stats.calls} calls, sent the program ${stats.programsSent} time(s); the sidecar compiled ${sidecar.traces} program(s)`);
  if (json) console.log(JSON.stringify({ iterations: report, state: Array.from(state.data as Float32Array), episodes, longest }));
} finally {
  await jb.close();
}
