"""The sidecar: one ROUTER loop that decodes requests, dispatches them to
the ops (ops/, one module per family) and replies, and a worker thread for
runs with callbacks. Every failure becomes an error reply; the loop itself
only stops on shutdown or when its parent process dies."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import sys
import threading
from collections import deque
from typing import Any, Callable

import jax
import zmq

from . import protocol, remote
from .allowlist import DEFAULT_NAMES, DEFAULT_NAMESPACES, AllowList, NotAllowed
from .auth import DEFAULT_MAX_RECV_FRAME_BYTES, CurveServerKeys, secure_socket
from .events import Mailbox, RunEvents, RunTable
from .handles import HandleTable
from .ops import arrays, arrow, bench, calls, events, programs, serialization, session
from .ops.host import NO_REPLY, Op
from .program.cache import ProgramCache
from .protocol import WireError
from .remote_errors import error_body

log = logging.getLogger("jaxbridge.sidecar")

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024**3

# The dispatch table: every op a sidecar serves, by family. docs/protocol.md
# documents exactly these, and `python -m jaxbridge_sidecar ops` prints them.
FAMILIES = (session, arrays, calls, programs, serialization, arrow, events)


def dispatch_table(families: tuple[Any, ...]) -> dict[str, Op]:
    table: dict[str, Op] = {}
    for family in families:
        for name, fn in family.OPS.items():
            if name in table:
                raise AssertionError(f"op {name!r} is defined by two families")
            table[name] = fn
    return table


OPS = dispatch_table(FAMILIES)

# Requests that wait (in arrival order) while a run with callbacks executes.
SERIALIZED_OPS = frozenset({"run", "call", "call_method", "pycall_shapes"})


def serving_ops() -> list[dict[str, str]]:
    """The dispatch table as `ops` prints it: each op's name and family (its
    ops/ module), sorted by name. Benchmark ops are never part of it."""
    return [{"name": name, "family": OPS[name].__module__.rsplit(".", 1)[-1]} for name in sorted(OPS)]


@dataclasses.dataclass
class ServerConfig:
    endpoint: str
    parent_pid: int | None = None
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES
    names: tuple[str, ...] = DEFAULT_NAMES
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # CURVE: the sidecar's key pair and the client keys it accepts (see auth.py).
    # Without it only loopback and ipc:// binds are allowed.
    curve: CurveServerKeys | None = None
    # ZMQ_MAXMSGSIZE: the largest single frame accepted (see auth.py for the value).
    max_recv_frame_bytes: int = DEFAULT_MAX_RECV_FRAME_BYTES


@dataclasses.dataclass
class WorkerRun:
    """The run with callbacks executing on the worker thread, and how its reply is built."""

    run: RunEvents
    finish: Callable[[Any], Any]


class Server:
    """The sidecar's state and its I/O loop; ops see it as an `ops.host.Host`."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.allow = AllowList(config.namespaces, config.names)
        self.handles = HandleTable()
        self.structures = remote.StructureTable()
        self.runs = RunTable()
        self.programs = ProgramCache(objects=self, runs=self.runs)
        self.instance = secrets.token_hex(8)
        self.ops: dict[str, Op] = {**OPS, **(bench.OPS if bench.enabled() else {})}
        self.requests = 0
        self.event_batches = 0
        self.events_sent = 0
        self._stop = False
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        # A reply to a vanished peer raises instead of being dropped silently.
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # The client bounds requests in flight, so unlimited queues stay bounded.
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 0)
        # Runs with callbacks: one at a time on a worker thread (see serve_forever).
        self.mailbox = Mailbox(self.ctx)
        self.active: WorkerRun | None = None
        self.waiting: deque[list[Any]] = deque()
        self._ident: Any = None

    # --- lifecycle -----------------------------------------------------------
    def bind(self) -> str:
        """Bind the endpoint after applying the binding rule, the frame limit and
        CURVE (auth.py); raises auth.AuthConfigError for a bind it refuses."""
        self.authenticator = secure_socket(self.sock, self.config.endpoint, self.config.curve, self.config.max_recv_frame_bytes)
        try:
            self.sock.bind(self.config.endpoint)
        except BaseException:
            self.close_auth()
            raise
        return self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def close_auth(self) -> None:
        """Stop the ZAP thread, if CURVE started one (after the socket is closed)."""
        auth, self.authenticator = getattr(self, "authenticator", None), None
        if auth is not None:
            auth.stop()

    def stop(self, *_: Any) -> None:
        self._stop = True

    def close(self) -> None:
        """Release the sockets of a server that never served (serve_forever closes its own)."""
        self.sock.close(0)
        self.mailbox.close()

    def _parent_alive(self) -> bool:
        pid = self.config.parent_pid
        return pid is None or os.getppid() == pid

    def serve_forever(self) -> None:
        # A blocking receive with a timeout (rather than poll + non-blocking
        # reads) saves a syscall and an exception per request: measured ~2x
        # on the small-message round trip. The timeout bounds how late we
        # notice a dead parent or a stop request. Only while a run with
        # callbacks executes on the worker thread does the loop poll the
        # socket and the mailbox's wake-up together (and flush stale batches).
        self.sock.setsockopt(zmq.RCVTIMEO, 250)
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.mailbox.rx, zmq.POLLIN)
        while not self._stop:
            if self.active is None:
                try:
                    msg = self.sock.recv_multipart(copy=False)
                except zmq.Again:
                    msg = None
                if msg is not None:
                    self._serve_one(msg)
            else:
                ready = dict(poller.poll(timeout=2))
                if self.mailbox.rx in ready:
                    self.mailbox.drain_wakeups()
                self._deliver()
                if self.sock in ready:
                    for _ in range(64):
                        try:
                            msg = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._serve_one(msg)
                for run in self.runs:
                    run.flush_stale()
            if not self._parent_alive():
                log.warning("parent process %s is gone; exiting", self.config.parent_pid)
                break
        for run in self.runs:
            run.abort()
        self.sock.close(0)
        self.mailbox.close()

    def _send(self, ident: Any, frames: list[Any]) -> bool:
        try:
            self.sock.send_multipart([ident, *frames], copy=False)
            return True
        except zmq.ZMQError as e:
            # EHOSTUNREACH: the peer left; nothing to deliver to.
            log.warning("reply dropped: %s", e)
            return False

    def _serve_one(self, msg: list[Any]) -> None:
        ident, frames = msg[0], msg[1:]
        if self.active is not None and protocol.peek(frames, "op") in SERIALIZED_OPS:
            self.waiting.append(msg)  # FIFO: runs and calls wait for the worker run
            return
        self._ident = ident
        reply = self.handle(frames)
        if reply is not None:
            self._send(ident, reply)

    # --- dispatch ------------------------------------------------------------
    def handle(self, frames: list[Any]) -> list[Any] | None:
        """The reply frames to one request, or None when the op replies later (or never)."""
        self.requests += 1
        rid: Any = None
        try:
            try:
                env = protocol.decode(frames, self.config.max_message_bytes)
            except Exception:
                rid = protocol.peek(frames, "id")
                raise
            rid = env.get("id")
            op = env.get("op")
            fn = self.ops.get(op) if isinstance(op, str) else None
            if fn is None:
                raise WireError("UnknownOp", f"unknown op {op!r}; this sidecar speaks protocol {protocol.PROTOCOL_VERSION} with ops {', '.join(sorted(self.ops))}")
            try:
                result = fn(self, env)
                if result is NO_REPLY:
                    return None
            finally:
                # Frees ride on any request (see docs/protocol.md) so that a
                # loop that disposes as it goes sends no extra messages.
                piggy = env.get("free")
                if isinstance(piggy, list):
                    self.handles.free(piggy)
            return protocol.encode({"id": rid, "ok": True, "result": result})
        except Exception as e:  # noqa: BLE001 - every failure becomes a reply
            return _error_reply(rid, e)

    # --- runs with callbacks: the worker thread ------------------------------
    def start_run(self, call: Any, work: Callable[[RunEvents], Any], finish: Callable[[Any], Any]) -> Any:
        """Run `work(run)` (which executes a program with callbacks, passing
        `run.token` to it) on a worker thread; `finish(outputs)` builds the
        reply on the I/O thread. Events go out as `{"event": "callbacks",
        "call": call, ...}` before the reply."""
        run = self.runs.open(call, self._ident, self.mailbox.post)
        self.active = WorkerRun(run, finish)

        def worker() -> None:
            try:
                out: Any = ("ok", work(run))
            except BaseException as e:  # noqa: BLE001 - becomes the reply
                out = ("error", e)
            run.finish()
            self.mailbox.post(("done", run, out))

        threading.Thread(target=worker, name="jaxbridge-run", daemon=True).start()
        return NO_REPLY

    def _deliver(self) -> None:
        """Send what the worker posted, in order; after a run's reply, serve the requests that waited."""
        for item in self.mailbox.take():
            if item[0] == "events":
                _, run, seq, batch = item
                if run.aborted:
                    continue
                frames = protocol.encode({"event": "callbacks", "call": run.call_id, "batch": seq, "events": batch})
                if self._send(run.ident, frames):
                    self.event_batches += 1
                    self.events_sent += len(batch)
                else:
                    run.abort()
            elif item[0] == "done":
                _, run, (status, value) = item
                self.runs.close(run)
                active, self.active = self.active, None
                rid = run.call_id
                if status == "ok":
                    try:
                        reply = protocol.encode({"id": rid, "ok": True, "result": active.finish(value)})
                    except Exception as e:  # noqa: BLE001
                        reply = _error_reply(rid, e)
                else:
                    reply = _error_reply(rid, value)
                self._send(run.ident, reply)
                while self.waiting and self.active is None:
                    self._serve_one(self.waiting.popleft())

    # --- what ops use (ops.host.Host) ----------------------------------------
    @property
    def max_message_bytes(self) -> int:
        return self.config.max_message_bytes

    def materialize(self, value: Any) -> Any:
        return remote.materialize(self.handles, self.structures, value)

    def export(self, value: Any, fetch: bool) -> Any:
        return remote.export(self.handles, self.structures, value, fetch)

    def device(self, index: Any) -> jax.Device | None:
        if index is None:
            return None
        devices = jax.devices()
        if not isinstance(index, int) or not 0 <= index < len(devices):
            raise ValueError(f"device index {index!r} out of range: this sidecar has {len(devices)} devices")
        return devices[index]

    def counters(self) -> dict[str, int]:
        return {"requests": self.requests, "event_batches": self.event_batches, "events": self.events_sent}


def _error_reply(rid: Any, e: BaseException) -> list[Any]:
    if isinstance(e, WireError):
        body = error_body(e, e.kind, with_traceback=False)
    elif isinstance(e, NotAllowed):
        body = error_body(e, "NotAllowed", with_traceback=False)
    else:
        body = error_body(e)
    return protocol.encode({"id": rid if isinstance(rid, int) else None, "ok": False, "error": body})


def die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to SIGTERM us when the parent exits; the loop also polls getppid()."""
    if parent_pid is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
    if os.getppid() != parent_pid:
        sys.exit(0)
