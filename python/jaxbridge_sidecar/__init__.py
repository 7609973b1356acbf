"""The Python side of jaxbridge: a ZeroMQ ROUTER that holds JAX arrays and runs calls."""

from .protocol import PROTOCOL_VERSION
from .server import Server, ServerConfig

__all__ = ["PROTOCOL_VERSION", "Server", "ServerConfig"]
__version__ = "0.1.0"
