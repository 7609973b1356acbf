"""examples/rl-rollout.ts written in Python, the oracle test/examples.test.ts
checks the example against: the same cart-pole, MLP policy, TD(0) critic and
Polyak-averaged target, scanned with `lerax.utils.filter_scan` and unstacked
with `lerax.utils.unstack_pytree`. `filter_cond` and `polyak_average` are
written from lerax's documentation (PyPI's lerax 0.0.5 has neither). Every
operation mirrors the TypeScript one, in the same order, so the results are
the same bits. Prints one JSON line in the example's `--json` format."""

import json

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lerax.utils as lu  # noqa: E402
from jax import lax  # noqa: E402

ITERATIONS = 3
STEPS = 250
HIDDEN = 16
SEED = 0

GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
TOTAL_MASS = MASS_CART + MASS_POLE
HALF_LENGTH = 0.5
POLE_MASS_LENGTH = MASS_POLE * HALF_LENGTH
FORCE = 10.0
DT = 0.02
X_LIMIT = 2.4
THETA_LIMIT = 0.2095
MAX_EPISODE = 200

GAMMA = 0.99
ALPHA = 0.01
TAU = 0.05
NOISE = 0.5


# lerax 0.0.5 on PyPI lacks filter_cond: the spec-derived one, shared with the other oracles.
from lerax_spec import filter_cond  # noqa: E402,F401


def polyak_average(online, target, tau):
    on_arr, on_static = eqx.partition(online, eqx.is_inexact_array)
    tg_arr, _ = eqx.partition(target, eqx.is_inexact_array)
    new = jax.tree.map(lambda o, t: tau * o + (1 - tau) * t, on_arr, tg_arr)
    return eqx.combine(new, on_static)


def features(s):
    return jnp.concatenate([s, jnp.square(s), jnp.ones([1], jnp.float32)])


class MLP(eqx.Module):
    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array
    activation: str = eqx.field(static=True)

    def apply(self, x):
        act = jnp.tanh if self.activation == "tanh" else jax.nn.relu
        h = act(jnp.add(jnp.matmul(x, self.w1), self.b1))
        return jnp.add(jnp.matmul(h, self.w2), self.b2)


class Linear(eqx.Module):
    w: jax.Array

    def value(self, s):
        return jnp.dot(self.w, features(s))


def dynamics(s, force):
    x, x_dot, theta, theta_dot = jnp.unstack(s)
    cos = jnp.cos(theta)
    sin = jnp.sin(theta)
    temp = jnp.divide(jnp.add(force, jnp.multiply(jnp.multiply(POLE_MASS_LENGTH, jnp.square(theta_dot)), sin)), TOTAL_MASS)
    theta_acc = jnp.divide(
        jnp.subtract(jnp.multiply(GRAVITY, sin), jnp.multiply(cos, temp)),
        jnp.multiply(HALF_LENGTH, jnp.subtract(4.0 / 3.0, jnp.divide(jnp.multiply(MASS_POLE, jnp.square(cos)), TOTAL_MASS))),
    )
    x_acc = jnp.subtract(temp, jnp.divide(jnp.multiply(jnp.multiply(POLE_MASS_LENGTH, theta_acc), cos), TOTAL_MASS))
    return jnp.stack([
        jnp.add(x, jnp.multiply(DT, x_dot)),
        jnp.add(x_dot, jnp.multiply(DT, x_acc)),
        jnp.add(theta, jnp.multiply(DT, theta_dot)),
        jnp.add(theta_dot, jnp.multiply(DT, theta_acc)),
    ])


def step(c, _x):
    keys = jax.random.split(c["key"], 3)
    s = c["env"]["state"]
    noise = jnp.multiply(NOISE, jax.random.normal(keys[1], (), jnp.float32))
    action = jnp.clip(jnp.add(jnp.multiply(FORCE, jnp.tanh(c["policy"].apply(s)[0])), noise), -FORCE, FORCE)
    nxt = dynamics(s, action)
    t = jnp.add(c["env"]["t"], 1)
    done = jnp.logical_or(
        jnp.logical_or(jnp.greater(jnp.abs(nxt[0]), X_LIMIT), jnp.greater(jnp.abs(nxt[2]), THETA_LIMIT)),
        jnp.greater_equal(t, MAX_EPISODE),
    )
    reward = jnp.ones((), jnp.float32)
    value = c["critic"].value(s)
    bootstrap = jnp.multiply(jnp.subtract(1, jnp.astype(done, jnp.float32)), c["target"].value(nxt))
    td = jnp.subtract(jnp.add(reward, jnp.multiply(GAMMA, bootstrap)), value)
    critic = Linear(jnp.add(c["critic"].w, jnp.multiply(jnp.multiply(ALPHA, td), features(s))))
    target = polyak_average(critic, c["target"], TAU)
    env = filter_cond(
        done,
        lambda k, e: {"state": jax.random.uniform(k, (4,), jnp.float32, -0.05, 0.05), "t": jnp.zeros((), jnp.int32)},
        lambda k, e: e,
        keys[2],
        {"state": nxt, "t": t},
    )
    carry = {"env": env, "key": keys[0], "policy": c["policy"], "critic": critic, "target": target}
    return carry, {"obs": s, "action": action, "reward": reward, "done": done, "value": value, "td": td}


def initialise(key):
    k = jax.random.split(key, 4)
    policy = MLP(
        jnp.multiply(0.5, jax.random.normal(k[0], (4, HIDDEN), jnp.float32)),
        jnp.zeros((HIDDEN,), jnp.float32),
        jnp.multiply(0.25, jax.random.normal(k[1], (HIDDEN, 1), jnp.float32)),
        jnp.zeros((1,), jnp.float32),
        "tanh",
    )
    critic = Linear(jnp.zeros((9,), jnp.float32))
    env = {"state": jax.random.uniform(k[2], (4,), jnp.float32, -0.05, 0.05), "t": jnp.zeros((), jnp.int32)}
    return {"env": env, "key": k[3], "policy": policy, "critic": critic, "target": critic}


def main():
    carry = eqx.filter_jit(initialise)(jax.random.PRNGKey(SEED))
    rollout = eqx.filter_jit(lambda c: lu.filter_scan(step, c, None, length=STEPS))
    report = []
    episodes = 0
    longest = 0
    open_ = 0
    for _ in range(ITERATIONS):
        carry, ys = rollout(carry)
        records = lu.unstack_pytree(jax.device_get(ys))
        for r in records:
            open_ += 1
            if bool(r["done"]):
                episodes += 1
                longest = max(longest, open_)
                open_ = 0
        report.append({
            "critic": [float(v) for v in carry["critic"].w],
            "target": [float(v) for v in carry["target"].w],
            "value": [float(r["value"]) for r in records],
            "action": [float(r["action"]) for r in records],
            "done": [bool(r["done"]) for r in records],
        })
    print(json.dumps({"iterations": report, "state": [float(v) for v in carry["env"]["state"]], "episodes": episodes, "longest": longest}))


if __name__ == "__main__":
    main()
