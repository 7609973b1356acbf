"""Who may talk to a sidecar: the binding rule, CURVE keys and the ZAP handler.

The rule: a sidecar binds loopback (or ipc://) unless told otherwise, and a
bind anyone else could reach (0.0.0.0, `*`, a public address or interface)
is refused unless CURVE is on, with a server key pair and a list of client
public keys that may connect. A client whose key is not listed is refused by
the ZAP handler during the handshake, before any message of it reaches the
sidecar's loop.

Keys are ZeroMQ certificates, the format pyzmq's `zmq.auth` and czmq use:
`NAME.key` holds the public key, `NAME.key_secret` the pair (0600):

    #   ZeroMQ CURVE **Secret** Certificate
    metadata
    curve
        public-key = "<40 Z85 characters>"
        secret-key = "<40 Z85 characters>"

`--authorized-keys` takes a folder (every `*.key` in it, as czmq does), one
certificate file, or a text file with one Z85 public key per line (the first
word of a line; the rest of it, and lines starting with `#` that hold no key,
are comments).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import zmq
from zmq.utils import z85

from .limits import DEFAULT_MAX_RECV_FRAME_BYTES  # noqa: F401 - the serve default, re-exported

log = logging.getLogger("jaxbridge.sidecar.auth")

ZAP_DOMAIN = "jaxbridge"

# The largest frame the sidecar's socket accepts, on every transport
# (ZMQ_MAXMSGSIZE, limits.DEFAULT_MAX_RECV_FRAME_BYTES; libzmq applies it per
# frame, as soon as it reads a frame's header, before it allocates anything).
# Array bytes travel in frames of at most 16 MiB (protocol.MAX_FRAME_BYTES),
# so only the envelope (msgpack: a program body, plain lists of numbers) can
# come near it; 64 MiB leaves it four times the array frame. A peer that
# declares a larger frame is disconnected at once, authenticated or not.
# Before the CURVE handshake completes a peer can only send handshake
# commands, so an unauthenticated peer can make the sidecar hold at most this
# much for it, and only until the handshake fails or times out (HANDSHAKE_IVL
# below). A whole message is handed over by libzmq only once complete: its
# total and its frame count are checked right then, before anything is
# decoded or allocated for it (protocol.decode).
# An unauthenticated connection that has not finished its handshake by then is dropped.
TCP_HANDSHAKE_MS = 10_000
# ZMTP heartbeats on network endpoints: a peer silent this long is disconnected.
HEARTBEAT_MS = 5_000
HEARTBEAT_TIMEOUT_MS = 30_000

_SECRET_BANNER = """#   ****  Generated on {0} by jaxbridge-sidecar keygen  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

"""
_PUBLIC_BANNER = """#   ****  Generated on {0} by jaxbridge-sidecar keygen  ****
#   ZeroMQ CURVE Public Certificate
#   Give this file to the other side: a sidecar lists clients' public keys
#   in --authorized-keys; a client needs the sidecar's public key.

"""


class AuthConfigError(ValueError):
    """A key file, a key list or a bind that cannot be used as asked; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class CurveServerKeys:
    """The sidecar's key pair and the client public keys it accepts (all Z85, 40 ASCII bytes)."""

    public_key: bytes
    secret_key: bytes
    authorized: frozenset[bytes]
    # Where the keys came from, for messages.
    source: str = ""


# --- key files ------------------------------------------------------------------


def _check_z85_key(key: bytes, where: str) -> bytes:
    key = key.strip()
    if len(key) != 40:
        raise AuthConfigError(f"{where}: a CURVE key is 40 Z85 characters, got {len(key)}")
    try:
        raw = z85.decode(key)
    except Exception:  # noqa: BLE001
        raise AuthConfigError(f"{where}: {key[:8].decode(errors='replace')}... is not a Z85-encoded key") from None
    if len(raw) != 32:
        raise AuthConfigError(f"{where}: a CURVE key decodes to 32 bytes, got {len(raw)}")
    return key


def _is_z85_key(word: bytes) -> bool:
    try:
        _check_z85_key(word, "")
        return True
    except AuthConfigError:
        return False


def read_certificate(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a ZeroMQ certificate file."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise AuthConfigError(f"cannot read key file {p}: {e.strerror or e}") from None
    public = secret = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(b"#"):
            continue
        if line.startswith(b"public-key"):
            public = line.split(b"=", 1)[1].strip(b" \t'\"")
        elif line.startswith(b"secret-key"):
            secret = line.split(b"=", 1)[1].strip(b" \t'\"")
    if public is None:
        raise AuthConfigError(f"{p} is not a ZeroMQ certificate: no `public-key = \"...\"` line (make one with `python -m jaxbridge_sidecar keygen`)")
    return _check_z85_key(public, str(p)), None if secret is None else _check_z85_key(secret, str(p))


def load_key_pair(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """The (public, secret) pair from a `.key_secret` certificate."""
    public, secret = read_certificate(path)
    if secret is None:
        raise AuthConfigError(f"{path} holds only a public key: pass the `.key_secret` file of the pair")
    if zmq.curve_public(secret) != public:
        raise AuthConfigError(f"{path}: its public key does not belong to its secret key")
    return public, secret


def load_authorized_keys(path: str | os.PathLike[str]) -> frozenset[bytes]:
    """Client public keys: every `*.key` in a folder, one certificate, or a file of Z85 keys one per line."""
    p = Path(path)
    keys: set[bytes] = set()
    if p.is_dir():
        for f in sorted(p.glob("*.key")):
            keys.add(read_certificate(f)[0])
        if not keys:
            raise AuthConfigError(f"no client public keys in {p}: the folder has no *.key certificate, so no client could connect")
        return frozenset(keys)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise AuthConfigError(f"cannot read authorized keys {p}: {e.strerror or e}") from None
    if b"public-key" in text:
        return frozenset({read_certificate(p)[0]})
    for n, line in enumerate(text.splitlines(), 1):
        # The first word of a line is a key; what follows it is a comment. `#`
        # is a Z85 character, so a line starting with it is a comment only if
        # its first word is not a key.
        words = line.split()
        if not words or (words[0].startswith(b"#") and not _is_z85_key(words[0])):
            continue
        keys.add(_check_z85_key(words[0], f"{p} line {n}"))
    if not keys:
        raise AuthConfigError(f"no client public keys in {p}, so no client could connect")
    return frozenset(keys)


def load_server_keys(secret_key_file: str | os.PathLike[str], authorized_keys: str | os.PathLike[str] | list[str | os.PathLike[str]]) -> CurveServerKeys:
    """The sidecar's pair and the union of the client keys in one or more `--authorized-keys` sources."""
    public, secret = load_key_pair(secret_key_file)
    sources = authorized_keys if isinstance(authorized_keys, list) else [authorized_keys]
    if not sources:
        raise AuthConfigError("no --authorized-keys given, so no client could connect")
    authorized = frozenset().union(*(load_authorized_keys(a) for a in sources))
    return CurveServerKeys(public, secret, authorized, source=f"{secret_key_file}, {len(authorized)} authorized client key(s) from {', '.join(map(str, sources))}")


def _write(path: Path, text: str, mode: int, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise AuthConfigError(f"{path} exists already; pass --force to replace it (clients or sidecars holding the old key will be refused)") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)


def write_key_pair(out_dir: str | os.PathLike[str], name: str, force: bool = False) -> tuple[Path, Path, bytes]:
    """Write NAME.key (public, 0644) and NAME.key_secret (the pair, 0600) into out_dir; returns (public file, secret file, public key)."""
    if not name or "/" in name or name.startswith("."):
        raise AuthConfigError(f"--name {name!r}: give a plain file name such as `server` or `laptop`")
    d = Path(out_dir)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    now = datetime.datetime.now().isoformat(timespec="seconds")
    pub_file, sec_file = d / f"{name}.key", d / f"{name}.key_secret"
    body_pub = f'metadata\ncurve\n    public-key = "{public.decode()}"\n'
    body_sec = f'metadata\ncurve\n    public-key = "{public.decode()}"\n    secret-key = "{secret.decode()}"\n'
    if not force:
        for f in (pub_file, sec_file):
            if f.exists():
                raise AuthConfigError(f"{f} exists already; pass --force to replace it (clients or sidecars holding the old key will be refused)")
    _write(sec_file, _SECRET_BANNER.format(now) + body_sec, 0o600, force)
    _write(pub_file, _PUBLIC_BANNER.format(now) + body_pub, 0o644, force)
    return pub_file, sec_file, public


# --- the binding rule -------------------------------------------------------------


def endpoint_host(endpoint: str) -> str | None:
    """The host part of a tcp:// endpoint (`*`, an address, a name or an interface), or None for other transports."""
    if not endpoint.startswith("tcp://"):
        return None
    rest = endpoint[len("tcp://") :]
    if rest.startswith("["):
        return rest[1 : rest.find("]")] if "]" in rest else rest
    return rest.rsplit(":", 1)[0]


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for inproc://, for ipc:// in a private folder (see `private_ipc`) and
    for tcp:// on a loopback address, `localhost` or the `lo` interface."""
    if endpoint.startswith("inproc://"):
        return True
    if endpoint.startswith("ipc://"):
        return private_ipc(endpoint) is None
    host = endpoint_host(endpoint)
    if host is None or host in ("", "*"):
        return False
    if host == "lo":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        pass
    if host in {name for _i, name in _interfaces()}:
        return False  # an interface other than lo
    try:
        addrs = {a[4][0] for a in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addrs)


def private_ipc(endpoint: str) -> str | None:
    """Why an ipc:// endpoint is not private to this user, or None when it is:
    its folder must exist, belong to this user and be writable by no one else
    (other users can then neither replace the socket nor, with the default
    umask, connect to it). Linux abstract sockets (`ipc://@name`) have no
    permissions at all: anyone on the machine can connect."""
    path = endpoint[len("ipc://") :]
    if path.startswith("@"):
        return "an abstract socket (ipc://@...) can be reached by every user of this machine"
    folder = os.path.dirname(os.path.abspath(path)) or "."
    try:
        st = os.stat(folder)
    except OSError:
        return f"its folder {folder} does not exist"
    if st.st_uid != os.getuid():
        return f"its folder {folder} belongs to another user"
    if st.st_mode & 0o022:
        return f"its folder {folder} is writable by other users (mode {st.st_mode & 0o777:o})"
    return None


def _interfaces() -> list[tuple[int, str]]:
    try:
        return socket.if_nameindex()
    except OSError:
        return []


def check_bind(endpoint: str, curve: CurveServerKeys | None) -> None:
    """Refuse a bind that others could reach unless CURVE with client keys is on."""
    if curve is not None or is_loopback_endpoint(endpoint):
        return
    if endpoint.startswith("ipc://"):
        raise AuthConfigError(
            f"refusing to bind {endpoint} without CURVE: {private_ipc(endpoint)}. "
            "Bind an ipc:// socket in a folder only you can write (mkdir -m 700), or turn on CURVE (`keygen`, then "
            "--curve-secret-key and --authorized-keys)"
        )
    raise AuthConfigError(
        f"refusing to bind {endpoint} without CURVE: anyone who can reach it could run code on this machine. "
        "Either bind loopback (tcp://127.0.0.1:PORT, reached through an SSH tunnel), or turn on CURVE: "
        "`python -m jaxbridge_sidecar keygen --out keys --name server`, a key pair for each client "
        "(`keygen --out DIR --name laptop`, then copy laptop.key into keys/clients/), and serve with "
        "--curve-secret-key keys/server.key_secret --authorized-keys keys/clients/"
    )


# --- the socket -----------------------------------------------------------------


class _KeyList:
    """The ZAP decision: is this client's public key listed?"""

    def __init__(self, keys: frozenset[bytes]):
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.keys
        if not ok:
            log.warning("refused a CURVE client whose public key %s is not among the authorized keys", key.decode(errors="replace"))
        return ok


def secure_socket(sock: zmq.Socket[Any], endpoint: str, curve: CurveServerKeys | None, max_recv_frame_bytes: int) -> Any:
    """Apply the binding rule and the receive limit, and turn on CURVE with a ZAP handler when keys are given.
    Call before bind. Returns the authenticator (stop it after the socket closes) or None."""
    check_bind(endpoint, curve)
    # Every peer gets the frame limit, on ipc:// as on tcp://: no transport
    # lets a peer make the sidecar buffer an unbounded frame.
    if max_recv_frame_bytes and max_recv_frame_bytes > 0:
        sock.setsockopt(zmq.MAXMSGSIZE, max_recv_frame_bytes)
    if not endpoint.startswith(("ipc://", "inproc://")):
        # Peers on a network (loopback included: other users of this machine)
        # get a handshake deadline, and heartbeats so that a peer whose host
        # vanished is noticed (a disconnect; sessions.py keeps its session
        # for the disconnect grace).
        sock.setsockopt(zmq.HANDSHAKE_IVL, TCP_HANDSHAKE_MS)
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    if curve is None:
        return None
    if not zmq.has("curve"):
        raise AuthConfigError(f"this libzmq ({zmq.zmq_version()}) was built without CURVE; install pyzmq's wheels, which include it")
    from zmq.auth.thread import ThreadAuthenticator

    # One ZAP handler per context (inproc://zeromq.zap.01). libzmq releases an
    # inproc name asynchronously after its socket closes, so a handler stopped
    # a moment ago (a sidecar restarted in the same process) may still hold it.
    deadline = time.monotonic() + 5
    while True:
        authenticator = ThreadAuthenticator(sock.context, log=logging.getLogger("jaxbridge.sidecar.zap"))
        try:
            authenticator.start()
            break
        except zmq.ZMQError as e:
            if e.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    authenticator.configure_curve_callback(ZAP_DOMAIN, _KeyList(curve.authorized))
    if not authenticator.is_alive():
        raise AuthConfigError("the ZAP authentication thread did not start; refusing to serve with CURVE but no client check")
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public_key)
    sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret_key)
    log.info("CURVE on: %s", curve.source)
    return authenticator
