"""The sidecar: one ROUTER loop that decodes requests, runs ops against the
handle table, and replies. Every failure becomes an error reply; the loop
itself only stops on shutdown or when its parent process dies."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections import deque
from typing import Any, Callable

import jax
import numpy as np
import zmq

from . import protocol
from .allowlist import DEFAULT_NAMES, DEFAULT_NAMESPACES, AllowList, NotAllowed
from .auth import DEFAULT_MAX_RECV_FRAME_BYTES, CurveServerKeys, secure_socket
from .handles import HandleTable
from .protocol import HandleOut, HandleRef, WireError
from . import remote
from .program import pycall
from .events import Mailbox, RunEvents, RunTable
from .remote_errors import error_body
from .sample import handshake_sample, same

log = logging.getLogger("jaxbridge.sidecar")

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024**3

# An op's result that means "no reply now": `ack` never gets one; a `run` on
# the worker thread gets its reply when it finishes.
NO_REPLY = object()
# Requests that wait (in arrival order) while a run with callbacks executes.
SERIALIZED_OPS = frozenset({"run", "call", "call_method", "pycall_shapes"})


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


class Server:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.allow = AllowList(config.namespaces, config.names)
        self.handles = HandleTable()
        self.structures = remote.StructureTable()
        self.instance = secrets.token_hex(8)
        self.requests = 0
        self._stop = False
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        # A reply to a vanished peer raises instead of being dropped silently.
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # The client bounds requests in flight, so unlimited queues stay bounded.
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "hello": self.op_hello,
            "ping": lambda env: "pong",
            "put": self.op_put,
            "get": self.op_get,
            "free": self.op_free,
            "call": self.op_call,
            "stats": self.op_stats,
            "list_attrs": lambda env: self.allow.list_attrs(env.get("path", "")),
            "import": self.op_import,
            "call_method": self.op_call_method,
            "pycall_shapes": lambda env: pycall.op_pycall_shapes(self, env),
            "fingerprint": lambda env: remote.fingerprint(self.materialize(env.get("value"))),
            "serialise_leaves": self.op_serialise_leaves,
            "deserialise_leaves": self.op_deserialise_leaves,
            "ack": self.op_ack,
            "device_put": self.op_device_put,
        }
        # Runs with callbacks: one at a time on a worker thread (see serve_forever).
        self.mailbox = Mailbox(self.ctx)
        self.runs = RunTable()
        self.active: dict[str, Any] | None = None
        self.waiting: deque[list[Any]] = deque()
        self._ident: Any = None
        self.event_batches = 0
        self.events_sent = 0
        from . import arrow_io, programs

        arrow_io.register(self)
        programs.register(self)

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
        if self.active is not None and _salvage(frames, "op") in SERIALIZED_OPS:
            self.waiting.append(msg)  # FIFO: runs and calls wait for the worker run
            return
        self._ident = ident
        reply = self.handle(frames)
        if reply is not None:
            self._send(ident, reply)

    # --- runs with callbacks: the worker thread ------------------------------
    def start_worker_run(self, rid: Any, fn: Callable[[RunEvents], Any], finish: Callable[[Any], Any]) -> Any:
        """Run `fn(run)` (which executes a program with callbacks, passing
        `run.token` to it) on a worker thread; `finish(outputs)` builds the
        reply on the I/O thread. Events go out as `{"event": "callbacks",
        "call": rid, ...}` before the reply."""
        sink = self.runs.open(rid, self._ident, self.mailbox.post)
        self.active = {"sink": sink, "rid": rid, "ident": self._ident, "finish": finish}

        def work() -> None:
            try:
                out: Any = ("ok", fn(sink))
            except BaseException as e:  # noqa: BLE001 - becomes the reply
                out = ("error", e)
            sink.finish()
            self.mailbox.post(("done", sink, out))

        threading.Thread(target=work, name="jaxbridge-run", daemon=True).start()
        return NO_REPLY

    def _deliver(self) -> None:
        """Send what the worker posted, in order; after a run's reply, serve the requests that waited."""
        for item in self.mailbox.take():
            if item[0] == "events":
                _, sink, seq, events = item
                if sink.aborted:
                    continue
                frames = protocol.Encoder().pack({"event": "callbacks", "call": sink.call_id, "batch": seq, "events": events})
                if self._send(sink.ident, frames):
                    self.event_batches += 1
                    self.events_sent += len(events)
                else:
                    sink.abort()
            elif item[0] == "done":
                _, sink, (status, value) = item
                self.runs.close(sink)
                active, self.active = self.active, None
                rid = sink.call_id
                if status == "ok":
                    try:
                        reply = protocol.Encoder().pack({"id": rid, "ok": True, "result": active["finish"](value)})
                    except Exception as e:  # noqa: BLE001
                        reply = _error_reply(rid, e)
                else:
                    reply = _error_reply(rid, value)
                self._send(sink.ident, reply)
                while self.waiting and self.active is None:
                    self._serve_one(self.waiting.popleft())

    # --- dispatch ------------------------------------------------------------
    def handle(self, frames: list[Any]) -> list[Any] | None:
        self.requests += 1
        rid: Any = None
        try:
            try:
                env = protocol.decode(frames, self.config.max_message_bytes)
            except Exception:
                rid = _salvage(frames, "id")
                raise
            rid = env.get("id")
            op = env.get("op")
            fn = self.ops.get(op) if isinstance(op, str) else None
            if fn is None:
                raise WireError("UnknownOp", f"unknown op {op!r}; this sidecar speaks protocol {protocol.PROTOCOL_VERSION} with ops {', '.join(sorted(self.ops))}")
            try:
                result = fn(env)
                if result is NO_REPLY:
                    return None
            finally:
                # Frees ride on any request (see docs/protocol.md) so that a
                # loop that disposes as it goes sends no extra messages.
                piggy = env.get("free")
                if isinstance(piggy, list):
                    self.handles.free(piggy)
            enc = protocol.Encoder()
            if isinstance(result, tuple) and len(result) == 2 and result[0] == "__frames__":
                # An op that built its own trailing frames (Arrow streams).
                body, extra = result[1]
                enc.frames.extend(extra)
                return enc.pack({"id": rid, "ok": True, "result": body})
            return enc.pack({"id": rid, "ok": True, "result": result})
        except Exception as e:  # noqa: BLE001 - every failure becomes a reply
            return _error_reply(rid, e)

    # --- values ----------------------------------------------------------------
    def materialize(self, value: Any) -> Any:
        """Handles, PyRefs and module nodes in a request become the objects they name."""
        return remote.materialize(self, value)

    def export(self, value: Any, fetch: bool) -> Any:
        """A result as the wire carries it: arrays as handles (or host arrays when
        fetching), equinox Modules as module nodes, other objects as PyRefs."""
        return remote.export(self, value, fetch)

    # --- ops -------------------------------------------------------------------
    def op_hello(self, env: dict[str, Any]) -> dict[str, Any]:
        theirs = env.get("protocol")
        if theirs != protocol.PROTOCOL_VERSION:
            raise WireError("ProtocolError", f"client speaks protocol {theirs!r}, this sidecar speaks {protocol.PROTOCOL_VERSION}")
        sample = env.get("sample")
        if sample is not None and not same(sample, handshake_sample()):
            raise WireError("ProtocolError", "the handshake sample did not decode to the expected values: the two sides disagree on the wire format")
        devices = jax.devices()
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "server": "jaxbridge-sidecar 0.1.0",
            "python": sys.version.split()[0],
            "jax": jax.__version__,
            "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else _jaxlib_version(),
            "backend": jax.default_backend(),
            "devices": [{"id": d.id, "platform": d.platform, "kind": d.device_kind, "str": str(d)} for d in devices],
            "x64": bool(jax.config.jax_enable_x64),
            "instance": self.instance,
            "pid": os.getpid(),
            "max_message_bytes": self.config.max_message_bytes,
            "max_frame_bytes": protocol.MAX_FRAME_BYTES,
            "sample": sample,
        }

    def _device(self, env: dict[str, Any]) -> Any:
        idx = env.get("device")
        if idx is None:
            return None
        devices = jax.devices()
        if not isinstance(idx, int) or not 0 <= idx < len(devices):
            raise ValueError(f"device index {idx!r} out of range: this sidecar has {len(devices)} devices")
        return devices[idx]

    def op_put(self, env: dict[str, Any]) -> Any:
        device = self._device(env)

        def leaf(v: Any, _path: str) -> Any:
            if isinstance(v, np.ndarray):
                return self.handles.add(jax.device_put(v, device))
            if isinstance(v, HandleRef):
                arr = self.handles.get(v.id)
                return self.handles.add(jax.device_put(arr, device)) if device is not None else self.handles.add(arr)
            return v

        out = protocol.walk(env.get("value"), leaf)
        jax.block_until_ready([self.handles.get(h.id) for h in _handles_in(out)])
        return out

    def op_get(self, env: dict[str, Any]) -> Any:
        return protocol.walk(env.get("value"), lambda v, _p: np.asarray(self.handles.get(v.id)) if isinstance(v, HandleRef) else v)

    def op_free(self, env: dict[str, Any]) -> Any:
        ids = env.get("handles")
        if not isinstance(ids, list):
            raise WireError("ProtocolError", "free needs a list of handle ids in `handles`")
        freed, unknown = self.handles.free(ids)
        return {"freed": freed, "unknown": unknown}

    def op_call(self, env: dict[str, Any]) -> Any:
        fn = self.allow.resolve(env.get("fn"))
        args = env.get("args") or []
        kwargs = env.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise WireError("ProtocolError", "call needs `args` as a list and `kwargs` as a map")
        out = fn(*self.materialize(args), **self.materialize(kwargs))
        out = jax.block_until_ready(out)
        return self.export(out, bool(env.get("fetch")))

    def op_stats(self, env: dict[str, Any]) -> Any:
        return {
            "handles": len(self.handles), "objects": self.handles.object_count, "bytes": self.handles.nbytes(), "requests": self.requests,
            "event_batches": self.event_batches, "events": self.events_sent,
        }

    def op_ack(self, env: dict[str, Any]) -> Any:
        """The client consumed callback batches up to `batch` of call `call` (no reply)."""
        call, seq = env.get("call"), env.get("batch")
        run = self.runs.find(call)
        if run is not None and isinstance(seq, int):
            run.ack(seq)
        return NO_REPLY

    def op_device_put(self, env: dict[str, Any]) -> Any:
        """Place arrays with a sharding: `mesh` {shape, axes} over the first devices, `spec` a PartitionSpec."""
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh, spec = env.get("mesh"), env.get("spec")
        if not isinstance(mesh, dict) or not isinstance(mesh.get("shape"), list) or not isinstance(mesh.get("axes"), list):
            raise WireError("ProtocolError", "device_put needs `mesh` as {shape: [ints], axes: [names]}")
        shape, axes = mesh["shape"], mesh["axes"]
        if len(shape) != len(axes) or not all(isinstance(d, int) and d > 0 for d in shape) or not all(isinstance(a, str) for a in axes):
            raise WireError("ArgumentError", f"mesh shape {shape!r} and axes {axes!r} must be positive ints and names of equal length")
        n = int(np.prod(shape))
        devices = jax.devices()
        if n > len(devices):
            raise WireError("ArgumentError", f"a mesh of {n} devices needs more than this sidecar's {len(devices)} devices")
        if not isinstance(spec, list) or not all(s is None or isinstance(s, str) or (isinstance(s, list) and all(isinstance(x, str) for x in s)) for s in spec):
            raise WireError("ProtocolError", "device_put needs `spec` as a list of axis names, null, or lists of axis names")
        sharding = NamedSharding(Mesh(np.array(devices[:n]).reshape(shape), tuple(axes)), PartitionSpec(*[tuple(s) if isinstance(s, list) else s for s in spec]))

        def leaf(v: Any, _path: str) -> Any:
            if isinstance(v, np.ndarray):
                return self.handles.add(jax.device_put(v, sharding))
            if isinstance(v, HandleRef):
                return self.handles.add(jax.device_put(self.handles.get(v.id), sharding))
            return v

        out = protocol.walk(env.get("value"), leaf)
        jax.block_until_ready([self.handles.get(h.id) for h in _handles_in(out)])
        return out

    def op_import(self, env: dict[str, Any]) -> Any:
        """Check a module may be imported (it is inside the allow-list) and list what it offers."""
        name = env.get("module")
        if not isinstance(name, str) or not self.allow._in_namespace(name):
            raise NotAllowed(f"module {name!r} is not in the sidecar's allow-list ({self.allow.describe()}); start the sidecar with `--allow {name}`")
        import importlib

        importlib.import_module(name)
        return self.allow.list_attrs(name)

    def op_call_method(self, env: dict[str, Any]) -> Any:
        """Call a public method (or __call__) of an object the sidecar handed out."""
        name = pycall.check_method_name(env.get("name"), "call_method")
        target = self.materialize(env.get("target"))
        self.allow.check_class(type(target))
        method = getattr(target, name)
        args = env.get("args") or []
        kwargs = env.get("kwargs") or {}
        out = jax.block_until_ready(method(*self.materialize(args), **self.materialize(kwargs)))
        return self.export(out, bool(env.get("fetch")))

    def op_serialise_leaves(self, env: dict[str, Any]) -> Any:
        """The bytes equinox's tree_serialise_leaves writes for a value, and lerax's fingerprint of it."""
        import io

        import equinox as eqx

        tree = self.materialize(env.get("value"))
        buf = io.BytesIO()
        eqx.tree_serialise_leaves(buf, tree)
        return {"fingerprint": remote.fingerprint(tree), "leaves": buf.getvalue()}

    def op_deserialise_leaves(self, env: dict[str, Any]) -> Any:
        """Load equinox leaf bytes into the skeleton `like` (equinox checks each leaf's shape and dtype)."""
        import io

        import equinox as eqx

        like = self.materialize(env.get("like"))
        data = env.get("leaves")
        if not isinstance(data, bytes):
            raise WireError("ProtocolError", "deserialise_leaves needs `leaves` as bytes")
        buf = io.BytesIO(data)
        tree = eqx.tree_deserialise_leaves(buf, like)
        if buf.tell() != len(data):
            raise ValueError(f"{len(data) - buf.tell()} trailing bytes after the last leaf: the file holds more than this structure")
        return self.export(tree, bool(env.get("fetch")))


# The family (module of the ops/ package, issue 11) each serving op belongs to.
_FAMILIES = {
    "hello": "session", "ping": "session", "stats": "session",
    "put": "arrays", "get": "arrays", "free": "arrays", "device_put": "arrays",
    "call": "calls", "import": "calls", "list_attrs": "calls", "call_method": "calls",
    "run": "programs", "program_stats": "programs", "pycall_shapes": "programs",
    "fingerprint": "serialization", "serialise_leaves": "serialization", "deserialise_leaves": "serialization",
    "put_arrow": "arrow", "get_arrow": "arrow",
    "ack": "events",
}


def serving_ops() -> list[dict[str, str]]:
    """The ops a sidecar serves, read from a real (unbound) Server's dispatch
    table, sorted by name; the benchmark-only ops are not part of it."""
    from .programs import BENCH_OPS

    server = Server(ServerConfig(endpoint="inproc://jaxbridge-ops"))
    try:
        names = sorted(n for n in server.ops if n not in BENCH_OPS)
    finally:
        server.close()
    return [{"name": n, "family": _FAMILIES[n]} for n in names]


def _handles_in(value: Any) -> list[HandleOut]:
    found: list[HandleOut] = []
    protocol.walk(value, lambda v, _p: found.append(v) if isinstance(v, HandleOut) else None)
    return found


def _error_reply(rid: Any, e: BaseException) -> list[Any]:
    if isinstance(e, WireError):
        body = {"type": e.kind, "message": str(e), "traceback": ""}
    elif isinstance(e, NotAllowed):
        body = {"type": "NotAllowed", "message": str(e), "traceback": ""}
    else:
        body = error_body(e)
    return protocol.encode({"id": rid if isinstance(rid, int) else None, "ok": False, "error": body})


def _salvage(frames: list[Any], key: str) -> Any:
    """One envelope field (`op`, `id`), read without decoding arrays: to queue
    runs behind a worker run, and so that even a malformed request's error
    reaches its caller."""
    try:
        import msgpack

        env = msgpack.unpackb(frames[0], raw=False, ext_hook=lambda c, d: None, strict_map_key=False)
        return env.get(key) if isinstance(env, dict) else None
    except Exception:
        return None


def _jaxlib_version() -> str:
    try:
        import jaxlib

        return jaxlib.__version__
    except Exception:
        return "unknown"


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
