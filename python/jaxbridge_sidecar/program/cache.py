"""Compiled programs by the sha256 of their bytes, which the sidecar computes
itself: a client-sent hash only names a program already held, it is never
trusted for a body. A client that sends only a hash the sidecar does not
hold (a fresh sidecar, an evicted entry) gets `UnknownProgram` and resends
with the body. Least recently used programs are evicted past `capacity`.

Sessions share the compiled programs but not what they know: a session may
name a program by hash only after it sent that body itself (so a session
learns nothing about another's programs), and a program with `pycall`
equations holds the Python objects of the session that sent it, so it is
cached for that session alone and dropped when the session ends."""

from __future__ import annotations

import collections
import re
import threading
from typing import Any

from ..events import RunTable
from ..protocol import WireError
from .decode import program_hash
from .lower import Lowered, lower
from .pycall import Objects

DEFAULT_CAPACITY = 512
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# An entry's key: the hash, and the session whose objects it holds (None: any session).
Key = tuple[str, Any]


class ProgramCache:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, objects: Objects | None = None, runs: RunTable | None = None, max_array_bytes: int | None = None):
        self.capacity = capacity
        # The memory budget every value of a program must fit (decode.check_sizes).
        self.max_array_bytes = max_array_bytes
        # Resolves the objects `pycall` equations name when no session view is used (see pycall.py).
        self.objects = objects
        # Where the callbacks of the programs it lowers deliver (see events.py).
        self.runs = runs
        self._entries: collections.OrderedDict[Key, Lowered] = collections.OrderedDict()
        # Sessions execute on several threads (server.py); lowering happens outside the lock.
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.lowered = 0
        self.evicted = 0

    def get(self, hash_: str, owner: Any = None) -> Lowered | None:
        with self._lock:
            for key in ((hash_, None), (hash_, owner)) if owner is not None else ((hash_, None),):
                hit = self._entries.get(key)
                if hit is not None:
                    self._entries.move_to_end(key)
                    return hit
        return None

    def add(self, entry: Lowered, owner: Any = None) -> None:
        key = (entry.hash, owner if entry.uses_objects else None)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self.lowered += 1
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
                self.evicted += 1

    def forget(self, owner: Any) -> None:
        """Drop the programs that hold `owner`'s objects (its session ended)."""
        with self._lock:
            for key in [k for k in self._entries if k[1] is owner]:
                del self._entries[key]

    def resolve(self, hash_: Any, body: Any, objects: Objects | None = None, known: set[str] | None = None) -> tuple[Lowered, bool]:
        """The program for a request: (entry, True when this request lowered it).
        `objects` is the requesting session's (pycall names its objects);
        `known` the hashes it sent bodies for, which it alone may name bare."""
        if not isinstance(hash_, str) or _SHA256_HEX.fullmatch(hash_) is None:
            raise WireError("ProtocolError", f"`hash` must be a sha256 as 64 lowercase hex digits, got {str(hash_)[:80]!r}")
        if body is not None:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise WireError("ProtocolError", f"`program` must be bytes (the canonical JSON), got {type(body).__name__}")
            actual = program_hash(body)
            if actual != hash_:
                raise WireError("ProgramHashMismatch", f"the program's bytes hash to {actual}, not to the hash sent with them ({hash_})")
        objects = objects if objects is not None else self.objects
        hit = self.get(hash_, objects) if body is not None or known is None or hash_ in known else None
        if hit is not None:
            self.hits += 1
            if known is not None:
                known.add(hash_)
            return hit, False
        self.misses += 1
        if body is None:
            raise WireError("UnknownProgram", f"this sidecar does not hold program {hash_} for this session; send it again with `program`")
        entry = lower(body, objects, self.runs, self.max_array_bytes)
        self.add(entry, objects)
        if known is not None:
            known.add(hash_)
        return entry, True

    def hashes(self) -> set[str]:
        with self._lock:
            return {h for h, _ in self._entries}

    def stats(self) -> dict[str, int]:
        with self._lock:
            entries = list(self._entries.values())
        return {
            "programs": len(entries),
            "hits": self.hits,
            "misses": self.misses,
            "lowered": self.lowered,
            "evicted": self.evicted,
            "traces": sum(e.traces for e in entries),
        }


class SessionPrograms:
    """The cache as one session's ops see it (`Host.programs`)."""

    def __init__(self, cache: ProgramCache, objects: Objects):
        self._cache = cache
        self._objects = objects
        self.known: set[str] = set()

    @property
    def capacity(self) -> int:
        return self._cache.capacity

    @capacity.setter
    def capacity(self, n: int) -> None:
        self._cache.capacity = n

    def resolve(self, hash_: Any, body: Any) -> tuple[Lowered, bool]:
        if len(self.known) > 2 * self._cache.capacity:
            self.known.intersection_update(self._cache.hashes())
        return self._cache.resolve(hash_, body, self._objects, self.known)

    def stats(self) -> dict[str, int]:
        return self._cache.stats()

    def forget(self) -> None:
        self._cache.forget(self._objects)
        self.known.clear()
