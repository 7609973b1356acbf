"""CURVE, the binding rule and the frame limit: keygen's files, who is let in,
and what an unauthenticated peer can make the sidecar hold."""

from __future__ import annotations

import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from jaxbridge_sidecar import auth, protocol
from jaxbridge_sidecar.sample import handshake_sample
from jaxbridge_sidecar.server import Server, ServerConfig

from conftest import Client

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")

PYTHON_DIR = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jaxbridge_sidecar", *args], cwd=PYTHON_DIR, capture_output=True, text=True, timeout=timeout)


# --- key files -------------------------------------------------------------------


def test_keygen_writes_a_zmq_certificate_pair_with_a_private_secret(tmp_path: Path) -> None:
    r = _cli("keygen", "--out", str(tmp_path / "keys"), "--name", "server")
    assert r.returncode == 0, r.stderr
    pub, sec = tmp_path / "keys" / "server.key", tmp_path / "keys" / "server.key_secret"
    assert stat.S_IMODE(sec.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    # pyzmq's own reader agrees with ours: the files are zmq certificates.
    p1, s1 = zmq.auth.load_certificate(sec)
    p2, s2 = zmq.auth.load_certificate(pub)
    assert p1 == p2 and s2 is None and zmq.curve_public(s1) == p1
    assert auth.load_key_pair(sec) == (p1, s1)
    assert p1.decode() in r.stdout
    # No silent overwrite: a replaced key locks out everyone holding the old one.
    again = _cli("keygen", "--out", str(tmp_path / "keys"), "--name", "server")
    assert again.returncode == 2 and "--force" in again.stderr
    assert zmq.auth.load_certificate(sec) == (p1, s1)
    assert _cli("keygen", "--out", str(tmp_path / "keys"), "--name", "server", "--force").returncode == 0
    assert zmq.auth.load_certificate(sec)[0] != p1


def test_key_files_are_checked_with_messages_that_say_what_to_do(tmp_path: Path) -> None:
    pub, sec, _ = auth.write_key_pair(tmp_path, "a")
    with pytest.raises(auth.AuthConfigError, match="only a public key"):
        auth.load_key_pair(pub)
    (tmp_path / "junk").write_text("hello\n")
    with pytest.raises(auth.AuthConfigError, match="not a ZeroMQ certificate"):
        auth.load_key_pair(tmp_path / "junk")
    with pytest.raises(auth.AuthConfigError, match="cannot read"):
        auth.load_key_pair(tmp_path / "missing")
    (tmp_path / "bad").write_text('curve\n    public-key = "short"\n')
    with pytest.raises(auth.AuthConfigError, match="40 Z85"):
        auth.read_certificate(tmp_path / "bad")
    # A pair whose halves do not belong together.
    other_pub, other_sec = zmq.curve_keypair()
    (tmp_path / "mixed").write_text(f'curve\n    public-key = "{other_pub.decode()}"\n    secret-key = "{zmq.curve_keypair()[1].decode()}"\n')
    with pytest.raises(auth.AuthConfigError, match="does not belong"):
        auth.load_key_pair(tmp_path / "mixed")


def test_authorized_keys_from_a_folder_a_certificate_or_a_list(tmp_path: Path) -> None:
    d = tmp_path / "clients"
    keys = {auth.write_key_pair(d, n)[2] for n in ("laptop", "ci")}
    assert auth.load_authorized_keys(d) == keys  # *.key only; the .key_secret files are not read
    one = auth.write_key_pair(tmp_path, "solo")
    assert auth.load_authorized_keys(one[0]) == {one[2]}
    listed = tmp_path / "authorized_keys"
    listed.write_text("# team\n" + "\n".join(k.decode() + "  someone@laptop" for k in keys) + "\n\n")
    assert auth.load_authorized_keys(listed) == keys
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(auth.AuthConfigError, match="no client could connect"):
        auth.load_authorized_keys(empty)
    (tmp_path / "typo").write_text("not-a-key\n")
    with pytest.raises(auth.AuthConfigError, match="line 1"):
        auth.load_authorized_keys(tmp_path / "typo")


# --- the binding rule ------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["tcp://127.0.0.1:5555", "tcp://127.0.0.2:5555", "tcp://[::1]:5555", "tcp://localhost:5555", "tcp://lo:5555", "tcp://127.0.0.1:*", "inproc://x"],
)
def test_loopback_and_ipc_binds_need_no_keys(endpoint: str) -> None:
    assert auth.is_loopback_endpoint(endpoint)
    auth.check_bind(endpoint, None)


def test_an_ipc_socket_in_a_folder_only_we_can_write_needs_no_keys(tmp_path: Path) -> None:
    private = tmp_path / "run"
    private.mkdir(mode=0o700)
    auth.check_bind(f"ipc://{private}/s.sock", None)
    (tmp_path / "shared").mkdir()
    os.chmod(tmp_path / "shared", 0o755)
    auth.check_bind(f"ipc://{tmp_path}/shared/s.sock", None)


@pytest.mark.parametrize("where", ["/tmp", "@abstract", "world", "missing"])
def test_ipc_sockets_others_could_reach_are_refused_without_curve(tmp_path: Path, where: str) -> None:
    if where == "world":
        d = tmp_path / "open"
        d.mkdir()
        os.chmod(d, 0o1777)
        endpoint, reason = f"ipc://{d}/s.sock", "writable by other users"
    elif where == "missing":
        endpoint, reason = f"ipc://{tmp_path}/nope/s.sock", "does not exist"
    elif where == "@abstract":
        endpoint, reason = "ipc://@jaxbridge-test", "abstract socket"
    else:
        endpoint, reason = "ipc:///tmp/jaxbridge-test.sock", "writable by other users"
    assert not auth.is_loopback_endpoint(endpoint)
    with pytest.raises(auth.AuthConfigError, match=f"refusing to bind .* without CURVE: .*{reason}"):
        auth.check_bind(endpoint, None)
    keys = auth.load_server_keys(*_server_and_client_files(tmp_path))
    auth.check_bind(endpoint, keys)


def _server_and_client_files(tmp_path: Path) -> tuple[Path, Path]:
    _p, sec, _ = auth.write_key_pair(tmp_path / "k", "server")
    pub, _s, _ = auth.write_key_pair(tmp_path / "k", "client")
    return sec, pub


def test_the_bench_echo_obeys_the_binding_rule(tmp_path: Path) -> None:
    private = tmp_path / "run"
    private.mkdir(mode=0o700)
    r = subprocess.run(
        [sys.executable, "-m", "jaxbridge_sidecar", "serve", "--endpoint", f"ipc://{private}/s.sock", "--bench-echo", "tcp://0.0.0.0:0"],
        capture_output=True, text=True, timeout=60, cwd=PYTHON_DIR,
    )
    assert r.returncode == 2 and "refusing to bind tcp://0.0.0.0:0 without CURVE" in r.stderr


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://[::]:5555", "tcp://8.8.8.8:5555", "tcp://10.1.2.3:5555", "ws://127.0.0.1:5555"])
def test_binds_others_can_reach_are_refused_without_curve(endpoint: str) -> None:
    assert not auth.is_loopback_endpoint(endpoint)
    with pytest.raises(auth.AuthConfigError, match="refusing to bind .* without CURVE"):
        auth.check_bind(endpoint, None)


def test_a_network_interface_other_than_lo_is_not_loopback() -> None:
    names = [n for _i, n in socket.if_nameindex() if n != "lo"]
    if not names:
        pytest.skip("no network interface besides lo")
    assert not auth.is_loopback_endpoint(f"tcp://{names[0]}:5555")


def test_serve_refuses_a_public_bind_without_keys_at_once(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = _cli("serve", "--endpoint", "tcp://0.0.0.0:5599")
    assert r.returncode == 2
    assert "refusing to bind tcp://0.0.0.0:5599 without CURVE" in r.stderr and "keygen" in r.stderr
    assert "READY" not in r.stdout
    assert time.monotonic() - t0 < 30
    pub, sec, _ = auth.write_key_pair(tmp_path, "server")
    half = _cli("serve", "--endpoint", "tcp://0.0.0.0:5599", "--curve-secret-key", str(sec))
    assert half.returncode == 2 and "--authorized-keys" in half.stderr
    wrong = _cli("serve", "--endpoint", "tcp://0.0.0.0:5599", "--curve-secret-key", str(pub), "--authorized-keys", str(pub))
    assert wrong.returncode == 2 and "only a public key" in wrong.stderr


def test_server_bind_applies_the_rule_too() -> None:
    server = Server(ServerConfig(endpoint="tcp://0.0.0.0:5598"))
    try:
        with pytest.raises(auth.AuthConfigError):
            server.bind()
    finally:
        server.sock.close(0)


# --- CURVE on a real socket ----------------------------------------------------------


class Keys:
    def __init__(self, root: Path):
        self.server_pub, self.server_sec, _ = auth.write_key_pair(root, "server")
        self.client_pub, self.client_sec, _ = auth.write_key_pair(root / "clients", "laptop")
        self.stranger_pub, self.stranger_sec, _ = auth.write_key_pair(root / "others", "stranger")

    def server(self) -> auth.CurveServerKeys:
        return auth.load_server_keys(self.server_sec, self.client_pub.parent)


@pytest.fixture()
def curve_sidecar(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Server, str, Keys]]:
    keys = Keys(tmp_path)
    limit = getattr(request, "param", auth.DEFAULT_MAX_RECV_FRAME_BYTES)
    server = Server(ServerConfig(endpoint="tcp://127.0.0.1:*", curve=keys.server(), max_recv_frame_bytes=limit, max_message_bytes=256 * 1024 * 1024))
    endpoint = server.bind()
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server, endpoint, keys
    server.stop()
    t.join(5)
    server.close_auth()


def _curve_client(endpoint: str, server_pub: Path, client_sec: Path | None) -> Client:
    c = Client.__new__(Client)
    c.sock = zmq.Context.instance().socket(zmq.DEALER)
    c.sock.setsockopt(zmq.LINGER, 0)
    if client_sec is not None:
        pub, sec = auth.load_key_pair(client_sec)
        c.sock.curve_serverkey = auth.read_certificate(server_pub)[0]
        c.sock.curve_publickey = pub
        c.sock.curve_secretkey = sec
    c.next_id = 1
    return c


def _events_until(monitor: zmq.Socket[Any], wanted: set[int], timeout_s: float) -> set[int]:
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not (seen & wanted):
        if monitor.poll(100):
            seen.add(recv_monitor_message(monitor)["event"])
    return seen


def _hello(c: Client) -> dict[str, Any]:
    return c.decoded("hello", protocol=protocol.PROTOCOL_VERSION, client="pytest", sample=handshake_sample())


def test_an_authorized_client_gets_in_over_curve(curve_sidecar: tuple[Server, str, Keys]) -> None:
    server, endpoint, keys = curve_sidecar
    c = _curve_client(endpoint, keys.server_pub, keys.client_sec)
    c.sock.connect(endpoint)
    try:
        env = _hello(c)
        assert env["ok"], env
        assert env["result"]["protocol"] == protocol.PROTOCOL_VERSION
    finally:
        c.close()


@pytest.mark.parametrize("who", ["stranger", "no key", "wrong server key"])
def test_other_clients_are_refused_at_the_handshake_and_run_nothing(curve_sidecar: tuple[Server, str, Keys], who: str) -> None:
    server, endpoint, keys = curve_sidecar
    if who == "stranger":
        c = _curve_client(endpoint, keys.server_pub, keys.stranger_sec)
        expect = {zmq.EVENT_HANDSHAKE_FAILED_AUTH}
    elif who == "no key":
        c = _curve_client(endpoint, keys.server_pub, None)
        expect = {zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL}
    else:
        c = _curve_client(endpoint, keys.stranger_pub, keys.client_sec)
        expect = {zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_DISCONNECTED, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}
    monitor = c.sock.get_monitor_socket()
    c.sock.connect(endpoint)
    try:
        before = server.requests
        try:
            # Queued until a connection completes its handshake, which never happens;
            # without NOBLOCK a send after the refusal waits for a peer forever.
            c.sock.send_multipart(protocol.encode({"id": 1, "op": "call", "fn": "jax.numpy.add", "args": [1, 2], "kwargs": {}, "fetch": True}), flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        seen = _events_until(monitor, expect, 10)
        assert seen & expect, f"no refusal seen; events {seen}"
        assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in seen
        assert not c.sock.poll(500), "a refused client got a reply"
        assert server.requests == before, "the refused client's request reached the sidecar"
        # The sidecar is still serving the client it knows.
        good = _curve_client(endpoint, keys.server_pub, keys.client_sec)
        good.sock.connect(endpoint)
        assert _hello(good)["ok"]
        good.close()
    finally:
        c.sock.disable_monitor()
        monitor.close(0)
        c.close()


def _zmtp_greeting(mechanism: bytes) -> bytes:
    return b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def _closed_within(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_an_unauthenticated_peer_declaring_a_huge_frame_is_cut_off_before_anything_is_allocated(curve_sidecar: tuple[Server, str, Keys]) -> None:
    server, endpoint, keys = curve_sidecar
    host, port = endpoint[len("tcp://") :].rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    try:
        s.sendall(_zmtp_greeting(b"CURVE"))
        # A command frame (flags: COMMAND | LONG) announcing 4 GiB: without MAXMSGSIZE
        # libzmq would size a buffer for it and fill it with whatever arrives.
        s.sendall(bytes([0x06]) + struct.pack(">Q", 4 * 1024**3))
        s.sendall(b"\x00" * 65536)
        assert _closed_within(s, 5), "the sidecar kept reading a 4 GiB frame from an unauthenticated peer"
    finally:
        s.close()
    good = _curve_client(endpoint, keys.server_pub, keys.client_sec)
    good.sock.connect(endpoint)
    assert _hello(good)["ok"]
    good.close()


def test_a_peer_with_the_null_mechanism_is_cut_off(curve_sidecar: tuple[Server, str, Keys]) -> None:
    _server, endpoint, _keys = curve_sidecar
    host, port = endpoint[len("tcp://") :].rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    try:
        s.sendall(_zmtp_greeting(b"NULL"))
        assert _closed_within(s, 5)
    finally:
        s.close()


@pytest.mark.parametrize("curve_sidecar", [1024 * 1024], indirect=True)
def test_frames_over_the_limit_disconnect_even_an_authorized_peer_and_the_sidecar_keeps_serving(curve_sidecar: tuple[Server, str, Keys]) -> None:
    server, endpoint, keys = curve_sidecar
    c = _curve_client(endpoint, keys.server_pub, keys.client_sec)
    monitor = c.sock.get_monitor_socket()
    c.sock.connect(endpoint)
    try:
        assert _hello(c)["ok"]
        before = server.requests
        big = os.urandom(2 * 1024 * 1024)
        c.send_raw([protocol.encode({"id": 9, "op": "ping"})[0], big])
        seen = _events_until(monitor, {zmq.EVENT_DISCONNECTED}, 10)
        assert zmq.EVENT_DISCONNECTED in seen
        assert server.requests == before
        # Frames under the limit (the 16 MiB array frames are well under the default) still pass.
        c2 = _curve_client(endpoint, keys.server_pub, keys.client_sec)
        c2.sock.connect(endpoint)
        env = c2.decoded("get", value=[np.arange(100_000, dtype=np.float64)])
        assert env["ok"] and env["result"][0][-1] == 99_999
        c2.close()
    finally:
        c.sock.disable_monitor()
        monitor.close(0)
        c.close()


def test_the_frame_limit_applies_to_every_endpoint_and_the_handshake_deadline_to_network_ones(tmp_path: Path) -> None:
    ctx = zmq.Context.instance()
    for endpoint, network in (("tcp://127.0.0.1:*", True), (f"ipc://{tmp_path}/s.sock", False)):
        sock = ctx.socket(zmq.ROUTER)
        try:
            assert auth.secure_socket(sock, endpoint, None, 1234) is None
            assert sock.getsockopt(zmq.MAXMSGSIZE) == 1234
            assert sock.getsockopt(zmq.HANDSHAKE_IVL) == (auth.TCP_HANDSHAKE_MS if network else 30000)
        finally:
            sock.close(0)


def test_authorized_keys_from_several_sources_add_up(tmp_path: Path) -> None:
    _pub, sec, _ = auth.write_key_pair(tmp_path, "server")
    a = auth.write_key_pair(tmp_path / "team", "a")
    b = auth.write_key_pair(tmp_path / "ci", "b")
    keys = auth.load_server_keys(sec, [tmp_path / "team", b[0]])
    assert keys.authorized == {a[2], b[2]}
    with pytest.raises(auth.AuthConfigError, match="no --authorized-keys"):
        auth.load_server_keys(sec, [])
