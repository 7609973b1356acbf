/**
 * examples/cartpole.ts, the jnp CartPole the DQN example trains on, against
 * gymnasium's CartPole-v1: gymnasium is put in each float32 state (exactly,
 * as float64) and stepped.
 *
 * - Termination: equal for every state, including states placed exactly on
 *   the float32 thresholds.
 * - Next state: gymnasium computes in float64, we in float32, so bits cannot
 *   match; each component must be within 4 float32 epsilons of the size of
 *   the two summands of its Euler update (|s| + |tau * ds/dt|). The
 *   operations are rounded float32 ones (and XLA's sin/cos), a handful of
 *   roundings per component: a few eps, never more.
 * - Reset: jax.random.uniform(key, (n, 4), float32, -0.05, 0.05)'s bits.
 */
import assert from "node:assert/strict";
import { jit } from "../../src/trace/jit.js";
import { NDArray } from "../../src/values/ndarray.js";
import * as random from "../../src/trace/lib/random.js";
import type { Tracer } from "../../src/trace/tracer.js";
import { runPython } from "../support/python.js";
import { useSession } from "../support/session.js";
import { rng } from "../trace/support/oracle.js";
import { reset, step, THETA_THRESHOLD, X_THRESHOLD } from "../../examples/cartpole.js";

const GYM = `
import sys, json, base64
import numpy as np
import gymnasium as gym
req = json.load(sys.stdin)
box = np.frombuffer(base64.b64decode(req["states"]), np.float32).reshape(-1, 4)
box_actions = np.frombuffer(base64.b64decode(req["actions"]), np.int32)
env = gym.make("CartPole-v1").unwrapped
# States gymnasium visits itself under random actions.
rs = np.random.default_rng(0)
visited, visited_actions = [], []
env.reset(seed=0)
while len(visited) < req["visited"]:
    obs, _ = env.reset(seed=int(rs.integers(1 << 30)))
    done = False
    while not done and len(visited) < req["visited"]:
        a = int(rs.integers(2))
        visited.append(np.asarray(env.state, np.float32)); visited_actions.append(a)
        _, _, done, _, _ = env.step(a)
states = np.concatenate([box, np.array(visited, np.float32)])
actions = np.concatenate([box_actions, np.array(visited_actions, np.int32)])
nexts, terms = [], []
for s, a in zip(states, actions):
    env.state = s.astype(np.float64)
    env.steps_beyond_terminated = None
    _, r, t, _, _ = env.step(int(a))
    assert r == 1.0
    nexts.append(np.asarray(env.state, np.float64)); terms.append(bool(t))
enc = lambda x: base64.b64encode(np.ascontiguousarray(x).tobytes()).decode()
print(json.dumps({"states": enc(states), "actions": enc(actions), "next64": enc(np.array(nexts)), "terminated": terms}))
`;

const b64 = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
function decode<T extends Float32Array | Float64Array | Int32Array>(s: string, C: new (b: ArrayBuffer) => T): T {
  const buf = Buffer.from(s, "base64");
  return new C(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer);
}

describe("examples/cartpole.ts: the jnp CartPole against gymnasium's CartPole-v1", function () {
  this.timeout(300_000);
  const session = useSession();

  it("steps 12,400 states as gymnasium does: the same terminations, next states within 4 float32 eps of the summands", async () => {
    session(); // the jitted step runs on this test file's sidecar (the default session)
    const r = rng(7);
    const n = 6000;
    const states = new Float32Array(n * 4);
    const actions = new Int32Array(n);
    const f32 = Math.fround;
    for (let i = 0; i < n; i++) {
      // A box around and past the thresholds; every 15th state sits exactly on one of them with no velocity.
      const on = i % 15 === 0;
      const sign = r() < 0.5 ? -1 : 1;
      states[i * 4 + 0] = on && i % 30 === 0 ? sign * f32(X_THRESHOLD) : (r() * 2 - 1) * 2.6;
      states[i * 4 + 1] = on && i % 30 === 0 ? 0 : (r() * 2 - 1) * 3;
      states[i * 4 + 2] = on && i % 30 !== 0 ? sign * f32(THETA_THRESHOLD) : (r() * 2 - 1) * 0.25;
      states[i * 4 + 3] = on && i % 30 !== 0 ? 0 : (r() * 2 - 1) * 3;
      actions[i] = r() < 0.5 ? 0 : 1;
    }
    const gym = await runPython<{ states: string; actions: string; next64: string; terminated: boolean[] }>(GYM, { states: b64(states), actions: b64(actions), visited: 6400 });
    const all = decode(gym.states, Float32Array);
    const acts = decode(gym.actions, Int32Array);
    const ref = decode(gym.next64, Float64Array);
    const m = acts.length;
    assert.equal(m, 12_400);
    const stepped = jit((s: Tracer | NDArray, a: Tracer | NDArray) => step(s as Tracer, a as Tracer), { fetch: true });
    const out = (await stepped(new NDArray(all, [m, 4], "float32"), new NDArray(acts, [m], "int32"))) as unknown as { next: NDArray; terminated: NDArray };
    const next = out.next.data as Float32Array;
    const term = out.terminated.data as Uint8Array;
    const eps = 2 ** -23;
    let worst = 0;
    const badTerm: number[] = [];
    for (let i = 0; i < m; i++) {
      if (Boolean(term[i]) !== gym.terminated[i]) badTerm.push(i);
      for (let k = 0; k < 4; k++) {
        const s = all[i * 4 + k]!;
        const want = ref[i * 4 + k]!;
        const scale = Math.abs(s) + Math.abs(want - s);
        if (scale > 0) worst = Math.max(worst, Math.abs(next[i * 4 + k]! - want) / (eps * scale));
      }
    }
    assert.deepEqual(badTerm, [], `terminations differ from gymnasium at ${badTerm.length} states`);
    assert.ok(gym.terminated.filter(Boolean).length > 1000, "many states terminate (the thresholds are exercised)");
    assert.ok(worst <= 4, `the largest error is ${worst.toFixed(2)} float32 eps of the summands' size`);
  });

  it("resets to jax.random.uniform's bits, uniform in (-0.05, 0.05)", async () => {
    const jb = session();
    const n = 20_000;
    const ours = (await jit((k: Tracer | NDArray) => reset(k as Tracer, n), { fetch: true })(random.keyData(3, jb.info.x64))) as unknown as NDArray;
    const theirs = await runPython<string>(
      `import json, base64, jax, numpy as np
jax.config.update("jax_enable_x64", True)
x = jax.random.uniform(jax.random.PRNGKey(3), (${n}, 4), np.float32, -0.05, 0.05)
print(json.dumps(base64.b64encode(np.asarray(x).tobytes()).decode()))`,
      undefined,
      { env: { JAX_PLATFORMS: "cpu" } },
    );
    assert.equal(b64(ours.data as Float32Array), theirs);
    const v = Array.from(ours.data as Float32Array);
    assert.ok(v.every((x) => x >= -0.05 && x < 0.05));
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length;
    assert.ok(Math.abs(mean) < 0.001, `mean ${mean}`);
    assert.ok(Math.abs(variance - 0.01 / 12) < 0.00005, `variance ${variance}`);
  });
});
