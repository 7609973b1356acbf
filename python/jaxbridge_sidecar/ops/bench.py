"""Benchmark-only ops: `bench_lerax_scan`, `bench_module_scan` and `bench_psum`, the
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


OPS: dict[str, Op] = {"bench_lerax_scan": bench_lerax_scan, "bench_module_scan": bench_module_scan, "bench_psum": bench_psum}
