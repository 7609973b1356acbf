"""Exceptions as the client sees them: type, message, the exception chain
(`__cause__` / `__context__`, followed as Python's own traceback printer
follows it), and a traceback with the sidecar's own frames cut so the user
sees their code and JAX's.

The body is bounded however large the exception: each message and the
traceback are cut in the middle past MAX_TEXT_CHARS (the marker says how
many characters went), and a chain longer than MAX_CAUSES keeps its
outermost causes and its innermost one (the root cause), dropping the ones
between. docs/protocol.md ("Error replies") describes the body."""

from __future__ import annotations

import os
import traceback
from typing import Any

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))

# Per string (a message, the traceback): 10,000 undescribed frames once made a 58,935-character message.
MAX_TEXT_CHARS = 16384
MAX_CAUSES = 16


def qualified_type(exc: BaseException) -> str:
    t = type(exc)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def cap_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` if it fits, else its start and end around a marker naming how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    head = limit * 3 // 4
    tail = limit - head
    return f"{text[:head]}\n[... {cut} characters cut by the sidecar ...]\n{text[len(text) - tail :]}"


def _str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the reply
        return f"<{qualified_type(exc)}: str() failed>"


def exception_chain(exc: BaseException) -> list[BaseException]:
    """The exceptions behind `exc`, outermost first: its `__cause__`, or its
    `__context__` unless `raise ... from None` suppressed it, and so on, as
    Python prints them ("The above exception was the direct cause of ..." /
    "During handling of ..."). Stops at a cycle."""
    chain: list[BaseException] = []
    seen = {id(exc)}
    cur: BaseException | None = exc
    while cur is not None:
        nxt = cur.__cause__ if cur.__cause__ is not None else (None if cur.__suppress_context__ else cur.__context__)
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        chain.append(nxt)
        cur = nxt
    return chain


def error_body(exc: BaseException, kind: str | None = None, *, with_traceback: bool = True) -> dict[str, Any]:
    """The `error` map of a reply. `kind` replaces the exception's type (the
    wire's own error kinds: `ProtocolError`, `NotAllowed`, ...); those carry no
    traceback (`with_traceback=False`): their frames are the sidecar's."""
    # An error that repeats an earlier one (a poisoned handle, handles.py) carries that one's body.
    carried = getattr(exc, "reply_body", None)
    if isinstance(carried, dict):
        return carried
    tb = ""
    if with_traceback:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not os.path.abspath(f.filename).startswith(_OWN_DIR)]
        tb = cap_text("".join(traceback.format_list(frames)).rstrip())
    chain = exception_chain(exc)
    if len(chain) > MAX_CAUSES:
        chain = [*chain[: MAX_CAUSES - 1], chain[-1]]
    return {
        "type": kind or qualified_type(exc),
        "message": cap_text(_str(exc)),
        "traceback": tb,
        "causes": [{"type": qualified_type(c), "message": cap_text(_str(c))} for c in chain],
    }
