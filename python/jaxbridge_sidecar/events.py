"""Callback events: a program with `callback` equations runs on a worker
thread; its `jax.debug.callback`s append events to a `RunEvents` sink, which
batches them (by count and by time) and hands each batch to the I/O thread
through a queue plus an inproc PAIR wake-up. The I/O thread is the only user
of the ROUTER socket.

Routing: XLA calls host functions on its own threads, so no thread-local or
global can say which run an event belongs to. Each run gets a token, which
the run passes to the compiled program as an operand; every callback hands
it back to `RunTable.deliver`, which finds the run's sink in the table the
server owns. A cached program therefore serves any run, and several runs
could execute at once without their events mixing.

Backpressure: the client acks batches (cumulatively: `ack` of seq n covers
every batch <= n). A callback thread that would put more than `window`
un-acked batches on the wire blocks until an ack arrives, so the sidecar's
memory stays bounded when TypeScript is slow.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np
import zmq

BATCH_MAX_EVENTS = 1024
BATCH_MAX_SECONDS = 0.005
WINDOW = 8

_pair_ids = itertools.count()


class RunEvents:
    """The event sink of one run (the `call` its events name; `token` the
    operand its program's callbacks hand back)."""

    def __init__(self, token: int, call_id: Any, ident: Any, post: Callable[[tuple], None], *, batch_max: int | None = None, batch_seconds: float | None = None, window: int | None = None):
        self.token = token
        self.call_id = call_id
        self.ident = ident
        self._post = post
        # Read at construction so tests can change the module's values.
        self.batch_max = batch_max or BATCH_MAX_EVENTS
        self.batch_seconds = batch_seconds or BATCH_MAX_SECONDS
        self.window = window or WINDOW
        self._cv = threading.Condition()
        self._batch: list[list[Any]] = []
        self._started = 0.0
        self.seq = 0  # the next batch's number
        self.acked = -1  # the highest batch number the client acked
        self.aborted = False
        self.events = 0
        self.batches = 0
        self.blocked_seconds = 0.0

    # --- callback threads -----------------------------------------------------
    def emit(self, cb_id: int, arrays: list[Any]) -> None:
        with self._cv:
            if self.aborted:
                return
            if not self._batch:
                self._started = time.monotonic()
            self._batch.append([cb_id, arrays])
            self.events += 1
            if len(self._batch) >= self.batch_max:
                self._flush_locked(block=True)

    def _flush_locked(self, block: bool) -> bool:
        if not self._batch:
            return True
        if self.seq - 1 - self.acked >= self.window:
            if not block:
                return False
            t0 = time.monotonic()
            while not self.aborted and self.seq - 1 - self.acked >= self.window:
                self._cv.wait(0.25)
            self.blocked_seconds += time.monotonic() - t0
            if not self._batch:
                return True  # another thread flushed it while we waited
        if self.aborted:
            self._batch = []
            return True
        events, self._batch = self._batch, []
        self._post(("events", self, self.seq, events))
        self.seq += 1
        self.batches += 1
        return True

    def finish(self) -> None:
        """The run is over (worker thread): send what is left, waiting for acks if needed."""
        with self._cv:
            self._flush_locked(block=True)

    # --- the I/O thread -------------------------------------------------------
    def flush_stale(self) -> None:
        """Send a batch older than `batch_seconds`, unless the window is full (never blocks)."""
        with self._cv:
            if self._batch and time.monotonic() - self._started >= self.batch_seconds:
                self._flush_locked(block=False)

    def ack(self, seq: int) -> None:
        with self._cv:
            if seq > self.acked:
                self.acked = seq
                self._cv.notify_all()

    def abort(self) -> None:
        """The client is gone (a send failed): drop events and never block again."""
        with self._cv:
            self.aborted = True
            self._batch = []
            self._cv.notify_all()


# Tokens are int32 operands; 0 names no run (a program called outside one).
NO_RUN = 0
_MAX_TOKEN = 2**31 - 1


class RunTable:
    """The runs that may receive callback events, by token."""

    def __init__(self) -> None:
        self._runs: dict[int, RunEvents] = {}
        self._next = itertools.count(1)

    def open(self, call_id: Any, ident: Any, post: Callable[[tuple], None]) -> RunEvents:
        token = NO_RUN
        while token == NO_RUN or token in self._runs:
            token = next(self._next) % _MAX_TOKEN
        run = RunEvents(token, call_id, ident, post)
        self._runs[token] = run
        return run

    def close(self, run: RunEvents) -> None:
        self._runs.pop(run.token, None)

    def find(self, call_id: Any) -> RunEvents | None:
        """The open run of request `call_id` (acks name the call, not the token)."""
        return next((r for r in self._runs.values() if r.call_id == call_id), None)

    def __iter__(self) -> Iterator[RunEvents]:
        return iter(list(self._runs.values()))

    def deliver(self, callback: int, token: Any, *arrays: Any) -> None:
        """The host function of every `callback` equation (on an XLA thread).
        Events of a token with no open run are dropped: a program called
        outside a run, or a run that already ended."""
        run = self._runs.get(int(token))
        if run is not None:
            run.emit(callback, [np.asarray(a) for a in arrays])


class SessionRuns:
    """The runs one session has open, by the call (request id) that started
    them: acks name the call, and call ids are only unique per session."""

    def __init__(self, table: RunTable):
        self._table = table
        self._by_call: dict[Any, RunEvents] = {}

    def open(self, call_id: Any, ident: Any, post: Callable[[tuple], None]) -> RunEvents:
        run = self._table.open(call_id, ident, post)
        self._by_call[call_id] = run
        return run

    def close(self, run: RunEvents) -> None:
        self._table.close(run)
        if self._by_call.get(run.call_id) is run:
            del self._by_call[run.call_id]

    def find(self, call_id: Any) -> RunEvents | None:
        return self._by_call.get(call_id)

    def abort_all(self) -> None:
        """The session ended: its runs drop their events and never wait for an ack again."""
        for run in list(self._by_call.values()):
            run.abort()

    def __iter__(self) -> Iterator[RunEvents]:
        return iter(list(self._by_call.values()))

    def __len__(self) -> int:
        return len(self._by_call)


class Mailbox:
    """Worker and callback threads → the I/O thread: a queue and a PAIR wake-up."""

    def __init__(self, ctx: zmq.Context):
        addr = f"inproc://jaxbridge-wake-{id(self)}-{next(_pair_ids)}"
        self.rx = ctx.socket(zmq.PAIR)
        self.rx.setsockopt(zmq.LINGER, 0)
        self.rx.bind(addr)
        self._tx = ctx.socket(zmq.PAIR)
        self._tx.setsockopt(zmq.LINGER, 0)
        self._tx.connect(addr)
        self._tx_lock = threading.Lock()
        self.q: queue.SimpleQueue[tuple] = queue.SimpleQueue()

    def post(self, item: tuple) -> None:
        self.q.put(item)
        with self._tx_lock:
            if self._tx.closed:
                return  # the server stopped
            try:
                self._tx.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                pass  # wake-ups are already pending; the item is in the queue

    def drain_wakeups(self) -> None:
        while True:
            try:
                self.rx.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def take(self) -> list[tuple]:
        items = []
        while True:
            try:
                items.append(self.q.get_nowait())
            except queue.Empty:
                return items

    def close(self) -> None:
        with self._tx_lock:
            self._tx.close(0)
        self.rx.close(0)
