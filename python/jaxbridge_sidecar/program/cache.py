"""Compiled programs by the sha256 of their bytes, which the sidecar computes
itself: a client-sent hash only names a program already held, it is never
trusted for a body. A client that sends only a hash the sidecar does not
hold (a fresh sidecar, an evicted entry) gets `UnknownProgram` and resends
with the body. Least recently used programs are evicted past `capacity`."""

from __future__ import annotations

import collections
import re
from typing import Any

from ..events import RunTable
from ..protocol import WireError
from .decode import program_hash
from .lower import Lowered, lower
from .pycall import Objects

DEFAULT_CAPACITY = 512
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ProgramCache:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, objects: Objects | None = None, runs: RunTable | None = None):
        self.capacity = capacity
        # Resolves the objects `pycall` equations name (see pycall.py).
        self.objects = objects
        # Where the callbacks of the programs it lowers deliver (see events.py).
        self.runs = runs
        self._entries: collections.OrderedDict[str, Lowered] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0
        self.lowered = 0
        self.evicted = 0

    def get(self, hash_: str) -> Lowered | None:
        hit = self._entries.get(hash_)
        if hit is not None:
            self._entries.move_to_end(hash_)
        return hit

    def add(self, entry: Lowered) -> None:
        self._entries[entry.hash] = entry
        self._entries.move_to_end(entry.hash)
        self.lowered += 1
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evicted += 1

    def resolve(self, hash_: Any, body: Any) -> tuple[Lowered, bool]:
        """The program for a request: (entry, True when this request lowered it)."""
        if not isinstance(hash_, str) or _SHA256_HEX.fullmatch(hash_) is None:
            raise WireError("ProtocolError", f"`hash` must be a sha256 as 64 lowercase hex digits, got {hash_!r}")
        if body is not None:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise WireError("ProtocolError", f"`program` must be bytes (the canonical JSON), got {type(body).__name__}")
            actual = program_hash(body)
            if actual != hash_:
                raise WireError("ProgramHashMismatch", f"the program's bytes hash to {actual}, not to the hash sent with them ({hash_})")
        hit = self.get(hash_)
        if hit is not None:
            self.hits += 1
            return hit, False
        self.misses += 1
        if body is None:
            raise WireError("UnknownProgram", f"this sidecar does not hold program {hash_}; send it again with `program`")
        entry = lower(body, self.objects, self.runs)
        self.add(entry)
        return entry, True

    def stats(self) -> dict[str, int]:
        return {
            "programs": len(self._entries),
            "hits": self.hits,
            "misses": self.misses,
            "lowered": self.lowered,
            "evicted": self.evicted,
            "traces": sum(e.traces for e in self._entries.values()),
        }
