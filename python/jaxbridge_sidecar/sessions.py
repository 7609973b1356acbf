"""Sessions: what one client connection owns on a sidecar that many share.

A session is named by the peer's ZeroMQ routing id and, with CURVE, its
public key: a client that sets its routing id (the TypeScript client picks
16 random bytes) keeps its session across a reconnect, and a peer with
another key can never take it over. Each session has its own handle table
(arrays and Python objects), its own module structures, its own runs and
the program hashes it sent; ids of one session mean nothing in another
(`UnknownHandle`). There is no sharing between sessions: a client that wants
another's array gets it through that client (get, then put).

A session ends, and everything it holds is freed, when its client sends
`close`, when its peer disconnected and did not come back within the
disconnect grace, or when it sent nothing for its idle lease (server.py's
housekeeping decides; this module holds the state).
"""

from __future__ import annotations

import collections
import secrets
from typing import Any, Iterator

from .events import RunTable, SessionRuns
from .handles import HandleTable
from .remote import StructureTable

# (CURVE public key or "", routing id)
SessionKey = tuple[str, bytes]


class Session:
    def __init__(self, key: SessionKey, ident: Any, runs: RunTable, now: float, retain_bytes: int):
        self.key = key
        self.ident = ident  # where replies go (the routing id frame)
        self.sid = secrets.token_hex(4)  # for logs
        self.handles = HandleTable()
        self.structures = StructureTable()
        self.runs = SessionRuns(runs)
        # Requests that arrived while an earlier one of this session executes: they run in arrival order.
        self.queue: collections.deque[list[Any]] = collections.deque()
        self.busy = False
        self.requests = 0
        self.last_seen = now
        self.fd: int | None = None
        self.disconnected_at: float | None = None
        # Set when the session must end once its executing request finishes.
        self.ending: str | None = None
        self.closed = False
        # Replies kept for a client that resends after a reconnect (see `remember`).
        self.retain_bytes = retain_bytes
        self.recent: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self._recent_bytes = 0
        self.host: Any = None  # the server's view for ops (server.SessionHost)

    # --- replies kept for a resend --------------------------------------------
    RECENT_REPLIES = 4096

    def remember(self, rid: Any, frames: list[Any]) -> None:
        """Keep a reply for a resend of its request after a reconnect: within
        `retain_bytes` in all; a larger reply is remembered as lost (None)."""
        if not isinstance(rid, int):
            return
        size = 0
        if self.retain_bytes:
            for f in frames:
                size += len(f)
        kept = frames if 0 < size <= self.retain_bytes else None
        old = self.recent.pop(rid, None)
        if old is not None:
            self._recent_bytes -= _size(old)
        self.recent[rid] = kept
        if kept is not None:
            self._recent_bytes += size
        while len(self.recent) > self.RECENT_REPLIES or self._recent_bytes > self.retain_bytes:
            _, dropped = self.recent.popitem(last=False)
            if dropped is not None:
                self._recent_bytes -= _size(dropped)

    # --- the end -----------------------------------------------------------------
    def free_all(self) -> int:
        """Release everything the session holds; returns how many ids it held."""
        self.closed = True
        self.runs.abort_all()
        self.queue.clear()
        self.recent.clear()
        self._recent_bytes = 0
        return self.handles.clear()


def _size(frames: list[Any]) -> int:
    return sum(len(f) for f in frames)


class SessionTable:
    def __init__(self, runs: RunTable, max_sessions: int, retain_bytes: int):
        self.runs = runs
        self.max_sessions = max_sessions
        self.retain_bytes = retain_bytes
        self._by_key: dict[SessionKey, Session] = {}
        self.opened = 0
        self.ended = 0

    def get(self, key: SessionKey) -> Session | None:
        return self._by_key.get(key)

    def open(self, key: SessionKey, ident: Any, now: float) -> Session:
        if len(self._by_key) >= self.max_sessions:
            raise SessionLimit(len(self._by_key))
        s = Session(key, ident, self.runs, now, self.retain_bytes)
        self._by_key[key] = s
        self.opened += 1
        return s

    def remove(self, session: Session) -> int:
        """End a session now: it is forgotten and everything it held is freed."""
        if self._by_key.get(session.key) is session:
            del self._by_key[session.key]
            self.ended += 1
        return session.free_all()

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)


class SessionLimit(Exception):
    def __init__(self, n: int):
        super().__init__(n)
        self.n = n
