"""Callback events: a program with `callback` equations runs on a worker
thread; its `jax.debug.callback`s append events to a `RunEvents` sink, which
batches them (by count and by time) and hands each batch to the I/O thread
through a queue plus an inproc PAIR wake-up. The I/O thread is the only user
of the ROUTER socket.

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
from typing import Any, Callable

import zmq

BATCH_MAX_EVENTS = 1024
BATCH_MAX_SECONDS = 0.005
WINDOW = 8

_pair_ids = itertools.count()


class RunEvents:
    """The event sink of one run (the `call` its events name)."""

    def __init__(self, call_id: Any, ident: Any, post: Callable[[tuple], None], *, batch_max: int | None = None, batch_seconds: float | None = None, window: int | None = None):
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
