"""`python -m jaxbridge_sidecar serve|doctor|keygen|ops`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys


# More namespaces to allow, comma-separated, added to --allow: the sidecar's
# configuration where a command line is awkward (Compose, the embedded sidecar).
ALLOW_ENV = "JAXBRIDGE_ALLOW"


def _configure_jax(x64: bool, num_cpu_devices: int | None = None, distributed: dict | None = None) -> None:
    # x64 on by default: int64/float64 arrays are stored as themselves instead
    # of being narrowed by JAX. Must run before any array exists.
    import jax

    jax.config.update("jax_enable_x64", x64)
    if num_cpu_devices is not None:
        # What --xla_force_host_platform_device_count does, without touching
        # XLA_FLAGS; JAX refuses it once a backend has started.
        jax.config.update("jax_num_cpu_devices", num_cpu_devices)
    if distributed is not None:
        # One process of a multi-controller job. JAX refuses initialize()
        # once a backend exists, and cannot re-initialise later: membership
        # is fixed at process start. CPU collectives go through gloo (the
        # default on today's JAX, named so that an older default cannot
        # leave a CPU job without cross-process collectives).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(**distributed)


def _distributed(args: argparse.Namespace) -> dict | str | None:
    """`jax.distributed.initialize`'s arguments from serve's flags, None
    without --coordinator, or the message that says what is wrong."""
    given = [f for f, v in (("--coordinator", args.coordinator), ("--num-processes", args.num_processes), ("--process-id", args.process_id)) if v is not None]
    if not given:
        return None
    if len(given) < 3:
        return f"a process of a job needs --coordinator, --num-processes and --process-id together; got only {', '.join(given)}"
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f"--coordinator must be HOST:PORT (the address of process 0's coordination service), got {args.coordinator!r}"
    if args.num_processes < 1:
        return f"--num-processes must be at least 1, got {args.num_processes}"
    if not 0 <= args.process_id < args.num_processes:
        return f"--process-id must be in [0, {args.num_processes}) for --num-processes {args.num_processes}, got {args.process_id}"
    if args.heartbeat_timeout is not None and args.heartbeat_timeout < 1:
        return f"--heartbeat-timeout must be at least 1 second, got {args.heartbeat_timeout}"
    out = {"coordinator_address": args.coordinator, "num_processes": args.num_processes, "process_id": args.process_id}
    if args.heartbeat_timeout is not None:
        # How long a silent peer counts as alive; after it every survivor
        # aborts (JAX's rule), so a supervisor must restart the whole job.
        out["heartbeat_timeout_seconds"] = args.heartbeat_timeout
        out["shutdown_timeout_seconds"] = args.heartbeat_timeout
    return out


def _fail(message: str) -> int:
    print(f"jaxbridge-sidecar: error: {message}", file=sys.stderr, flush=True)
    return 2


def _check_serve(args: argparse.Namespace) -> tuple[object | None, list[str]] | int:
    """The checks `serve` makes before JAX starts (a refusal fails at once with
    the reason): CURVE keys, the binding rule for the endpoint and the bench
    echo, the allowed namespaces. Returns (curve keys, extra namespaces) or an exit status."""
    from . import auth

    if bool(args.curve_secret_key) != bool(args.authorized_keys):
        return _fail("CURVE needs both --curve-secret-key (this sidecar's .key_secret) and --authorized-keys (the clients' public keys)")
    try:
        curve = auth.load_server_keys(args.curve_secret_key, args.authorized_keys) if args.curve_secret_key else None
        auth.check_bind(args.endpoint, curve)
        if args.bench_echo:
            # The echo socket has no CURVE of its own: it must be private whatever the main endpoint has.
            auth.check_bind(args.bench_echo, None)
    except auth.AuthConfigError as e:
        return _fail(str(e))
    allow = [*(args.allow or ()), *(n.strip() for n in os.environ.get(ALLOW_ENV, "").split(",") if n.strip())]
    bad = [n for n in allow if not all(part.isidentifier() for part in n.split("."))]
    if bad:
        return _fail(f"--allow / {ALLOW_ENV}: {', '.join(map(repr, bad))} is not a dotted Python module name")
    if args.num_cpu_devices is not None and args.num_cpu_devices < 1:
        return _fail(f"--num-cpu-devices must be at least 1, got {args.num_cpu_devices}")
    distributed = _distributed(args)
    if isinstance(distributed, str):
        return _fail(distributed)
    return curve, allow


def cmd_serve(args: argparse.Namespace, argv: list[str]) -> int:
    checked = _check_serve(args)
    if isinstance(checked, int):
        return checked
    curve, allow = checked
    # A sidecar with a parent to die with (the embedded one) is supervised by that
    # parent; otherwise `serve` supervises itself (supervisor.py) unless told not to.
    if not args.no_supervisor and args.parent_pid is None:
        from .supervisor import supervise

        return supervise(_serve_args(argv))
    try:
        return _serve(args, curve, allow)
    finally:
        if args.remove_on_exit:
            _remove_private_dir(args.remove_on_exit)


def _serve(args: argparse.Namespace, curve: object, allow: list[str]) -> int:
    from . import auth

    distributed = _distributed(args)
    _configure_jax(not args.no_x64, args.num_cpu_devices, distributed if isinstance(distributed, dict) else None)
    from .allowlist import DEFAULT_NAMES, DEFAULT_NAMESPACES
    from .server import Server, ServerConfig, die_with_parent

    parent = args.parent_pid if args.parent_pid is not None else args.supervised_by
    die_with_parent(parent)
    lease = args.session_lease_seconds
    if lease is None:
        # The embedded sidecar's only client is its parent: it needs no lease.
        lease = None if args.parent_pid is not None else DEFAULT_SESSION_LEASE_SECONDS
    config = ServerConfig(
        endpoint=args.endpoint,
        parent_pid=parent,
        namespaces=tuple(DEFAULT_NAMESPACES) + tuple(allow),
        names=DEFAULT_NAMES,
        max_message_bytes=args.max_message_bytes,
        curve=curve,  # type: ignore[arg-type]
        max_recv_frame_bytes=args.max_recv_frame_bytes,
        max_frames=args.max_frames,
        max_depth=args.max_depth,
        max_array_bytes=args.max_array_bytes,
        max_sessions=args.max_sessions,
        session_lease_seconds=lease if lease and lease > 0 else None,
        disconnect_grace_seconds=args.disconnect_grace_seconds,
        max_run_seconds=args.max_run_seconds if args.max_run_seconds and args.max_run_seconds > 0 else None,
        previous_instance=args.previous_instance,
        restart_cause=args.restart_cause,
    )
    server = Server(config)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    try:
        bound = server.bind()
    except auth.AuthConfigError as e:
        return _fail(str(e))
    if args.bench_echo:
        from .echo import start_echo

        start_echo(args.bench_echo)
    import jax

    jax.devices()  # initialise the backend before we say we are ready
    if curve:
        print(f"jaxbridge-sidecar: CURVE on, public key {curve.public_key.decode()}, {len(curve.authorized)} authorized client key(s)", file=sys.stderr, flush=True)  # type: ignore[attr-defined]
    print(f"JAXBRIDGE READY {bound} instance={server.instance}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.close_auth()
    if server.busy():
        # A computation still runs in XLA on another thread: exit without the
        # interpreter's teardown, which would abort under it.
        sys.stdout.flush()
        sys.stderr.flush()
        if args.remove_on_exit:
            _remove_private_dir(args.remove_on_exit)
        os._exit(0)
    return 0


# Sessions of a shared sidecar that send nothing (not even a heartbeat) for this long are ended.
DEFAULT_SESSION_LEASE_SECONDS = 600.0


def _serve_args(argv: list[str]) -> list[str]:
    """The command line after `serve`, for the supervisor to pass to its child."""
    return argv[argv.index("serve") + 1 :] if "serve" in argv else []


def _remove_private_dir(path: str) -> None:
    """The embedded sidecar's socket folder: removed when we exit, also when the
    parent that made it was SIGKILLed and cannot. Only a folder named like the
    ones the TypeScript client makes (jaxbridge-*) is removed."""
    import shutil

    if os.path.basename(os.path.normpath(path)).startswith("jaxbridge-") and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


def cmd_keygen(args: argparse.Namespace) -> int:
    from . import auth

    try:
        pub, sec, key = auth.write_key_pair(args.out, args.name, force=args.force)
    except (auth.AuthConfigError, OSError) as e:
        return _fail(str(e))
    print(f"wrote {pub} (public key: give it to the other side)")
    print(f"wrote {sec} (key pair: keep it here, mode 0600)")
    print(f"public key: {key.decode()}")
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


def cmd_ops(args: argparse.Namespace) -> int:
    from .allowlist import documented_defaults
    from .protocol import ERROR_KINDS, PROTOCOL_VERSION
    from .server import serving_ops

    print(json.dumps({"protocol": PROTOCOL_VERSION, "ops": serving_ops(), "errors": list(ERROR_KINDS), "allow": documented_defaults()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("JAXBRIDGE_LOG", "WARNING"), format="jaxbridge-sidecar %(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="jaxbridge-sidecar", description="The Python JAX sidecar for jaxbridge.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve requests on a ZeroMQ endpoint")
    s.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint to bind (ipc://PATH or tcp://HOST:PORT)")
    s.add_argument("--parent-pid", type=int, default=None, help="exit when this process is no longer our parent")
    s.add_argument("--allow", action="append", help=f"allow calls into this Python namespace (repeatable; also ${ALLOW_ENV}, comma-separated)")
    s.add_argument("--no-x64", action="store_true", help="run JAX with 32-bit defaults (64-bit arrays are then narrowed by JAX)")
    s.add_argument("--num-cpu-devices", type=int, metavar="N", help="give the CPU backend N devices (jax_num_cpu_devices, as --xla_force_host_platform_device_count does): meshes and collectives on one machine")
    s.add_argument("--coordinator", metavar="HOST:PORT", help="join a multi-process JAX job (jax.distributed.initialize): process 0's coordination service address; needs --num-processes and --process-id")
    s.add_argument("--num-processes", type=int, metavar="N", help="processes in the job (with --coordinator)")
    s.add_argument("--process-id", type=int, metavar="I", help="this process's index in the job, 0 to N-1 (process 0 runs the coordination service)")
    s.add_argument("--heartbeat-timeout", type=int, metavar="SECONDS", help="with --coordinator: seconds without a peer's heartbeat before the job is declared dead and every process aborts (JAX's default 100)")
    s.add_argument("--max-message-bytes", type=int, default=4 * 1024**3, help="largest request accepted, all frames together (default 4 GiB)")
    s.add_argument("--max-frames", type=int, default=65536, help="most frames in one request (default 65536)")
    s.add_argument("--max-depth", type=int, default=64, help="deepest nesting of containers and module nodes in a request (default 64)")
    s.add_argument("--max-array-bytes", type=int, default=None, help="largest array a call or program may create (default: physical memory)")
    s.add_argument("--max-sessions", type=int, default=256, help="most client sessions at once (default 256)")
    s.add_argument("--session-lease-seconds", type=float, default=None, help=f"end a session that sent nothing, not even a heartbeat, for this long (default {DEFAULT_SESSION_LEASE_SECONDS:g}; none for the embedded sidecar; 0: never)")
    s.add_argument("--disconnect-grace-seconds", type=float, default=60.0, help="end a session whose peer disconnected and did not come back within this (default 60)")
    s.add_argument("--max-run-seconds", type=float, default=None, help="declare a request running longer hung: the sidecar exits and its supervisor restarts it (default: off)")
    s.add_argument("--no-supervisor", action="store_true", help="serve in this process: no restart after a crash or a hung run (implied by --parent-pid)")
    s.add_argument("--supervised-by", type=int, default=None, help=argparse.SUPPRESS)
    s.add_argument("--previous-instance", default=None, help=argparse.SUPPRESS)
    s.add_argument("--restart-cause", default=None, help=argparse.SUPPRESS)
    s.add_argument("--remove-on-exit", metavar="DIR", default=None, help=argparse.SUPPRESS)
    s.add_argument("--curve-secret-key", metavar="FILE", help="this sidecar's key pair (a .key_secret certificate from `keygen`): turns on CURVE; needed to bind anything but loopback")
    s.add_argument("--authorized-keys", metavar="FILE_OR_DIR", action="append", help="client public keys allowed to connect: a folder of *.key certificates, one certificate, or a file of Z85 keys one per line (repeatable)")
    s.add_argument("--max-recv-frame-bytes", type=int, default=64 * 1024 * 1024, help="on tcp://, disconnect a peer that sends a larger frame (ZMQ_MAXMSGSIZE; default 64 MiB; array frames are at most 16 MiB)")
    s.add_argument("--bench-echo", metavar="ENDPOINT", help=argparse.SUPPRESS)
    s.set_defaults(fn=cmd_serve)
    k = sub.add_parser("keygen", help="write a CURVE key pair: DIR/NAME.key (public) and DIR/NAME.key_secret (0600)")
    k.add_argument("--out", metavar="DIR", default=".", help="folder to write into (created 0700 if missing; default: here)")
    k.add_argument("--name", default="jaxbridge", help="file name stem (default jaxbridge): e.g. `server` on the sidecar's host, `laptop` on a client")
    k.add_argument("--force", action="store_true", help="replace existing files")
    k.set_defaults(fn=cmd_keygen)
    d = sub.add_parser("doctor", help="print what this Python and JAX see, as JSON")
    d.add_argument("--no-x64", action="store_true")
    d.set_defaults(fn=cmd_doctor)
    o = sub.add_parser("ops", help="print the protocol version, the ops this sidecar serves (name and family), its own error kinds and its default allow-list, as JSON")
    o.set_defaults(fn=cmd_ops)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.fn is cmd_serve:
        return cmd_serve(args, argv)
    return args.fn(args)
