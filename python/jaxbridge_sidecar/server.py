"""The sidecar: one ROUTER socket shared by many sessions (sessions.py).

Requests run where they arrive, on the I/O thread, so a small call costs no
thread hop (measured: a hop each way adds ~40 us to a ~45 us round trip).
A request that is still running after `handoff_seconds` is left to finish
on that thread while a new thread takes over the socket (the watchdog
decides; the socket is never touched by two threads at once): control
messages and other sessions are served while one computes, and the finished
request's reply comes back through the mailbox. Requests of one session run
in arrival order (a later one waits in the session's queue); `ping`, `ack`
and `hello` are answered at once. Runs with callbacks execute on a worker
thread of their own, their events flowing through the mailbox.

Time: with `max_run_seconds`, a request running longer is declared hung.
XLA cannot be interrupted, so the sidecar then tells every session why
(a `restarting` event), and exits with EXIT_HUNG; `serve`'s supervisor
(supervisor.py) starts a fresh one.

Every failure becomes an error reply; the loop itself only stops on
shutdown, when its parent process dies, or on a hung run."""

from __future__ import annotations

import dataclasses
import faulthandler
import logging
import os
import secrets
import signal
import sys
import threading
import time
from typing import Any, Callable

import jax
import zmq

from . import protocol, remote
from .allowlist import DEFAULT_NAMES, DEFAULT_NAMESPACES, AllowList
from .auth import CurveServerKeys, secure_socket
from .events import Mailbox, RunEvents, RunTable, batch_events
from .limits import DEFAULT_MAX_DEPTH, DEFAULT_MAX_FRAMES, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_RECV_FRAME_BYTES, Limits
from .ops import arrays, arrow, bench, calls, events, programs, serialization, session
from .ops.host import NO_REPLY, Op, reply_error_body
from .program.cache import ProgramCache, SessionPrograms
from .protocol import WireError
from .sessions import Session, SessionLimit, SessionTable

log = logging.getLogger("jaxbridge.sidecar")

# The dispatch table: every op a sidecar serves, by family. docs/protocol.md
# documents exactly these, and `python -m jaxbridge_sidecar ops` prints them.
FAMILIES = (session, arrays, calls, programs, serialization, arrow, events)

# Answered as soon as they arrive, even while an earlier request of the same session runs
# (`close` ends the session at once: its queued requests are dropped, its runs stop waiting).
IMMEDIATE_OPS = frozenset({"ping", "ack", "hello", "close"})

# A refused message at least this large has its memory returned to the system at once.
TRIM_AFTER_BYTES = 16 * 1024 * 1024

# The exit status of a sidecar that gave up on a hung run (EX_TEMPFAIL): its supervisor restarts it.
EXIT_HUNG = 75


def dispatch_table(families: tuple[Any, ...]) -> dict[str, Op]:
    table: dict[str, Op] = {}
    for family in families:
        for name, fn in family.OPS.items():
            if name in table:
                raise AssertionError(f"op {name!r} is defined by two families")
            table[name] = fn
    return table


OPS = dispatch_table(FAMILIES)


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
    # Without it only loopback and private ipc:// binds are allowed.
    curve: CurveServerKeys | None = None
    # ZMQ_MAXMSGSIZE: the largest single frame accepted (see auth.py for the value).
    max_recv_frame_bytes: int = DEFAULT_MAX_RECV_FRAME_BYTES
    max_frames: int = DEFAULT_MAX_FRAMES
    max_depth: int = DEFAULT_MAX_DEPTH
    # The largest array a call or program may create (None: physical memory).
    max_array_bytes: int | None = None
    max_sessions: int = 256
    # A session that sent nothing for this long is ended (None: never).
    session_lease_seconds: float | None = None
    # A session whose peer disconnected is ended if it does not come back within this.
    disconnect_grace_seconds: float = 60.0
    # Replies kept per session for a client that resends after a reconnect (tcp://: see docs).
    retain_reply_bytes: int | None = None
    # A request still running after this long leaves the I/O thread (see the module docstring).
    handoff_seconds: float = 0.01
    # A request running longer than this is hung: the sidecar exits for its supervisor (None: never).
    max_run_seconds: float | None = None
    # The instance this one replaces, and why it ended (the supervisor passes them on).
    previous_instance: str | None = None
    restart_cause: str | None = None
    # How the process ends after a hung run (tests replace it).
    on_hung: Callable[[str], None] | None = None

    def limits(self) -> Limits:
        return Limits(self.max_message_bytes, self.max_frames, self.max_depth, self.max_recv_frame_bytes, self.max_array_bytes)


class Execution:
    """One request being executed, for the watchdog and for its reply."""

    __slots__ = ("session", "rid", "op", "started", "detached", "run", "finish", "op_done", "run_done", "coalesced")

    def __init__(self, session: Session, started: float):
        self.session = session
        self.rid: Any = None
        self.op: Any = None
        self.started = started
        self.detached = False  # its thread no longer owns the socket
        self.run: RunEvents | None = None  # a run with callbacks it started on a worker
        self.finish: Callable[[Any], Any] | None = None
        self.op_done = False
        self.run_done = False
        self.coalesced = False  # a part of a coalesced message: its reply may go back with others


class _Part(list):  # type: ignore[type-arg]
    """A request's frames that came in a coalesced message (its reply may go back in one too)."""

    __slots__ = ()


class SessionHost:
    """The sidecar as one session's ops see it (`ops.host.Host`): the session's
    own tables, the server's shared state."""

    def __init__(self, server: Server, session: Session):
        self.server = server
        self.session = session
        self.handles = session.handles
        self.structures = session.structures
        self.runs = session.runs
        self.allow = server.allow
        self.programs = SessionPrograms(server.programs, self)
        self.instance = server.instance
        self.limits = server.limits
        self.execution: Execution | None = None

    @property
    def max_message_bytes(self) -> int:
        return self.limits.max_message_bytes

    @property
    def lease_seconds(self) -> float | None:
        return self.server.config.session_lease_seconds

    @property
    def restarted(self) -> dict[str, str] | None:
        c = self.server.config
        return {"instance": c.previous_instance, "cause": c.restart_cause or "unknown"} if c.previous_instance else None

    def resumed(self, instance: Any) -> bool:
        """Whether a client that was connected to `instance` finds its session here as it left it."""
        return instance == self.instance and self.session.requests > 1

    def end_session(self, reason: str) -> None:
        self.server.end_later(self.session, reason)

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

    def start_run(self, call: Any, work: Callable[[RunEvents], Any], finish: Callable[[Any], Any]) -> Any:
        return self.server.start_run(self, call, work, finish)

    def busy(self) -> bool:
        """Whether a request or run is still executing (after the loop stopped, on another thread)."""
        with self._own:
            return bool(self._executing) or self._detached > 0

    def counters(self) -> dict[str, int]:
        return self.server.counters()


class Server:
    """The sidecar's state and its I/O loop."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.limits = config.limits()
        self.allow = AllowList(config.namespaces, config.names, max_array_bytes=self.limits.array_budget)
        self.runs = RunTable()
        self.programs = ProgramCache(runs=self.runs, max_array_bytes=self.limits.array_budget)
        retain = config.retain_reply_bytes
        if retain is None:
            retain = 64 * 1024 * 1024 if config.endpoint.startswith("tcp://") else 0
        self.sessions = SessionTable(self.runs, config.max_sessions, retain)
        self.instance = secrets.token_hex(8)
        self.ops: dict[str, Op] = {**OPS, **(bench.OPS if bench.enabled() else {})}
        self.requests = 0
        self.event_batches = 0
        self.events_sent = 0
        self._stop = False
        self._done = threading.Event()
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        # A reply to a vanished peer raises instead of being dropped silently.
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # A client that reconnects with its routing id takes its session's route back.
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        # The client bounds requests in flight, so unlimited queues stay bounded.
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.mailbox = Mailbox(self.ctx)
        # Who owns the socket: the thread running _io_loop with the current epoch.
        self._own = threading.Lock()
        self._epoch = 0
        self._inline: Execution | None = None
        self._executing: set[Execution] = set()
        # Executions and runs whose results come back through the mailbox.
        self._detached = 0
        self._hung: str | None = None
        self._monitor: zmq.Socket[Any] | None = None
        # The session whose messages last came through each connection (file descriptor).
        self._fd_owner: dict[int, Session] = {}
        # Set when much memory was just released (a session ended): housekeeping returns it to the system.
        self._trim = False
        self._next_housekeeping = 0.0
        self.takeovers = 0
        self.authenticator: Any = None

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
        self._monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        return self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def close_auth(self) -> None:
        """Stop the ZAP thread, if CURVE started one (after the socket is closed)."""
        auth, self.authenticator = self.authenticator, None
        if auth is not None:
            auth.stop()

    def stop(self, *_: Any) -> None:
        self._stop = True

    def close(self) -> None:
        """Release the sockets of a server that never served (serve_forever closes its own)."""
        self._close_sockets()

    def _close_sockets(self) -> None:
        if self._monitor is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(0)
            self._monitor = None
        self.sock.close(0)
        self.mailbox.close()

    def _parent_alive(self) -> bool:
        pid = self.config.parent_pid
        return pid is None or os.getppid() == pid

    def serve_forever(self) -> None:
        """Serve until stopped. The I/O loop runs on threads of its own, so this
        thread (the main one, under `serve`) stays free for signals."""
        self.sock.setsockopt(zmq.RCVTIMEO, 250)
        threading.Thread(target=self._watchdog, name="jaxbridge-watchdog", daemon=True).start()
        self._start_io_thread(0)
        while not self._done.wait(0.25):
            if not self._parent_alive():
                log.warning("parent process %s is gone; exiting", self.config.parent_pid)
                self._stop = True

    def _start_io_thread(self, epoch: int) -> None:
        threading.Thread(target=self._io_loop, args=(epoch,), name=f"jaxbridge-io-{epoch}", daemon=True).start()

    # --- the I/O loop ----------------------------------------------------------
    def _io_loop(self, epoch: int) -> None:
        """Serve the socket until stopped, or until this thread is taken over
        while it executes a request (then it only delivers that request's result)."""
        sock = self.sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self.mailbox.rx, zmq.POLLIN)
        try:
            while not self._stop and self._hung is None:
                if self._detached == 0:
                    # A blocking receive with a timeout (rather than poll + non-blocking
                    # reads) saves a syscall and an exception per request: measured ~2x
                    # on the small-message round trip.
                    try:
                        msg = sock.recv_multipart(copy=False)
                    except zmq.Again:
                        msg = None
                    if msg is not None and not self._on_message(msg, epoch):
                        return
                else:
                    busy_runs = any(True for _ in self.runs)
                    ready = dict(poller.poll(timeout=2 if busy_runs else 250))
                    if self.mailbox.rx in ready:
                        self.mailbox.drain_wakeups()
                    if not self._deliver(epoch):
                        return
                    if sock in ready:
                        for _ in range(64):
                            try:
                                msg = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                            except zmq.Again:
                                break
                            if not self._on_message(msg, epoch):
                                return
                    for run in self.runs:
                        run.flush_stale()
                now = time.monotonic()
                if now >= self._next_housekeeping:
                    self._housekeeping(now)
            if self._hung is not None:
                self._give_up(self._hung)
        except Exception:  # noqa: BLE001 - the loop must not die silently
            log.exception("the I/O loop failed; stopping")
            self._stop = True
        for run in self.runs:
            run.abort()
        self._close_sockets()
        self._done.set()

    def _send(self, ident: Any, frames: list[Any]) -> bool:
        try:
            self.sock.send_multipart([ident, *frames], copy=False)
            return True
        except zmq.ZMQError as e:
            # EHOSTUNREACH: the peer left; nothing to deliver to.
            log.info("reply dropped: %s", e)
            return False

    def _on_message(self, msg: list[Any], epoch: int) -> bool:
        """Route one message to its session. False: this thread was taken over."""
        ident, frames = msg[0], msg[1:]
        now = time.monotonic()
        first = frames[0] if frames else msg[0]
        user = ""
        if self.config.curve is not None:
            try:
                user = first.get("User-Id")
            except zmq.ZMQError:
                user = ""
        key = (user, ident.bytes)
        try:
            fd = first.get(zmq.SRCFD)
        except (zmq.ZMQError, AttributeError):
            fd = None
        s = self.sessions.get(key)
        if s is None and self._displaced(key, fd):
            return True
        if s is None:
            try:
                s = self.sessions.open(key, ident, now)
            except SessionLimit as e:
                self._send(ident, _error_reply(protocol.peek(frames, "id"), WireError("LimitExceeded", f"the sidecar serves {e.n} sessions, its max_sessions (raise it with `serve --max-sessions`)")))
                return True
            s.host = SessionHost(self, s)
        s.ident = ident
        s.last_seen = now
        s.disconnected_at = None
        if fd is not None:
            s.fd = fd
            self._fd_owner[fd] = s
        if protocol.is_batch(first):
            return self._accept_batch(s, frames, epoch)
        if s.busy:
            if protocol.peek(frames, "op") in IMMEDIATE_OPS:
                reply = self._handle(s, frames, None)
                if reply is not None:
                    self._send(s.ident, reply)
            else:
                s.queue.append(frames)
            return True
        if s.queue:
            s.queue.append(frames)
            return self._drain(s, epoch)
        return self._execute(s, frames, epoch)

    def _accept_batch(self, s: Session, frames: list[Any], epoch: int) -> bool:
        """A coalesced message (docs/protocol.md "Coalesced messages"): its
        requests join the session's queue in order (those answered at once
        are, as if sent alone), and the replies of those that finish on this
        thread go back in one message. False: taken over."""
        try:
            parts = protocol.split_batch(frames, self.limits)
        except WireError as e:
            self._send(s.ident, _error_reply(None, e))
            return True
        out: list[list[Any]] = []
        for part in parts:
            if s.busy and protocol.peek(part, "op") in IMMEDIATE_OPS:
                reply = self._handle(s, part, None)
                if reply is not None:
                    out.append(reply)
            else:
                s.queue.append(_Part(part))
        if not self._drain(s, epoch, out):
            return False
        self._send_replies(s, out)
        return True

    def _send_replies(self, s: Session, replies: list[list[Any]]) -> None:
        """Replies gathered for one coalesced request message: one message (as they were, if only one)."""
        if len(replies) == 1:
            self._send(s.ident, replies[0])
        elif replies:
            self._send(s.ident, protocol.pack_batch(replies))

    def _displaced(self, key: tuple[str, bytes], fd: int | None) -> bool:
        """Whether a message from an unknown peer is the tail of a connection
        whose routing id a reconnect took over (ROUTER_HANDOVER gives the old
        pipe a generated id: a zero byte and four more). Its client resends
        whatever it is waiting for on the new connection, so it is dropped:
        run here, in a session of its own, it would run twice."""
        ident = key[1]
        if fd is None or len(ident) != 5 or ident[0] != 0:
            return False
        owner = self._fd_owner.get(fd)
        if owner is None or owner.closed or owner.key[0] != key[0] or (len(owner.key[1]) == 5 and owner.key[1][0] == 0):
            return False
        log.info("dropped a message of session %s from its displaced connection", owner.sid)
        return True

    def _execute(self, s: Session, frames: list[Any], epoch: int, out: list[list[Any]] | None = None) -> bool:
        """Run one request of `s` on this thread, then what its session queued
        meanwhile, for as long as the session is free. False: taken over (the
        result went to the mailbox; this thread must leave the loop). With
        `out`, replies are gathered there instead of sent (a coalesced message's)."""
        while True:
            ex = Execution(s, time.monotonic())
            s.busy = True
            with self._own:
                self._inline = ex
                self._executing.add(ex)
            ex.coalesced = type(frames) is _Part
            reply = self._handle(s, frames, ex)
            with self._own:
                detached = ex.detached
                if not detached:
                    self._inline = None
            if detached:
                if out:
                    # The socket is another thread's now: it sends what was gathered, before this reply.
                    self.mailbox.post(("replies", s, out[:]))
                    out.clear()
                self.mailbox.post(("done", ex, reply))
                return False
            self._op_returned(ex, reply, out)
            if s.busy or s.closed or not s.queue:
                return True
            frames = s.queue.popleft()

    def _drain(self, s: Session, epoch: int, out: list[list[Any]] | None = None) -> bool:
        """Serve what `s` queued, if it is free now. False: taken over."""
        if s.busy or s.closed or not s.queue:
            return True
        return self._execute(s, s.queue.popleft(), epoch, out)

    def _drain_gathering(self, s: Session, epoch: int) -> bool:
        """`_drain`, the replies to parts of coalesced messages going back in one message."""
        out: list[list[Any]] = []
        if not self._drain(s, epoch, out):
            return False
        self._send_replies(s, out)
        return True

    def _op_returned(self, ex: Execution, reply: list[Any] | None, out: list[list[Any]] | None = None) -> None:
        """The op of `ex` returned: send its reply (or add it to `out`); release its session unless a run of it still goes on."""
        ex.op_done = True
        if reply is not None:
            if out is None or not ex.coalesced:
                if out:
                    self._send_replies(ex.session, out)
                    out.clear()
                self._reply(ex.session, ex.rid, reply)
            elif not ex.session.closed:
                out.append(reply)
                ex.session.remember(ex.rid, reply)
        if ex.run is None or ex.run_done:
            self._release(ex)

    def _release(self, ex: Execution) -> None:
        """`ex` is over (its op returned and its run, if any, finished): its session is free."""
        with self._own:
            self._executing.discard(ex)
        s = ex.session
        s.busy = False
        if s.ending is not None:
            self._end(s, s.ending)

    def _reply(self, s: Session, rid: Any, frames: list[Any]) -> None:
        if s.closed:
            return
        self._send(s.ident, frames)
        s.remember(rid, frames)

    # --- dispatch ------------------------------------------------------------
    def _handle(self, s: Session, frames: list[Any], ex: Execution | None) -> list[Any] | None:
        """The reply frames to one request, or None when the op replies later (or never)."""
        self.requests += 1
        s.requests += 1
        rid: Any = None
        host = s.host
        try:
            try:
                env = protocol.decode(frames, self.limits)
            except Exception:
                rid = protocol.peek(frames, "id")
                raise
            rid = env.get("id")
            op = env.get("op")
            if ex is not None:
                ex.rid, ex.op = rid, op
            if env.get("resent") is True and isinstance(rid, int):
                kept = self._resent(s, rid, ex)
                if kept is not False:
                    return kept
            fn = self.ops.get(op) if isinstance(op, str) else None
            if fn is None:
                raise WireError("UnknownOp", f"unknown op {str(op)[:40]!r}; this sidecar speaks protocol {protocol.PROTOCOL_VERSION} with ops {', '.join(sorted(self.ops))}")
            host.execution = ex
            try:
                result = fn(host, env)
                if result is NO_REPLY:
                    return None
            finally:
                host.execution = None
                # Frees ride on any request (see docs/protocol.md) so that a
                # loop that disposes as it goes sends no extra messages.
                piggy = env.get("free")
                if isinstance(piggy, list):
                    s.handles.free(piggy)
            return protocol.encode_reply({"id": rid, "ok": True, "result": result})
        except Exception as e:  # noqa: BLE001 - every failure becomes a reply
            if len(frames) > 1 and sum(len(f) for f in frames) > TRIM_AFTER_BYTES:
                self._trim = True  # a large refused message: its buffers go back to the system
            return _error_reply(rid, e)

    def _resent(self, s: Session, rid: int, current: Execution | None) -> list[Any] | None | bool:
        """A request the client sent again after a reconnect: its kept reply,
        None if it is still running (its reply will come), False if it never
        arrived (run it now)."""
        if rid in s.recent:
            kept = s.recent[rid]
            if kept is not None:
                return kept
            return _error_reply(rid, WireError("ReplyLost", f"the reply to request {rid} was lost in a reconnect and was too large to keep; run it again"))
        with self._own:
            running = [e for e in self._executing if e is not current and e.session is s and e.rid == rid]
        if running:
            return None
        return False

    # --- runs with callbacks: the worker thread ------------------------------
    def start_run(self, host: SessionHost, call: Any, work: Callable[[RunEvents], Any], finish: Callable[[Any], Any]) -> Any:
        """Run `work(run)` (which executes a program with callbacks, passing
        `run.token` to it) on a worker thread; `finish(outputs)` builds the
        reply on the I/O thread. Events go out as `{"event": "callbacks",
        "call": call, ...}` before the reply."""
        ex = host.execution
        if ex is None:
            raise WireError("ProtocolError", "a run with callbacks cannot be an immediate op")
        run = host.runs.open(call, host.session.ident, self.mailbox.post)
        ex.run, ex.finish = run, finish
        with self._own:
            self._detached += 1

        def worker() -> None:
            try:
                out: Any = ("ok", work(run))
            except BaseException as e:  # noqa: BLE001 - becomes the reply
                out = ("error", e)
            run.finish()
            self.mailbox.post(("run-done", ex, out))

        threading.Thread(target=worker, name="jaxbridge-run", daemon=True).start()
        return NO_REPLY

    def _deliver(self, epoch: int) -> bool:
        """Send what other threads posted, in order. False: taken over meanwhile."""
        for item in self.mailbox.take():
            kind = item[0]
            if kind == "events":
                _, run, seq, batch = item
                if run.aborted:
                    continue
                frames = protocol.encode({"event": "callbacks", "call": run.call_id, "batch": seq, "events": batch})
                if self._send(run.ident, frames):
                    self.event_batches += 1
                    self.events_sent += batch_events(batch)
                else:
                    run.abort()
            elif kind == "run-done":
                _, ex, (status, value) = item
                with self._own:
                    self._detached -= 1
                s = ex.session
                s.runs.close(ex.run)
                rid = ex.run.call_id
                if status == "ok":
                    try:
                        reply = protocol.encode_reply({"id": rid, "ok": True, "result": ex.finish(value)})
                    except Exception as e:  # noqa: BLE001
                        reply = _error_reply(rid, e)
                else:
                    reply = _error_reply(rid, value)
                self._reply(s, rid, reply)
                ex.run_done = True
                if ex.op_done:
                    self._release(ex)
                    if not self._drain_gathering(s, epoch):
                        return False
            elif kind == "replies":
                _, s, replies = item
                self._send_replies(s, replies)
            elif kind == "done":
                _, ex, reply = item
                with self._own:
                    self._detached -= 1
                self._op_returned(ex, reply)
                if not self._drain_gathering(ex.session, epoch):
                    return False
        return True

    # --- the watchdog: takeovers and hung runs -----------------------------------
    def _watchdog(self) -> None:
        handoff = self.config.handoff_seconds
        limit = self.config.max_run_seconds
        tick = max(0.001, handoff / 2)
        rearmed = 0.0
        while not self._done.is_set():
            time.sleep(tick)
            now = time.monotonic()
            ex = self._inline
            if ex is not None and now - ex.started >= handoff:
                with self._own:
                    if self._inline is ex and not ex.detached and not self._stop:
                        ex.detached = True
                        self._inline = None
                        self._detached += 1
                        self._epoch += 1
                        self.takeovers += 1
                        self._start_io_thread(self._epoch)
            if limit is not None and self._hung is None:
                with self._own:
                    running = list(self._executing)
                late = [e for e in running if now - e.started > limit]
                if late:
                    e = max(late, key=lambda e: now - e.started)
                    self._hung = f"request {e.rid} ({e.op}) of session {e.session.sid} ran past --max-run-seconds={limit:g}"
                    log.error("%s; the sidecar exits for its supervisor to restart it", self._hung)
                    self.mailbox.post(("wake",))
                if now - rearmed > 1.0:
                    # If even this thread cannot run (a call holding the GIL), end the process anyway.
                    faulthandler.dump_traceback_later(limit + 30, exit=True)
                    rearmed = now

    def _give_up(self, cause: str) -> None:
        """A run is hung: tell every session, then end the process for the supervisor."""
        for s in self.sessions:
            self._send(s.ident, protocol.encode({"event": "restarting", "instance": self.instance, "cause": cause}))
        on_hung = self.config.on_hung or _exit_hung
        self.sock.setsockopt(zmq.LINGER, 1000)
        time.sleep(0.2)  # let libzmq write the notices out
        on_hung(cause)

    # --- sessions: leases, disconnects, the end -------------------------------------
    def _housekeeping(self, now: float) -> None:
        self._next_housekeeping = now + 0.25
        if self._trim:
            self._trim = False
            _malloc_trim()
        if self._monitor is not None:
            gone: set[int] = set()
            while True:
                try:
                    ev = self._monitor.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except zmq.ZMQError:
                    break
                gone.add(int.from_bytes(ev[0][2:6], sys.byteorder))
            if gone:
                for s in self.sessions:
                    if s.fd in gone and s.disconnected_at is None:
                        s.disconnected_at = now
        lease = self.config.session_lease_seconds
        grace = self.config.disconnect_grace_seconds
        for s in self.sessions:
            if s.disconnected_at is not None and now - s.disconnected_at > grace:
                self.end_later(s, f"its peer disconnected {grace:g} s ago and did not come back")
            elif lease is not None and now - s.last_seen > lease:
                self.end_later(s, f"it sent nothing for its lease of {lease:g} s")

    def end_later(self, s: Session, reason: str) -> None:
        """End `s` now, or once its executing request finishes (its runs stop waiting for acks at once)."""
        if s.busy:
            if s.ending is None:
                s.ending = reason
                s.runs.abort_all()
                s.queue.clear()
            return
        self._end(s, reason)

    def _end(self, s: Session, reason: str) -> None:
        freed = self.sessions.remove(s)
        self._trim = True
        if s.fd is not None and self._fd_owner.get(s.fd) is s:
            del self._fd_owner[s.fd]
        s.host.programs.forget()
        log.info("session %s ended (%s); %d ids freed", s.sid, reason, freed)

    def busy(self) -> bool:
        """Whether a request or run is still executing (after the loop stopped, on another thread)."""
        with self._own:
            return bool(self._executing) or self._detached > 0

    def counters(self) -> dict[str, int]:
        return {"requests": self.requests, "event_batches": self.event_batches, "events": self.events_sent, "sessions": len(self.sessions), "rss": _rss_bytes()}


def _malloc_trim() -> None:
    """Give freed heap memory back to the system (glibc keeps it otherwise:
    message frames and host copies of arrays of a session that ended)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _exit_hung(cause: str) -> None:
    print(f"JAXBRIDGE EXIT hung: {cause}", flush=True)
    os._exit(EXIT_HUNG)


def _error_reply(rid: Any, e: BaseException) -> list[Any]:
    return protocol.encode({"id": rid if isinstance(rid, int) and not isinstance(rid, bool) else None, "ok": False, "error": reply_error_body(e)})


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
