"""The sizes a sidecar accepts, and how a refusal reads.

Every number a peer controls (a message's bytes and frames, how deeply its
values nest, the bytes an array would take) is checked against one of these
before anything is allocated for it. A refusal is one short line naming the
limit, the value found and the `serve` option that raises it."""

from __future__ import annotations

import dataclasses
import os

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024**3
# A put of a pytree sends one frame per array, so this is generous; it only
# bounds what a message of tiny frames can make the decoder walk.
DEFAULT_MAX_FRAMES = 65536
# Containers and module nodes inside one another. Real pytrees stay in the
# tens; the bound keeps every walk over a value (and msgpack's own C stack,
# one nested unpack per module node) far from the thread's stack size.
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_RECV_FRAME_BYTES = 64 * 1024 * 1024
# Arrays have at most this many axes (XLA's own bound is of this order).
MAX_RANK = 64


def physical_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 1024**3


@dataclasses.dataclass(frozen=True)
class Limits:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_frames: int = DEFAULT_MAX_FRAMES
    max_depth: int = DEFAULT_MAX_DEPTH
    # ZMQ_MAXMSGSIZE: a peer that sends a larger single frame is disconnected by libzmq.
    max_recv_frame_bytes: int = DEFAULT_MAX_RECV_FRAME_BYTES
    # The largest array a call or a program may create (the memory budget of
    # allowlist.check_creation and program decoding); None: physical memory.
    max_array_bytes: int | None = None

    @property
    def array_budget(self) -> int:
        return self.max_array_bytes if self.max_array_bytes is not None else physical_memory_bytes()

    def describe(self) -> dict[str, int]:
        """As the handshake reports them."""
        return {
            "max_message_bytes": self.max_message_bytes,
            "max_frames": self.max_frames,
            "max_depth": self.max_depth,
            "max_recv_frame_bytes": self.max_recv_frame_bytes,
            "max_array_bytes": self.array_budget,
        }


# The `serve` option that raises each limit (cli.py defines them).
OPTIONS = {
    "max_message_bytes": "--max-message-bytes",
    "max_frames": "--max-frames",
    "max_depth": "--max-depth",
    "max_recv_frame_bytes": "--max-recv-frame-bytes",
    "max_array_bytes": "--max-array-bytes",
}


def fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def exceeded(what: str, found: str, limit: str, value: str) -> str:
    """The message of a refusal: `what` is `found`, over `limit` = `value`, in
    one line with the option that raises it (the error type is the caller's:
    `MessageTooLarge` for bytes, `LimitExceeded` for the rest)."""
    return f"{what} is {found}, over the sidecar's {limit} of {value} (raise it with `serve {OPTIONS[limit]}`)"
