"""Callback events coalesced inside scans (issue 15, item 4).

A per-step `jax.debug.callback` costs a host round trip per step (tens of
microseconds: XLA stops, Python runs, XLA resumes). In a scan whose
callbacks are result-less, the program can instead keep each step's
callback arguments as outputs of the step and call the host once per
chunk of steps with all of them stacked: the scan becomes an outer scan
over chunks of an inner scan over steps (plus a shorter inner scan for the
steps left over), and after each inner scan one host call hands the run
the whole chunk as one batch entry (`ChunkLayout`, docs/protocol.md
"Callback events"), which the client expands into the events in the order
the steps ran them. The events, their arrays and their order are those of
the unchunked program; only the moment they reach the host moves, by at
most one chunk.

Which scans (`plan`): a scan is chunked when every callback in its body,
nested scans included, is one the chunk can hold: a `callback` equation
with `chunk` >= 2 and not `partitioned`, directly in the body or in a scan
inside it (a nested scan's events are stacked whole into the outer step).
A callback in a `cond` branch, a `while` body or a transformation fires a
number of times only the running program knows, so a scan holding one is
not chunked (its own inner scans still may be). Nothing is chunked inside
a transformation (vmap would call the chunk's host function once per batch
element, reordering the events). The chunk's steps are the smallest
`chunk` of its callbacks divided by the events one step makes, capped so
the stacked arguments stay under `MAX_CHUNK_BYTES`; under 2, the scan is
left as it is and its body is planned instead.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .ir import Aval, Lit, ProgramError, Sub, has_callbacks

# The stacked callback arguments one chunk may hold on the device.
MAX_CHUNK_BYTES = 64 << 20

# Control flow whose bodies may hold a chunked scan of their own (a scan's
# body too, when the scan itself is not chunked). Transformation bodies may
# not: JAX transforms the host call with them.
_PLAIN_CONTROL = ("scan", "cond", "while")


def _subs(e: Any) -> list[Sub]:
    out: list[Sub] = []
    for v in e.params.values():
        if isinstance(v, Sub):
            out.append(v)
        elif isinstance(v, tuple):
            out.extend(b for b in v if isinstance(b, Sub))
    return out


def _nbytes(a: Aval) -> int:
    return math.prod(a.shape) * a.dtype.itemsize


@dataclasses.dataclass(frozen=True)
class _Collectable:
    events: int  # callback events one step of the body makes
    nbytes: int  # bytes of their arguments
    chunk: int  # the smallest `chunk` of those callbacks


def _collectable(sub: Sub) -> _Collectable | None:
    """What one step of `sub` emits, if every callback in it can be held back; else None."""
    avals = list(sub.inputs)
    events = nbytes = 0
    chunk = math.inf
    for e in sub.eqns:
        if e.prim == "callback":
            if e.params["chunk"] < 2 or e.params["partitioned"]:
                return None
            events += 1
            nbytes += sum(_nbytes(o.aval if isinstance(o, Lit) else avals[o]) for o in e.inputs)
            chunk = min(chunk, e.params["chunk"])
        elif e.prim == "scan" and has_callbacks(e.params["body"]):
            inner = _collectable(e.params["body"])
            if inner is None:
                return None
            n = e.params["length"]
            events += n * inner.events
            nbytes += n * inner.nbytes
            chunk = min(chunk, inner.chunk)
        elif any(has_callbacks(s) for s in _subs(e)):
            return None
        avals.extend(e.outputs)
    return _Collectable(events, nbytes, int(chunk) if events else 0)


def plan(program: Sub) -> dict[int, int]:
    """The scans to chunk: `id(body)` -> steps per chunk (the Sub objects live as long as the program)."""
    out: dict[int, int] = {}
    _plan(program, True, out)
    return out


def _plan(sub: Sub, enabled: bool, out: dict[int, int]) -> None:
    for e in sub.eqns:
        if e.prim == "callback" and e.params["chunk"] < 1:
            raise ProgramError(f"callback {e.params['callback']}: chunk must be >= 1 (1 delivers each event as it happens), got {e.params['chunk']}")
        subs = _subs(e)
        if not subs:
            continue
        if e.prim == "scan" and enabled:
            body = e.params["body"]
            c = _collectable(body)
            if c is not None and c.events > 0:
                steps = min(c.chunk // c.events, MAX_CHUNK_BYTES // max(c.nbytes, 1), e.params["length"])
                if steps >= 2:
                    out[id(body)] = steps
                    _check(body)
                    continue
        for s in subs:
            _plan(s, enabled and e.prim in _PLAIN_CONTROL, out)


def _check(sub: Sub) -> None:
    """Inside a chunked scan nothing is planned, but chunks are still checked."""
    for e in sub.eqns:
        if e.prim == "callback" and e.params["chunk"] < 1:
            raise ProgramError(f"callback {e.params['callback']}: chunk must be >= 1, got {e.params['chunk']}")
        for s in _subs(e):
            _check(s)


# --- lowering -------------------------------------------------------------------------
#
# A group is what one step emits, in order: ("cb", callback, ordered, first, count)
# names `count` arrays of the collected list starting at `first`; ("scan",
# length, reverse, groups) a nested scan whose arrays carry a leading axis
# of `length` (indexed by step, so a reverse scan's first event is at
# length - 1).

Step = Callable[[Any], Callable[[Any, Any], tuple[list[Any], list[Any]]]]


class Collector:
    """The rule context of a body whose callback events become outputs of
    each step (`arrays`, described by `groups`) instead of host calls.
    Everything else is its parent's."""

    def __init__(self, parent: Any):
        self.parent = parent
        self.groups: list[tuple] = []
        self.arrays: list[Any] = []

    def evaluate(self, sub: Sub, args: list[Any]) -> list[Any]:
        return self.parent.evaluate_in(sub, args, self)

    def callback(self, callback: int, arrays: list[Any], *, ordered: bool, partitioned: bool) -> None:
        self.groups.append(("cb", callback, ordered, len(self.arrays), len(arrays)))
        self.arrays.extend(jnp.asarray(a) for a in arrays)

    def scan(self, body: Sub, step: Step, init: list[Any], xs: list[Any], p: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        inner = Collector(self.parent)
        carry, ys, stacked = _collecting_scan(inner, step, init, xs, p, p["length"])
        first = len(self.arrays)
        self.groups.append(("scan", p["length"], p["reverse"], _shift(inner.groups, first)))
        self.arrays.extend(stacked)
        return carry, ys

    def link(self, link: int, value: Any) -> None:
        self.parent.link(link, value)

    def linked(self, link: int) -> Any:
        return self.parent.linked(link)


def _shift(groups: list[tuple], by: int) -> list[tuple]:
    return [(g[0], g[1], g[2], g[3] + by, g[4]) if g[0] == "cb" else (g[0], g[1], g[2], _shift(g[3], by)) for g in groups]


def _collecting_scan(coll: Collector, step: Step, init: list[Any], xs: list[Any], p: dict[str, Any], length: int) -> tuple[list[Any], list[Any], list[Any]]:
    """lax.scan of `length` steps whose ys are followed by the step's callback arguments."""
    counts: list[int] = []

    def f(carry: Any, x: Any) -> tuple[Any, Any]:
        coll.groups, coll.arrays = [], []
        c, ys = step(coll)(carry, x)
        counts.append(len(ys))
        return c, [*ys, *coll.arrays]

    carry, out = lax.scan(f, init, xs, length=length, reverse=p["reverse"], unroll=max(1, min(p["unroll"], length)), _split_transpose=p["_split_transpose"])
    n = counts[-1]
    return list(carry), list(out[:n]), list(out[n:])


def chunked_scan(ctx: Any, steps: int, step: Step, init: list[Any], xs: list[Any], p: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The scan as chunks of `steps` steps, one host call per chunk (see the module doc)."""
    length, reverse = p["length"], p["reverse"]
    q, r = divmod(length, steps)

    def chunk(carry: list[Any], xs_c: list[Any], n: int) -> tuple[list[Any], list[Any]]:
        coll = Collector(ctx)
        carry, ys, stacked = _collecting_scan(coll, step, carry, xs_c, p, n)
        ctx.deliver_chunk(("scan", n, reverse, coll.groups), stacked)
        return carry, ys

    # Forward: q chunks over [0, q*steps), then the r left over. Reverse runs
    # from the end: q chunks over [r, length) backwards, then [0, r).
    lo, hi = (r, length) if reverse else (0, q * steps)
    main = [x[lo:hi].reshape((q, steps, *x.shape[1:])) for x in xs]
    rest = [x[:r] if reverse else x[q * steps :] for x in xs]
    carry, ys_main = lax.scan(lambda c, xc: chunk(c, xc, steps), list(init), main, length=q, reverse=reverse)
    ys_main = [y.reshape((q * steps, *y.shape[2:])) for y in ys_main]
    if r == 0:
        return list(carry), ys_main
    carry, ys_rest = chunk(list(carry), rest, r)
    ys = [jnp.concatenate([b, a] if reverse else [a, b]) for a, b in zip(ys_main, ys_rest)]
    return carry, ys


class ChunkLayout:
    """How a chunk's stacked arrays become one batch entry on the host:
    `{"order": int32[events], "args": [[callback, [array, ...]], ...]}`,
    where `order` lists the callback of each event in the order the steps
    ran them and each callback's arrays hold its events' arguments as rows,
    in that order (the k-th event of callback c is row k of c's arrays).
    The order is fixed by the program, so it is computed once per chunk
    length; a chunk then costs one row gather per callback, not a Python
    step per event."""

    def __init__(self, group: tuple):
        self.group = group
        self.callbacks: list[tuple[int, int, int, int]] = []  # (callback, first, count, depth)
        self._visit(group, 0)
        order: list[int] = []
        rows: dict[int, list[int]] = {cb: [] for cb, *_ in self.callbacks}
        self._walk(group, (), (), order, rows)
        self.count = len(order)
        self.order = np.asarray(order, np.int32)
        # Row r of callback c's arrays, flattened over their leading (step) axes: None where already in order.
        self.rows = {cb: (None if r == list(range(len(r))) else np.asarray(r, np.intp)) for cb, r in rows.items()}

    def _visit(self, group: tuple, depth: int) -> None:
        for g in group[3]:
            if g[0] == "cb":
                self.callbacks.append((g[1], g[3], g[4], depth + 1))
            else:
                self._visit(g, depth + 1)

    def _walk(self, group: tuple, at: tuple[int, ...], dims: tuple[int, ...], order: list[int], rows: dict[int, list[int]]) -> None:
        _, n, reverse, groups = group
        dims = dims + (n,)
        for t in range(n):
            i = at + (n - 1 - t if reverse else t,)
            for g in groups:
                if g[0] == "cb":
                    order.append(g[1])
                    rows[g[1]].append(int(np.ravel_multi_index(i, dims)))
                else:
                    self._walk(g, i, dims, order, rows)

    def entry(self, arrays: list[np.ndarray]) -> dict[str, Any]:
        args = []
        for cb, first, count, depth in self.callbacks:
            perm = self.rows[cb]
            out = []
            for a in arrays[first : first + count]:
                flat = a.reshape((-1, *a.shape[depth:]))
                # A copy either way: the entry outlives the host call, and what
                # XLA hands a callback may alias buffers it reuses afterwards.
                out.append(np.array(flat) if perm is None else flat[perm])
            args.append([cb, out])
        return {"order": self.order, "args": args}


def any_ordered(group: tuple) -> bool:
    return any(g[2] if g[0] == "cb" else any_ordered(g) for g in group[3])
