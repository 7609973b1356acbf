"""Benchmark-only ops: `bench_lerax_scan`, `bench_module_scan`,
`bench_train_step`, `bench_debug_callback_scan`, `bench_psum` and `bench_eager_chain`, the
Python side of `npm run bench`, timed inside the sidecar process. A sidecar
serves them only when started with JAXBRIDGE_BENCH_OPS=1 in its
environment (see `enabled`), never by default, and `python -m
jaxbridge_sidecar ops` never lists them."""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp

from ..protocol import WireError
from .host import Host, Op

BENCH_ENV = "JAXBRIDGE_BENCH_OPS"
MAX_BENCH_STEPS = 10_000_000
MAX_BENCH_REPEATS = 100


def enabled() -> bool:
    return os.environ.get(BENCH_ENV) == "1"


def bench_mlp_body(c: dict[str, Any], _x: Any) -> tuple[dict[str, Any], Any]:
    """The scan body `bench/sections/trace.ts` writes in TypeScript, op for op."""
    z = jnp.tanh(jnp.add(jnp.matmul(c["h"], c["w1"]), c["b1"]))
    h = jnp.tanh(jnp.add(jnp.matmul(z, c["w2"]), c["b2"]))
    return {**c, "h": h}, jnp.sum(h)


def bench_lerax_scan(host: Host, env: dict[str, Any]) -> Any:
    """lerax's filter_scan of `bench_mlp_body`, jitted or eager: the native side of bench/sections/trace.ts."""
    import equinox as eqx
    import lerax.utils as lu

    carry = host.materialize(env.get("carry"))
    steps, repeats, mode = env.get("steps"), env.get("repeats"), env.get("mode", "jit")
    if not isinstance(carry, dict) or set(carry) != {"h", "w1", "b1", "w2", "b2"}:
        raise WireError("ArgumentError", "bench_lerax_scan needs `carry` as {h, w1, b1, w2, b2}")
    if not isinstance(steps, int) or not 0 < steps <= MAX_BENCH_STEPS or not isinstance(repeats, int) or not 0 < repeats <= MAX_BENCH_REPEATS:
        raise WireError("ArgumentError", f"bench_lerax_scan needs 0 < steps <= {MAX_BENCH_STEPS} and 0 < repeats <= {MAX_BENCH_REPEATS}")
    if mode not in ("jit", "eager"):
        raise WireError("ArgumentError", "bench_lerax_scan `mode` is 'jit' or 'eager'")
    init = {**{k: jnp.asarray(v) for k, v in carry.items()}, "act": "tanh"}

    def scan(c: dict[str, Any]) -> Any:
        return lu.filter_scan(bench_mlp_body, c, None, length=steps)

    fn = eqx.filter_jit(scan) if mode == "jit" else scan
    jax.block_until_ready(fn(init))  # compile (and warm up): excluded from the timings
    seconds = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(init))
        seconds.append(time.perf_counter() - t0)
    (final, ys) = out
    return {"seconds": seconds, **host.export({"h": final["h"], "ys": ys}, True)}


def bench_module_scan(host: Host, env: dict[str, Any]) -> Any:
    """`model(x)` for each row of `xs` in a jitted lax.scan: the native side of bench/sections/pycall.ts."""
    import equinox as eqx

    model = host.materialize(env.get("model"))
    xs = jnp.asarray(host.materialize(env.get("xs")))
    repeats = env.get("repeats")
    if not isinstance(repeats, int) or not 0 < repeats <= MAX_BENCH_REPEATS:
        raise WireError("ArgumentError", f"bench_module_scan needs 0 < repeats <= {MAX_BENCH_REPEATS}")
    fn = eqx.filter_jit(lambda m, xs: jax.lax.scan(lambda c, x: (c, m(x)), 0, xs)[1])
    jax.block_until_ready(fn(model, xs))  # compile: excluded
    seconds = []
    ys = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        ys = jax.block_until_ready(fn(model, xs))
        seconds.append(time.perf_counter() - t0)
    return {"seconds": seconds, "ys": host.export(ys, True)}


def bench_eager_chain(host: Host, env: dict[str, Any]) -> Any:
    """`x = x + 1` dispatched `steps` times by JAX in Python, eagerly (each a
    separate asynchronous dispatch), then waited for: the native side of
    bench/sections/eager.ts, which sends the same chain from TypeScript."""
    x = jnp.asarray(host.materialize(env.get("x")))
    steps, repeats = env.get("steps"), env.get("repeats")
    if not isinstance(steps, int) or not 0 < steps <= MAX_BENCH_STEPS or not isinstance(repeats, int) or not 0 < repeats <= MAX_BENCH_REPEATS:
        raise WireError("ArgumentError", f"bench_eager_chain needs 0 < steps <= {MAX_BENCH_STEPS} and 0 < repeats <= {MAX_BENCH_REPEATS}")

    def chain() -> Any:
        y = x
        for _ in range(steps):
            y = y + 1
        return jax.block_until_ready(y)

    chain()  # compile (and warm up): excluded from the timings
    seconds = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = chain()
        seconds.append(time.perf_counter() - t0)
    return {"seconds": seconds, "result": host.export(out, True)}



TRAIN_PARAMS = ("w1", "b1", "w2", "b2", "w3", "b3")


def train_step_fns():
    """The training step `bench/sections/training.ts` writes in TypeScript, op for op: an MLP
    with two hidden ReLU layers (weights [in, out]), softmax cross-entropy on one-hot labels,
    `jax.value_and_grad`, `optax.adam(1e-3)`, `optax.apply_updates`. Returns (opt, step)."""
    import optax

    opt = optax.adam(1e-3)

    def apply(p: dict[str, Any], x: Any) -> Any:
        h = jax.nn.relu(jnp.add(jnp.matmul(x, p["w1"]), p["b1"]))
        h = jax.nn.relu(jnp.add(jnp.matmul(h, p["w2"]), p["b2"]))
        return jnp.add(jnp.matmul(h, p["w3"]), p["b3"])

    def loss(p: dict[str, Any], x: Any, y: Any) -> Any:
        logits = apply(p, x)
        return jnp.mean(optax.softmax_cross_entropy(logits, jax.nn.one_hot(y, logits.shape[-1], dtype=jnp.float32)))

    def step(c: tuple[Any, Any], x: Any, y: Any) -> tuple[tuple[Any, Any], Any]:
        p, s = c
        value, grads = jax.value_and_grad(loss)(p, x, y)
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), value

    return opt, step


def bench_train_step(host: Host, env: dict[str, Any]) -> Any:
    """The training step of `train_step_fns`, jitted: `mode` "scan" times `steps` steps inside
    one lax.scan, "calls" times `steps` separate calls of the jitted step (each awaited), both
    compile excluded. Returns the seconds per repeat (per call for "calls") and the final
    parameters and losses."""
    params = host.materialize(env.get("params"))
    x = host.materialize(env.get("x"))
    y = host.materialize(env.get("y"))
    steps, repeats, mode = env.get("steps"), env.get("repeats"), env.get("mode", "scan")
    if not isinstance(params, dict) or set(params) != set(TRAIN_PARAMS):
        raise WireError("ArgumentError", f"bench_train_step needs `params` as {{{', '.join(TRAIN_PARAMS)}}}")
    if not isinstance(steps, int) or not 0 < steps <= MAX_BENCH_STEPS or not isinstance(repeats, int) or not 0 < repeats <= MAX_BENCH_REPEATS:
        raise WireError("ArgumentError", f"bench_train_step needs 0 < steps <= {MAX_BENCH_STEPS} and 0 < repeats <= {MAX_BENCH_REPEATS}")
    if mode not in ("scan", "calls"):
        raise WireError("ArgumentError", "bench_train_step `mode` is 'scan' or 'calls'")
    opt, step = train_step_fns()
    p0 = {k: jnp.asarray(v) for k, v in params.items()}
    x, y = jnp.asarray(x), jnp.asarray(y)
    init = (p0, opt.init(p0))
    seconds: list[float] = []
    if mode == "scan":
        fn = jax.jit(lambda c, x, y: jax.lax.scan(lambda c, _: step(c, x, y), c, None, length=steps))
        jax.block_until_ready(fn(init, x, y))  # compile: excluded
        for _ in range(repeats):
            t0 = time.perf_counter()
            (final, _), losses = jax.block_until_ready(fn(init, x, y))
            seconds.append(time.perf_counter() - t0)
    else:
        one = jax.jit(step)
        jax.block_until_ready(one(init, x, y))  # compile: excluded
        for _ in range(repeats):
            c, out = init, []
            for _ in range(steps):
                t0 = time.perf_counter()
                c, value = jax.block_until_ready(one(c, x, y))
                seconds.append(time.perf_counter() - t0)
                out.append(value)
            final, losses = c[0], jnp.stack(out)
    return {"seconds": seconds, **host.export({"params": final, "losses": losses}, True)}


def bench_debug_callback_scan(host: Host, env: dict[str, Any]) -> Any:
    """A jitted scan of `steps` steps, each an ordered `jax.debug.callback`
    of a Python no-op with the carry: what JAX alone pays per host call (the
    reference of bench/sections/callbacks.ts). Returns the events counted."""
    steps, repeats = env.get("steps"), env.get("repeats")
    if not isinstance(steps, int) or not 0 < steps <= MAX_BENCH_STEPS or not isinstance(repeats, int) or not 0 < repeats <= MAX_BENCH_REPEATS:
        raise WireError("ArgumentError", f"bench_debug_callback_scan needs 0 < steps <= {MAX_BENCH_STEPS} and 0 < repeats <= {MAX_BENCH_REPEATS}")
    count = [0]

    def seen(_c: Any) -> None:
        count[0] += 1

    def step(c: Any, _x: Any) -> tuple[Any, None]:
        jax.debug.callback(seen, c, ordered=True)
        return c + 1, None

    fn = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps)[0])
    jax.block_until_ready(fn(jnp.int32(0)))  # compile: excluded
    jax.effects_barrier()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(jnp.int32(0)))
        jax.effects_barrier()
        seconds.append(time.perf_counter() - t0)
    return {"seconds": seconds, "events": count[0]}


def bench_psum(host: Host, env: dict[str, Any]) -> Any:
    """`jax.jit(jax.shard_map(lax.psum))` of a sharded array over its own mesh's
    first axis, timed call by call: the native side of bench/sections/shard.ts."""
    from jax.sharding import NamedSharding, PartitionSpec

    x = host.materialize(env.get("x"))
    repeats = env.get("repeats")
    if not isinstance(x, jax.Array) or not isinstance(x.sharding, NamedSharding):
        raise WireError("ArgumentError", "bench_psum needs `x`: a handle of an array placed with a NamedSharding")
    if not isinstance(repeats, int) or not 0 < repeats <= 100_000:
        raise WireError("ArgumentError", "bench_psum needs 0 < repeats <= 100000")
    s = x.sharding
    axis = s.mesh.axis_names[0]
    fn = jax.jit(jax.shard_map(lambda b: jax.lax.psum(b, axis), mesh=s.mesh, in_specs=s.spec, out_specs=PartitionSpec()))
    out = jax.block_until_ready(fn(x))  # compile: excluded
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(x))
        seconds.append(time.perf_counter() - t0)
    return {"seconds": seconds, "out": host.export(out, True)}




OPS: dict[str, Op] = {
    "bench_lerax_scan": bench_lerax_scan,
    "bench_module_scan": bench_module_scan,
    "bench_train_step": bench_train_step,
    "bench_debug_callback_scan": bench_debug_callback_scan,
    "bench_eager_chain": bench_eager_chain,
    "bench_psum": bench_psum,
}
