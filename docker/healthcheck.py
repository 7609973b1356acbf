"""The container's health check: the protocol handshake against the sidecar in
this container (hello with the handshake sample; the echo must come back bit
for bit), over CURVE with the pair the entrypoint made for it. Exit 0 when
healthy, 1 with the reason otherwise. Does not import JAX (fast, small)."""

from __future__ import annotations

import importlib.util
import os
import sys
import types

# Load jaxbridge_sidecar.protocol and .sample without the package's __init__,
# which imports the server and so JAX.
_spec = importlib.util.find_spec("jaxbridge_sidecar")
if _spec is None or not _spec.submodule_search_locations:
    print("unhealthy: jaxbridge_sidecar is not installed", file=sys.stderr)
    sys.exit(1)
_pkg = types.ModuleType("jaxbridge_sidecar")
_pkg.__path__ = list(_spec.submodule_search_locations)
sys.modules["jaxbridge_sidecar"] = _pkg

import zmq  # noqa: E402

from jaxbridge_sidecar import auth, protocol  # noqa: E402
from jaxbridge_sidecar.limits import Limits  # noqa: E402
from jaxbridge_sidecar.sample import handshake_sample, same  # noqa: E402


def main() -> int:
    run = os.environ.get("JAXBRIDGE_RUN", "/tmp/jaxbridge")
    endpoint = os.environ.get("JAXBRIDGE_HEALTH_ENDPOINT", f"tcp://127.0.0.1:{os.environ.get('JAXBRIDGE_PORT', '5555')}")
    timeout_ms = int(float(os.environ.get("JAXBRIDGE_HEALTH_TIMEOUT_S", "8")) * 1000)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    server_key, client_key = os.path.join(run, "server.key"), os.path.join(run, "health", "health.key_secret")
    if os.path.exists(server_key) and os.path.exists(client_key):
        public, secret = auth.load_key_pair(client_key)
        sock.curve_serverkey = auth.read_certificate(server_key)[0]
        sock.curve_publickey = public
        sock.curve_secretkey = secret
    try:
        sock.connect(endpoint)
        sample = handshake_sample()
        sock.send_multipart(protocol.encode({"id": 1, "op": "hello", "protocol": protocol.PROTOCOL_VERSION, "client": "jaxbridge-healthcheck", "sample": sample}))
        if not sock.poll(timeout_ms):
            print(f"unhealthy: no reply to hello from {endpoint} within {timeout_ms} ms", file=sys.stderr)
            return 1
        env = protocol.decode(sock.recv_multipart(), Limits(max_message_bytes=1 << 40))
        if not env.get("ok"):
            print(f"unhealthy: hello failed: {env.get('error')}", file=sys.stderr)
            return 1
        result = env["result"]
        if result.get("protocol") != protocol.PROTOCOL_VERSION or not same(result.get("sample"), sample):
            print("unhealthy: the handshake sample came back different", file=sys.stderr)
            return 1
        print(f"healthy: protocol {result['protocol']}, jax {result.get('jax')} on {result.get('backend')} ({', '.join(d['str'] for d in result.get('devices', []))})")
        return 0
    finally:
        sock.close(0)
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())
