"""examples/dqn-cartpole.ts written in Python with equinox and optax: the
oracle test/examples.test.ts checks the example against, and the Python side
of the CartPole row of `npm run bench`.

The Q-network is `eqx.nn.MLP` itself (float32), so the TypeScript
initialisation is checked against equinox's; the loss is differentiated by
`eqx.filter_value_and_grad`, updated by `optax.adam` and `optax.apply_updates`,
and the target follows by lerax's `polyak_average` (written from its
documentation). Every other operation mirrors the TypeScript one, in the same
order, with the same kinds of constants (a JS integer is a Python int here, a
JS non-integer a Python float), so XLA compiles the same programs and the
numbers are the same bits: the per-step losses, the evaluation history and
the final network, target network and Adam state.

    python dqn_cartpole.py [--seed 0] [--chunks 40] [--time] [--checkpoint FILE]

Prints one JSON line: {history, solvedChunk, envSteps, updates, losses,
leaves (base64, in the order of {"optState", "q", "target"}), trainSeconds,
checkpointEqual};
with --time, the chunk and evaluation programs are compiled first on a
throwaway state, so trainSeconds excludes compilation.
"""

import argparse
import base64
import json
import math
import time

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402

NUM_ENVS = 4
HIDDEN = 128
DEPTH = 2
BUFFER = 10_000
BATCH = 128
LR = 1e-3
GAMMA = 0.99
TAU = 0.01
EPS_START = 1  # a JS integer: 1.0 is 1 there
EPS_END = 0.05
EPS_STEPS = 2_500
LEARNING_STARTS = 250
CHUNK_STEPS = 250
MAX_EPISODE = 200
SOLVE = 195
EVAL_EPISODES = 100
REPORT_EVERY = 25

# examples/cartpole.ts
GRAVITY = 9.8
MASS_CART = 1  # JS integer
MASS_POLE = 0.1
TOTAL_MASS = MASS_POLE + MASS_CART
LENGTH = 0.5
POLE_MASS_LENGTH = MASS_POLE * LENGTH
FORCE_MAG = 10  # JS integer
TAU_ENV = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4


def reset(key, n):
    return jax.random.uniform(key, (n, 4), jnp.float32, minval=-0.05, maxval=0.05)


def env_step(state, action):
    x, x_dot, theta, theta_dot = jnp.unstack(state, axis=1)
    force = jnp.where(jnp.equal(action, 1), jnp.asarray(FORCE_MAG, jnp.float32), jnp.asarray(-FORCE_MAG, jnp.float32))
    cos = jnp.cos(theta)
    sin = jnp.sin(theta)
    temp = jnp.divide(jnp.add(force, jnp.multiply(jnp.multiply(POLE_MASS_LENGTH, jnp.square(theta_dot)), sin)), TOTAL_MASS)
    theta_acc = jnp.divide(
        jnp.subtract(jnp.multiply(GRAVITY, sin), jnp.multiply(cos, temp)),
        jnp.multiply(LENGTH, jnp.subtract(4.0 / 3.0, jnp.divide(jnp.multiply(MASS_POLE, jnp.square(cos)), TOTAL_MASS))),
    )
    x_acc = jnp.subtract(temp, jnp.divide(jnp.multiply(jnp.multiply(POLE_MASS_LENGTH, theta_acc), cos), TOTAL_MASS))
    x2 = jnp.add(x, jnp.multiply(TAU_ENV, x_dot))
    x_dot2 = jnp.add(x_dot, jnp.multiply(TAU_ENV, x_acc))
    theta2 = jnp.add(theta, jnp.multiply(TAU_ENV, theta_dot))
    theta_dot2 = jnp.add(theta_dot, jnp.multiply(TAU_ENV, theta_acc))
    x_thr = jnp.asarray(X_THRESHOLD, jnp.float32)
    th_thr = jnp.asarray(THETA_THRESHOLD, jnp.float32)
    terminated = jnp.logical_or(
        jnp.logical_or(jnp.less_equal(x2, jnp.negative(x_thr)), jnp.greater_equal(x2, x_thr)),
        jnp.logical_or(jnp.less_equal(theta2, jnp.negative(th_thr)), jnp.greater_equal(theta2, th_thr)),
    )
    return jnp.stack([x2, x_dot2, theta2, theta_dot2], axis=1), jnp.ones_like(x2), terminated


def apply(q, x):
    """The MLP on a batch [B, 4], as QNetwork.apply writes it (eqx.nn.MLP's own __call__ takes one row)."""
    h = x
    for i, layer in enumerate(q.layers):
        h = jnp.add(jnp.matmul(h, jnp.transpose(layer.weight)), layer.bias)
        if i < len(q.layers) - 1:
            h = jax.nn.relu(h)
    return h


def polyak_average(online, target, tau):
    """lerax.utils.polyak_average, from its documentation."""
    on_arr, on_static = eqx.partition(online, eqx.is_inexact_array)
    tg_arr, _ = eqx.partition(target, eqx.is_inexact_array)
    return eqx.combine(jax.tree.map(lambda o, t: tau * o + (1 - tau) * t, on_arr, tg_arr), on_static)


def make(progress=True):
    q_static = eqx.partition(eqx.nn.MLP(4, 2, HIDDEN, DEPTH, activation=jax.nn.relu, key=jax.random.PRNGKey(0), dtype=jnp.float32), eqx.is_array)[1]
    opt = optax.adam(LR)

    def combine(p):
        return eqx.combine(p, q_static)

    @jax.jit
    def init(seed_key):
        k = jax.random.split(seed_key, 3)
        mlp = eqx.nn.MLP(4, 2, HIDDEN, DEPTH, activation=jax.nn.relu, key=k[1], dtype=jnp.float32)
        q = eqx.filter(mlp, eqx.is_array)
        return dict(
            q=q,
            target=q,
            opt_state=opt.init(q),
            buffer=dict(
                obs=jnp.zeros([BUFFER, 4], jnp.float32),
                action=jnp.zeros([BUFFER], jnp.int32),
                reward=jnp.zeros([BUFFER], jnp.float32),
                next_obs=jnp.zeros([BUFFER, 4], jnp.float32),
                terminated=jnp.zeros([BUFFER], jnp.float32),
                ptr=jnp.zeros([], jnp.int32),
                size=jnp.zeros([], jnp.int32),
            ),
            env_state=reset(k[2], NUM_ENVS),
            env_t=jnp.zeros([NUM_ENVS], jnp.int32),
            ep_return=jnp.zeros([NUM_ENVS], jnp.float32),
            step=jnp.zeros([], jnp.int32),
            key=k[0],
        )

    def epsilon(step):
        frac = jnp.minimum(jnp.divide(step.astype(jnp.float32), EPS_STEPS), 1)
        return jnp.add(EPS_START, jnp.multiply(frac, EPS_END - EPS_START))

    def buffer_add(buf, t):
        ptr = buf["ptr"]
        out = {k: lax.dynamic_update_slice(buf[k], v, (ptr,) + (jnp.int32(0),) * (v.ndim - 1)) for k, v in t.items()}
        out["ptr"] = jnp.remainder(jnp.add(ptr, NUM_ENVS), BUFFER)
        out["size"] = jnp.minimum(jnp.add(buf["size"], NUM_ENVS), BUFFER)
        return out

    def buffer_sample(buf, key):
        u = jax.random.uniform(key, (BATCH,), jnp.float32)
        idx = jnp.minimum(jnp.floor(jnp.multiply(u, buf["size"])).astype(jnp.int32), jnp.subtract(buf["size"], 1))
        return {k: buf[k][idx] for k in ("obs", "action", "reward", "next_obs", "terminated")}

    def td_loss(q, target, b):
        q_sa = jnp.sum(jnp.multiply(apply(q, b["obs"]), jax.nn.one_hot(b["action"], 2, dtype=jnp.float32)), axis=1)
        a_star = jnp.argmax(apply(q, b["next_obs"]), axis=1)
        next_v = jnp.sum(jnp.multiply(apply(target, b["next_obs"]), jax.nn.one_hot(a_star, 2, dtype=jnp.float32)), axis=1)
        y = lax.stop_gradient(jnp.add(b["reward"], jnp.multiply(jnp.multiply(GAMMA, jnp.subtract(1, b["terminated"])), next_v)))
        return jnp.mean(optax.huber_loss(q_sa, y, delta=1))

    def learn(q, target, opt_state, buffer, key):
        batch = buffer_sample(buffer, key)
        value, grads = eqx.filter_value_and_grad(td_loss)(combine(q), combine(target), batch)
        updates, opt_state = opt.update(eqx.filter(grads, eqx.is_array), opt_state, q)
        q2 = optax.apply_updates(q, updates)
        return q2, polyak_average(q2, target, TAU), opt_state, value

    def skip(q, target, opt_state, buffer, key):
        return q, target, opt_state, jnp.asarray(jnp.nan, jnp.float32)

    def train_step(c, _):
        ks = jax.random.split(c["key"], 5)
        obs = c["env_state"]
        greedy = jnp.argmax(apply(combine(c["q"]), obs), axis=1).astype(jnp.int32)
        eps = epsilon(c["step"])
        explore = jnp.less(jax.random.uniform(ks[1], (NUM_ENVS,), jnp.float32), eps)
        random_action = jnp.floor(jnp.multiply(jax.random.uniform(ks[2], (NUM_ENVS,), jnp.float32), 2)).astype(jnp.int32)
        action = jnp.where(explore, random_action, greedy)
        nxt, reward, terminated = env_step(obs, action)
        env_t = jnp.add(c["env_t"], 1)
        done = jnp.logical_or(terminated, jnp.greater_equal(env_t, MAX_EPISODE))
        ep_return = jnp.add(c["ep_return"], reward)
        buffer = buffer_add(c["buffer"], dict(obs=obs, action=action, reward=reward, next_obs=nxt, terminated=terminated.astype(jnp.float32)))
        fresh = reset(ks[3], NUM_ENVS)
        env_state = jnp.where(jnp.expand_dims(done, 1), fresh, nxt)
        q, target, opt_state, value = lax.cond(
            jnp.greater_equal(c["step"], LEARNING_STARTS), learn, skip, c["q"], c["target"], c["opt_state"], buffer, ks[4]
        )
        episode_return = jnp.where(done, ep_return, 0)
        if progress:
            # The example's progress report: a host callback every REPORT_EVERY steps, in a cond.
            def report(step, loss):
                jax.debug.callback(lambda *a: None, step, loss, ordered=True)
                return None

            lax.cond(jnp.equal(jnp.remainder(c["step"], REPORT_EVERY), 0), report, lambda step, loss: None, c["step"], value)
        carry = dict(
            q=q,
            target=target,
            opt_state=opt_state,
            buffer=buffer,
            env_state=env_state,
            env_t=jnp.where(done, 0, env_t),
            ep_return=jnp.where(done, 0, ep_return),
            step=jnp.add(c["step"], 1),
            key=ks[0],
        )
        return carry, dict(loss=value, epsilon=eps, done=done, episode_return=episode_return)

    @jax.jit
    def chunk(c):
        return lax.scan(train_step, c, None, length=CHUNK_STEPS)

    @jax.jit
    def evaluate(q, seed_key, rnd):
        key = jax.random.fold_in(jax.random.fold_in(seed_key, 10_000), rnd)
        s0 = reset(key, EVAL_EPISODES)
        mlp = combine(q)

        def body(c, _):
            a = jnp.argmax(apply(mlp, c["s"]), axis=1).astype(jnp.int32)
            nxt, reward, terminated = env_step(c["s"], a)
            ret = jnp.add(c["ret"], jnp.where(c["alive"], reward, 0))
            return dict(s=nxt, alive=jnp.logical_and(c["alive"], jnp.logical_not(terminated)), ret=ret), None

        init0 = dict(s=s0, alive=jnp.ones([EVAL_EPISODES], bool), ret=jnp.zeros([EVAL_EPISODES], jnp.float32))
        final, _ = lax.scan(body, init0, None, length=MAX_EPISODE)
        return final["ret"]

    return init, chunk, evaluate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--checkpoint", help="a checkpoint.eqx the TypeScript example wrote after the same run: say whether equinox loads it into this run's final state, bit for bit")
    args = ap.parse_args()
    init, chunk, evaluate = make()
    seed_key = jax.random.PRNGKey(args.seed)
    if args.time:
        warm = init(jax.random.PRNGKey(args.seed + 1))
        w, _ = chunk(warm)
        jax.block_until_ready(evaluate(w["q"], seed_key, jnp.int32(0)))
    t0 = time.perf_counter()
    c = init(seed_key)
    history, losses, solved = [], [], None
    for i in range(1, args.chunks + 1):
        c, stats = chunk(c)
        losses.extend(None if math.isnan(x) else float(x) for x in np.asarray(stats["loss"]))
        returns = np.asarray(evaluate(c["q"], seed_key, jnp.int32(i - 1)), np.float64)
        mean = float(np.sum(returns)) / EVAL_EPISODES
        history.append(mean)
        if mean >= SOLVE:
            solved = i
            break
    seconds = time.perf_counter() - t0
    n = solved or args.chunks
    leaves = jax.tree.leaves({"optState": c["opt_state"], "q": c["q"], "target": c["target"]})
    checkpoint_equal = None
    if args.checkpoint:
        # The TypeScript Checkpoint's fields in order: q, target, optState, buffer, envState, envT, epReturn, step, key.
        ours = [c["q"], c["target"], c["opt_state"], c["buffer"], c["env_state"], c["env_t"], c["ep_return"], c["step"], c["key"]]
        with open(args.checkpoint, "rb") as f:
            f.seek(32)  # the TypeScript structural fingerprint
            loaded = eqx.tree_deserialise_leaves(f, ours)
        a, b = jax.tree.leaves(loaded), jax.tree.leaves(ours)
        checkpoint_equal = len(a) == len(b) and all(np.asarray(x).dtype == np.asarray(y).dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(a, b))
    print(
        json.dumps(
            {
                "history": history,
                "solvedChunk": solved,
                "envSteps": n * CHUNK_STEPS * NUM_ENVS,
                "updates": max(0, n * CHUNK_STEPS - LEARNING_STARTS),
                "losses": losses,
                "leaves": [base64.b64encode(np.asarray(x).tobytes()).decode() for x in leaves],
                "trainSeconds": seconds,
                "checkpointEqual": checkpoint_equal,
            }
        )
    )


if __name__ == "__main__":
    main()
