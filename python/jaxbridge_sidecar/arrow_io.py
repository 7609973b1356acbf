"""Arrow IPC streams for put and get (filled in by the Arrow work)."""

from __future__ import annotations

from typing import Any


def register(server: Any) -> None:
    return None
