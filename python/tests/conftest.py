"""Shared fixtures: a real sidecar on a real ZeroMQ socket, served from a thread."""

from __future__ import annotations

import contextlib
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import jax

jax.config.update("jax_enable_x64", True)
# Four CPU devices, as `serve --num-cpu-devices 4` gives: the sharding and
# collective tests need a mesh; everything else runs on device 0 as before.
jax.config.update("jax_num_cpu_devices", 4)

import msgpack
import numpy as np
import pytest
import zmq

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.allowlist import DEFAULT_NAMESPACES
from jaxbridge_sidecar.server import Server, ServerConfig


class Client:
    """A bare DEALER speaking the wire by hand, so tests check bytes, not our own client."""

    def __init__(self, endpoint: str, routing_id: bytes | None = None):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # A routing id of our own, as the TypeScript client sets one: the sidecar names sessions by it.
        self.sock.setsockopt(zmq.ROUTING_ID, routing_id or b"t" + uuid.uuid4().bytes)
        self.sock.connect(endpoint)
        self.next_id = 1

    def send_raw(self, frames: list[Any]) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout_ms: int = 20000) -> tuple[dict[str, Any], list[Any]]:
        if not self.sock.poll(timeout_ms):
            raise TimeoutError("no reply")
        frames = self.sock.recv_multipart()
        env = msgpack.unpackb(frames[0], raw=False, ext_hook=lambda c, d: msgpack.ExtType(c, d))
        return env, frames[1:]

    def request(self, op: str, **fields: Any) -> tuple[dict[str, Any], list[Any]]:
        rid = self.next_id
        self.next_id += 1
        self.send_raw(protocol.encode({"id": rid, "op": op, **fields}))
        env, frames = self.recv()
        assert env["id"] == rid
        return env, frames

    def decoded(self, op: str, **fields: Any) -> Any:
        """The reply decoded with the sidecar's own decoder (arrays become numpy)."""
        rid = self.next_id
        self.next_id += 1
        self.send_raw(protocol.encode({"id": rid, "op": op, **fields}))
        if not self.sock.poll(60000):
            raise TimeoutError("no reply")
        frames = self.sock.recv_multipart(copy=False)
        env = msgpack.unpackb(frames[0].bytes, raw=False, ext_hook=_reply_ext(frames[1:]))
        assert env["id"] == rid
        return env

    def close(self) -> None:
        self.sock.close(0)


def _reply_ext(frames: list[Any]):
    def hook(code: int, data: bytes) -> Any:
        if code == protocol.EXT_MODULE:
            key, qualname, children = msgpack.unpackb(data, raw=False, ext_hook=hook)
            return protocol.ModuleOut(key, qualname, children)
        fields = msgpack.unpackb(data, raw=False)
        if code == protocol.EXT_PYREF:
            return protocol.PyRefOut(*fields)
        if code == protocol.EXT_HANDLE:
            return protocol.HandleOut(fields[0], fields[1], tuple(fields[2]), fields[3], fields[4] if len(fields) > 4 else None)
        dtype, shape, first, count = fields
        buf = b"".join(bytes(frames[i - 1].buffer) for i in range(first, first + count))
        return np.frombuffer(buf, dtype=protocol.dtype_from_name(dtype)).reshape(shape)

    return hook


def session_of(server: Server, client: "Client | None" = None) -> Any:
    """The sidecar's session of `client` (by default: its only session)."""
    sessions = list(server.sessions)
    if client is not None:
        rid = client.sock.getsockopt(zmq.ROUTING_ID)
        sessions = [s for s in sessions if s.key[1] == rid]
    assert len(sessions) == 1, f"expected one session, the sidecar has {len(sessions)}"
    return sessions[0]


def handles_of(server: Server, client: "Client | None" = None) -> Any:
    """The handle table of the sidecar's session of `client` (by default: its only session)."""
    return session_of(server, client).handles


@contextlib.contextmanager
def running_sidecar(tmp_path: Path, **config: Any) -> Iterator[tuple[Server, Client]]:
    """A real sidecar served from a thread on a private ipc:// socket, and a bare client for it."""
    endpoint = f"ipc://{tmp_path}/s-{uuid.uuid4().hex[:8]}.sock"
    server = Server(ServerConfig(endpoint=endpoint, **{"max_message_bytes": 64 * 1024 * 1024, **config}))
    server.bind()
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    client = Client(endpoint)
    try:
        yield server, client
    finally:
        client.close()
        server.stop()
        t.join(5)


@contextlib.contextmanager
def sidecar_process(tmp_path: Path, *args: str, supervised: bool = False) -> Iterator[tuple[Any, Client, str]]:
    """A sidecar in a process of its own (`serve`), for requests that could
    crash or hang it: yields (process, client, endpoint)."""
    import subprocess
    import sys

    run = tmp_path / f"run-{uuid.uuid4().hex[:6]}"
    run.mkdir(mode=0o700)
    endpoint = f"ipc://{run}/s.sock"
    cmd = [sys.executable, "-m", "jaxbridge_sidecar", "serve", "--endpoint", endpoint, *(() if supervised else ("--no-supervisor",)), *args]
    err = open(run / "stderr", "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=Path(__file__).parents[1])
    proc.stderr_path = run / "stderr"  # type: ignore[attr-defined]
    line = proc.stdout.readline() if proc.stdout else ""
    if "JAXBRIDGE READY" not in line:
        proc.kill()
        raise RuntimeError(f"sidecar did not start: {line}{(run / 'stderr').read_text()}")
    client = Client(endpoint)
    try:
        yield proc, client, endpoint
    finally:
        client.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        err.close()


@pytest.fixture()
def sidecar(tmp_path: Path) -> Iterator[tuple[Server, Client]]:
    with running_sidecar(tmp_path) as pair:
        yield pair


@pytest.fixture()
def eqx_sidecar(tmp_path: Path) -> Iterator[tuple[Server, Client]]:
    """A sidecar that also allows equinox.nn, for remote modules."""
    with running_sidecar(tmp_path, namespaces=(*DEFAULT_NAMESPACES, "equinox.nn")) as pair:
        yield pair
