"""chunking.py: callback events coalesced inside scans. The oracle is the
same scan written in Python JAX with a per-step ordered
`jax.debug.callback`: the events the chunked program emits must equal the
ones JAX's callback sees, in order and bit for bit (dtype, shape, bytes),
and the scan's outputs must equal JAX's. Cases are generated: lengths that
are not a multiple of the chunk, reverse scans, nested scans, several
arrays per event, dtypes."""

from __future__ import annotations

import random
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbridge_sidecar.events import RunTable
from jaxbridge_sidecar.program import lower
from jaxbridge_sidecar.program.chunking import MAX_CHUNK_BYTES, plan
from jaxbridge_sidecar.program.decode import decode_program

from programs_support import Builder, aval

DTYPES = ["float32", "int32", "uint8", "float16", "bfloat16", "float64", "int64", "bool"]


def _combine(dtype: str) -> str:
    return "or" if dtype == "bool" else "add"


def case_program(L: int, chunk: int, reverse: bool, dtype: str, inner: int, width: int, live: bool = False) -> bytes:
    """carry c: d[width], xs x: d[L, width]. Step: cb0(c, x); c = c + x;
    [scan `inner` steps over carry e = c with const x: cb2(e); e = e + x; c = e];
    cb1(c); ys = c. `inner` 0: no nested scan. `live`: cb1 opts out (chunk 1)."""
    t = aval(dtype, width)
    body = Builder(t, t)  # carry, x
    op = _combine(dtype)
    body.eq("callback", [0, 1], {"callback": 0, "ordered": True, "partitioned": False, "chunk": chunk}, [])
    (c,) = body.eq(op, [0, 1], {}, [t])
    if inner:
        ib = Builder(t, t)  # const x, carry e
        ib.eq("callback", [1], {"callback": 2, "ordered": True, "partitioned": False, "chunk": chunk}, [])
        (e,) = ib.eq(op, [1, 0], {}, [t])
        (c,) = body.eq(
            "scan", [1, c],
            {"body": ib.sub([e]), "length": inner, "reverse": False, "unroll": 1, "num_consts": 1, "num_carry": 1, "_split_transpose": False},
            [t],
        )
    body.eq("callback", [c], {"callback": 1, "ordered": True, "partitioned": False, "chunk": 1 if live else chunk}, [])
    b = Builder(t, aval(dtype, L, width))
    out = b.eq(
        "scan", [0, 1],
        {"body": body.sub([c, c]), "length": L, "reverse": reverse, "unroll": 1, "num_consts": 0, "num_carry": 1, "_split_transpose": False},
        [t, aval(dtype, L, width)],
    )
    return b.bytes(out)


def oracle(c0: np.ndarray, xs: np.ndarray, L: int, reverse: bool, dtype: str, inner: int) -> tuple[list, list]:
    seen: list[tuple[int, list[np.ndarray]]] = []

    def rec(tag):
        return lambda *a: seen.append((tag, [np.array(v) for v in a]))

    comb = (lambda a, b: a | b) if dtype == "bool" else (lambda a, b: a + b)

    def step(c, x):
        jax.debug.callback(rec(0), c, x, ordered=True)
        c = comb(c, x)
        if inner:
            def ist(e, _):
                jax.debug.callback(rec(2), e, ordered=True)
                return comb(e, x), None

            c, _ = jax.lax.scan(ist, c, None, length=inner)
        jax.debug.callback(rec(1), c, ordered=True)
        return c, c

    out = jax.jit(lambda c, xs: jax.lax.scan(step, c, xs, length=L, reverse=reverse))(c0, xs)
    jax.block_until_ready(out)
    jax.effects_barrier()
    return seen, [np.asarray(o) for o in out]


def run_program(data: bytes, args: list[np.ndarray]) -> tuple[list, list, Any]:
    runs = RunTable()
    entry = lower(data, runs=runs)
    got: list = []
    holder: dict[str, Any] = {}

    def post(item: tuple) -> None:
        got.extend(item[3])
        holder["run"].ack(item[2])

    run = runs.open(1, b"t", post)
    holder["run"] = run
    out = entry(args, run.token)
    jax.block_until_ready(out)
    jax.effects_barrier()
    run.finish()
    runs.close(run)
    return expand(got), [np.asarray(o) for o in out], entry


def expand(entries: list) -> list[tuple[int, list[np.ndarray]]]:
    """Batch entries as the client reads them: one event per `[callback,
    arrays]`; a chunk entry's `order` names each event's callback, whose
    next row it takes."""
    out = []
    for e in entries:
        if isinstance(e, dict):
            args = {cb: arrays for cb, arrays in e["args"]}
            assert e["order"].dtype == np.int32
            seen = {cb: 0 for cb in args}
            for cb in e["order"].tolist():
                out.append((cb, [np.asarray(a[seen[cb]]) for a in args[cb]]))
                seen[cb] += 1
            assert all(n == len(a) for cb, n in seen.items() for a in args[cb]), "rows left over in a chunk"
        else:
            out.append((e[0], [np.asarray(a) for a in e[1]]))
    return out


def values(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype in ("float16", "bfloat16", "float32", "float64"):
        return np.asarray(jnp.asarray(rng.standard_normal(shape), dtype))
    return rng.integers(0, 100, shape).astype(dtype)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def cases(n: int, seed: int) -> list[tuple]:
    r = random.Random(seed)
    out = []
    for _ in range(n):
        chunk = r.choice([2, 3, 7, 16, 64])
        inner = r.choice([0, 0, 2, 5])
        L = r.randint(1, 150)
        out.append((L, chunk, r.random() < 0.5, r.choice(DTYPES), inner, r.choice([1, 3])))
    return out


@pytest.mark.parametrize("L,chunk,reverse,dtype,inner,width", cases(24, 15))
def test_chunked_events_equal_jax_per_step_callbacks_bit_for_bit(L, chunk, reverse, dtype, inner, width):
    rng = np.random.default_rng(L * 1000 + chunk)
    c0 = values(rng, dtype, (width,))
    xs = values(rng, dtype, (L, width))
    data = case_program(L, chunk, reverse, dtype, inner, width)
    got, outs, entry = run_program(data, [c0, xs])
    want, want_outs = oracle(c0, xs, L, reverse, dtype, inner)
    assert [cb for cb, _ in got] == [cb for cb, _ in want]
    for k, ((_, a), (_, b)) in enumerate(zip(got, want)):
        assert len(a) == len(b) and all(same(u, v) for u, v in zip(a, b)), f"event {k}: {a} != {b}"
    assert all(same(u, v) for u, v in zip(outs, want_outs)), (outs, want_outs)
    events_per_step = 2 + inner
    steps = min(chunk // events_per_step, L)
    if steps >= 2:
        assert list(entry.chunks.values()) == [steps]
    elif inner and min(chunk, inner) >= 2:
        # The outer step makes too many events for one chunk: the nested scan is chunked instead?
        # No: the outer body's own callbacks are live, so only the nested scan could be, and it is.
        assert list(entry.chunks.values()) == [min(chunk, inner)]
    else:
        assert entry.chunks == {}


def test_a_live_callback_keeps_its_scan_unchunked_and_in_order():
    rng = np.random.default_rng(3)
    c0, xs = values(rng, "float32", (2,)), values(rng, "float32", (40, 2))
    got, _, entry = run_program(case_program(40, 16, False, "float32", 0, 2, live=True), [c0, xs])
    want, _ = oracle(c0, xs, 40, False, "float32", 0)
    assert entry.chunks == {}
    assert [cb for cb, _ in got] == [cb for cb, _ in want]
    assert all(same(u, v) for (_, a), (_, b) in zip(got, want) for u, v in zip(a, b))


def test_a_callback_in_a_cond_or_a_while_keeps_the_scan_unchunked():
    t = aval("float32")
    br = Builder(t)
    br.eq("callback", [0], {"callback": 0, "ordered": True, "partitioned": False, "chunk": 64}, [])
    quiet = Builder(t)
    body = Builder(t)
    (p,) = body.eq("gt", [0, 0], {}, [aval("bool")])
    body.eq("cond", [p, 0], {"branches": [quiet.sub([]), br.sub([])]}, [])
    b = Builder(t)
    out = b.eq("scan", [0], {"body": body.sub([0]), "length": 10, "reverse": False, "unroll": 1, "num_consts": 0, "num_carry": 1, "_split_transpose": False}, [t])
    assert plan(decode_program(b.bytes(out))) == {}


def test_the_chunk_is_capped_by_the_bytes_it_holds():
    n = MAX_CHUNK_BYTES // (4 * 1024 * 1024)  # steps of 4 MiB that fit
    t = aval("float32", 1024, 1024)
    body = Builder(t)
    body.eq("callback", [0], {"callback": 0, "ordered": True, "partitioned": False, "chunk": 10_000}, [])
    b = Builder(t)
    out = b.eq("scan", [0], {"body": body.sub([0]), "length": 1000, "reverse": False, "unroll": 1, "num_consts": 0, "num_carry": 1, "_split_transpose": False}, [t])
    assert list(plan(decode_program(b.bytes(out))).values()) == [n]


def test_a_chunk_of_zero_is_refused_naming_the_callback():
    t = aval("float32")
    b = Builder(t)
    b.eq("callback", [0], {"callback": 0, "ordered": True, "partitioned": False, "chunk": 0}, [])
    with pytest.raises(Exception, match="callback 0: chunk must be >= 1"):
        lower(b.bytes([0]), runs=RunTable())
