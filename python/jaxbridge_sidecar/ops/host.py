"""What an op may use of the sidecar that serves it, and the op signature.

An op is `fn(host, env) -> result`: `host` is the sidecar as the requesting
session sees it (its own handles, objects and runs; the shared program
cache and allow-list), `env` is the decoded request envelope,
the result becomes the reply's `result` (arrays in it travel as trailing
frames, see protocol.Encoder). An op that must not reply now returns
`NO_REPLY`: `ack` never gets a reply; a run with callbacks gets its reply
from the worker when it finishes (`Host.start_run`)."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax

from ..allowlist import NotAllowed
from ..events import RunEvents, SessionRuns
from ..limits import Limits
from ..program.cache import SessionPrograms
from ..program.pycall import Objects
from ..protocol import WireError
from ..remote_errors import error_body

NO_REPLY: Any = object()


class Host(Objects, Protocol):
    """The sidecar as one session's ops see it. `handles`, `structures` and
    `allow` (from `Objects`) are the session's arrays and objects, the module
    structures they came with, and the allow-list every name passes."""

    @property
    def programs(self) -> SessionPrograms: ...

    @property
    def runs(self) -> SessionRuns:
        """The session's runs with callbacks, by the call that started them (acks find them here)."""
        ...

    @property
    def limits(self) -> Limits: ...

    @property
    def lease_seconds(self) -> float | None:
        """How long the session may stay silent before the sidecar ends it (None: forever)."""
        ...

    @property
    def restarted(self) -> dict[str, str] | None:
        """The instance this sidecar replaced under its supervisor, and why it ended ({instance, cause})."""
        ...

    def resumed(self, instance: Any) -> bool:
        """Whether a client that was connected to `instance` finds its session here as it left it."""
        ...

    def end_session(self, reason: str) -> None:
        """End this session once the current request has replied: everything it holds is freed."""
        ...

    @property
    def instance(self) -> str:
        """This sidecar process's id, fresh at every start (the handshake reports it)."""
        ...

    @property
    def max_message_bytes(self) -> int: ...

    def materialize(self, value: Any) -> Any:
        """Handles, PyRefs and module nodes in a request become the objects they name."""
        ...

    def export(self, value: Any, fetch: bool) -> Any:
        """A result as the wire carries it: arrays as handles (or host arrays when
        fetching), equinox Modules as module nodes, other objects as PyRefs."""
        ...

    def device(self, index: Any) -> jax.Device | None:
        """The device a request names by index (None: JAX's default)."""
        ...

    def start_run(self, call: Any, work: Callable[[RunEvents], Any], finish: Callable[[Any], Any]) -> Any:
        """Run `work(run)` on the worker thread (it executes a program with
        callbacks, passing `run.token`); `finish(outputs)` builds the reply
        once the run's last event batch is out. Returns NO_REPLY."""
        ...

    def counters(self) -> dict[str, int]:
        """The whole sidecar's: `requests`, `event_batches`, `events` so far, `sessions` open, `rss` bytes."""
        ...


Op = Callable[[Host, dict[str, Any]], Any]


def reply_error_body(e: BaseException) -> dict[str, Any]:
    """What an error reply carries for `e` (and what a poisoned handle repeats):
    the protocol's own errors by kind, without a traceback; anything else as
    Python raised it."""
    if isinstance(e, WireError):
        return error_body(e, e.kind, with_traceback=False)
    if isinstance(e, NotAllowed):
        return error_body(e, "NotAllowed", with_traceback=False)
    return error_body(e)
