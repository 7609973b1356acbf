"""`python -m jaxbridge_sidecar serve|doctor`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys


def _configure_jax(x64: bool) -> None:
    # x64 on by default: int64/float64 arrays are stored as themselves instead
    # of being narrowed by JAX. Must run before any array exists.
    import jax

    jax.config.update("jax_enable_x64", x64)


def cmd_serve(args: argparse.Namespace) -> int:
    _configure_jax(not args.no_x64)
    from .allowlist import DEFAULT_NAMES, DEFAULT_NAMESPACES
    from .server import Server, ServerConfig, die_with_parent

    die_with_parent(args.parent_pid)
    config = ServerConfig(
        endpoint=args.endpoint,
        parent_pid=args.parent_pid,
        namespaces=tuple(DEFAULT_NAMESPACES) + tuple(args.allow or ()),
        names=DEFAULT_NAMES,
        max_message_bytes=args.max_message_bytes,
    )
    server = Server(config)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    bound = server.bind()
    if args.bench_echo:
        from .echo import start_echo

        start_echo(args.bench_echo)
    import jax

    jax.devices()  # initialise the backend before we say we are ready
    print(f"JAXBRIDGE READY {bound}", flush=True)
    server.serve_forever()
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    _configure_jax(not args.no_x64)
    import jax
    import numpy
    import zmq

    from .protocol import PROTOCOL_VERSION

    info = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "jax": jax.__version__,
        "numpy": numpy.__version__,
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
        "protocol": PROTOCOL_VERSION,
    }
    print(json.dumps(info, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("JAXBRIDGE_LOG", "WARNING"), format="jaxbridge-sidecar %(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="jaxbridge-sidecar", description="The Python JAX sidecar for jaxbridge.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve requests on a ZeroMQ endpoint")
    s.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint to bind (ipc://PATH or tcp://HOST:PORT)")
    s.add_argument("--parent-pid", type=int, default=None, help="exit when this process is no longer our parent")
    s.add_argument("--allow", action="append", help="allow calls into this Python namespace (repeatable)")
    s.add_argument("--no-x64", action="store_true", help="run JAX with 32-bit defaults (64-bit arrays are then narrowed by JAX)")
    s.add_argument("--max-message-bytes", type=int, default=4 * 1024**3)
    s.add_argument("--bench-echo", metavar="ENDPOINT", help=argparse.SUPPRESS)
    s.set_defaults(fn=cmd_serve)
    d = sub.add_parser("doctor", help="print what this Python and JAX see, as JSON")
    d.add_argument("--no-x64", action="store_true")
    d.set_defaults(fn=cmd_doctor)
    args = p.parse_args(argv)
    return args.fn(args)
