"""Exceptions as the client sees them: type, message, and a traceback with the
sidecar's own frames cut so the user sees their code and JAX's."""

from __future__ import annotations

import os
import traceback
from typing import Any

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))


def qualified_type(exc: BaseException) -> str:
    t = type(exc)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def error_body(exc: BaseException, kind: str | None = None) -> dict[str, Any]:
    # An error that repeats an earlier one (a poisoned handle, handles.py) carries that one's body.
    carried = getattr(exc, "reply_body", None)
    if isinstance(carried, dict):
        return carried
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not os.path.abspath(f.filename).startswith(_OWN_DIR)]
    tb = "".join(traceback.format_list(frames)).rstrip()
    return {"type": kind or qualified_type(exc), "message": str(exc), "traceback": tb}
