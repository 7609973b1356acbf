"""The Python side of jaxbridge: a ZeroMQ ROUTER that holds JAX arrays and runs calls.

The package is layered; a module imports only from its own layer or the
layers below it (tests/test_layers.py walks every import to check):

    wire     protocol (the wire, the only msgpack user), limits (the
             sizes a peer may send or make the sidecar create), sample (the
             handshake value), auth (CURVE and the binding rule),
             remote_errors (exceptions as the client sees them), echo
    values   handles (the handle table), allowlist, remote (Python values
             as TypeScript pytrees), arrow_io (Arrow tables), events
             (callback event sinks and the table that routes them),
             sessions (what each client connection owns),
             sharding (meshes, PartitionSpecs and array layouts on the wire)
    program  program/: Programs traced in TypeScript, decoded, checked and
             lowered to jax.jit functions (see program/__init__.py)
    ops      ops/: one module per op family, each exporting its op table;
             ops/host.py says what an op may use of the server
    server   server (the loop, the dispatch table, the watchdog)
    cli      cli, supervisor (`serve` restarts the sidecar), __main__, and this file
"""

from .protocol import PROTOCOL_VERSION
from .server import Server, ServerConfig

# The layers above, lowest first, by top-level module or subpackage.
LAYERS = (
    ("wire", ("protocol", "limits", "sample", "auth", "remote_errors", "echo")),
    ("values", ("handles", "allowlist", "remote", "arrow_io", "events", "sessions", "sharding")),
    ("program", ("program",)),
    ("ops", ("ops",)),
    ("server", ("server",)),
    ("cli", ("cli", "supervisor", "__main__", "__init__")),
)

__all__ = ["LAYERS", "PROTOCOL_VERSION", "Server", "ServerConfig"]
__version__ = "0.1.0"
