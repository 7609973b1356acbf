"""Ops that run Programs traced in TypeScript: `run` and `program_stats`.

The sidecar keeps compiled programs by the sha256 of their bytes, which it
computes itself: a client-sent hash only names a program already held, it is
never trusted for a body. A client that sends only a hash the sidecar does
not hold (a fresh sidecar, an evicted entry) gets `UnknownProgram` and
resends with the body.
"""

from __future__ import annotations

import collections
import os
import re
import time
from typing import Any

import jax
import jax.numpy as jnp

from .events import RunEvents, RunTable
from .program import Lowered, lower, program_hash
from .program.pycall import Objects
from .protocol import WireError

DEFAULT_CAPACITY = 512
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ProgramCache:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, objects: Objects | None = None, runs: RunTable | None = None):
        self.capacity = capacity
        # Resolves the objects `pycall` equations name (see pycall.py).
        self.objects = objects
        # Where the callbacks of the programs it lowers deliver (see events.py).
        self.runs = runs
        self._entries: collections.OrderedDict[str, Lowered] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0
        self.lowered = 0
        self.evicted = 0

    def get(self, hash_: str) -> Lowered | None:
        hit = self._entries.get(hash_)
        if hit is not None:
            self._entries.move_to_end(hash_)
        return hit

    def add(self, entry: Lowered) -> None:
        self._entries[entry.hash] = entry
        self._entries.move_to_end(entry.hash)
        self.lowered += 1
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evicted += 1

    def resolve(self, hash_: Any, body: Any) -> tuple[Lowered, bool]:
        """The program for a request: (entry, True when this request lowered it)."""
        if not isinstance(hash_, str) or _SHA256_HEX.fullmatch(hash_) is None:
            raise WireError("ProtocolError", f"`hash` must be a sha256 as 64 lowercase hex digits, got {hash_!r}")
        if body is not None:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise WireError("ProtocolError", f"`program` must be bytes (the canonical JSON), got {type(body).__name__}")
            actual = program_hash(body)
            if actual != hash_:
                raise WireError("ProgramHashMismatch", f"the program's bytes hash to {actual}, not to the hash sent with them ({hash_})")
        hit = self.get(hash_)
        if hit is not None:
            self.hits += 1
            return hit, False
        self.misses += 1
        if body is None:
            raise WireError("UnknownProgram", f"this sidecar does not hold program {hash_}; send it again with `program`")
        entry = lower(body, self.objects, self.runs)
        self.add(entry)
        return entry, True

    def stats(self) -> dict[str, int]:
        return {
            "programs": len(self._entries),
            "hits": self.hits,
            "misses": self.misses,
            "lowered": self.lowered,
            "evicted": self.evicted,
            "traces": sum(e.traces for e in self._entries.values()),
        }


def register(server: Any) -> None:
    """Add `run` and `program_stats` to a Server's ops."""
    cache = ProgramCache(objects=server, runs=server.runs)
    server.programs = cache

    def op_run(env: dict[str, Any]) -> Any:
        entry, lowered = cache.resolve(env.get("hash"), env.get("program"))
        args = env.get("args") or []
        if not isinstance(args, list):
            raise WireError("ProtocolError", "run needs `args` as a list")
        before = entry.traces
        fetch = bool(env.get("fetch"))
        values = server.materialize(args)

        def reply(outs: Any) -> dict[str, Any]:
            return {"outputs": server.export(list(outs), fetch), "lowered": lowered, "traced": entry.traces > before}

        if entry.has_callbacks:
            # Runs on the worker thread so that its events flow while it runs;
            # the reply is built on the I/O thread after its last event batch.
            def work(run: RunEvents) -> Any:
                outs = jax.block_until_ready(entry(values, run.token))
                jax.effects_barrier()
                return outs

            return server.start_worker_run(env.get("id"), work, reply)
        return reply(jax.block_until_ready(entry(values)))

    def op_program_stats(env: dict[str, Any]) -> Any:
        return cache.stats()

    server.ops["run"] = op_run
    server.ops["program_stats"] = op_program_stats
    if os.environ.get(BENCH_ENV) == "1":
        register_bench(server)


# --- benchmark-only ops ---------------------------------------------------------------------

BENCH_ENV = "JAXBRIDGE_BENCH_OPS"
BENCH_OPS = ("bench_lerax_scan", "bench_module_scan")
MAX_BENCH_STEPS = 10_000_000
MAX_BENCH_REPEATS = 100


def bench_mlp_body(c: dict[str, Any], _x: Any) -> tuple[dict[str, Any], Any]:
    """The scan body `bench/sections/trace.ts` writes in TypeScript, op for op."""
    z = jnp.tanh(jnp.add(jnp.matmul(c["h"], c["w1"]), c["b1"]))
    h = jnp.tanh(jnp.add(jnp.matmul(z, c["w2"]), c["b2"]))
    return {**c, "h": h}, jnp.sum(h)


def register_bench(server: Any) -> None:
    """`bench_lerax_scan` and `bench_module_scan`: the benchmark's Python side,
    timed inside the sidecar process. Only for `npm run bench`: a sidecar registers it when started with
    JAXBRIDGE_BENCH_OPS=1 in its environment, never by default."""

    def op_bench_lerax_scan(env: dict[str, Any]) -> Any:
        import equinox as eqx
        import lerax.utils as lu

        carry = server.materialize(env.get("carry"))
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
        return {"seconds": seconds, **server.export({"h": final["h"], "ys": ys}, True)}

    server.ops["bench_lerax_scan"] = op_bench_lerax_scan

    def op_bench_module_scan(env: dict[str, Any]) -> Any:
        """`model(x)` for each row of `xs` in a jitted lax.scan: the native side of bench/sections/pycall.ts."""
        import equinox as eqx

        model = server.materialize(env.get("model"))
        xs = jnp.asarray(server.materialize(env.get("xs")))
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
        return {"seconds": seconds, "ys": server.export(ys, True)}

    server.ops["bench_module_scan"] = op_bench_module_scan
