"""The handshake sample: both sides build the same value, send it, and compare
the echo bit for bit. Mirrors `HANDSHAKE_SAMPLE` in src/wire/protocol.ts."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np


def handshake_sample() -> dict[str, Any]:
    return {
        "f32": np.array([1.5, -0.0, np.inf], dtype=np.float32),
        "i64": np.array([-(2**62), 2**53 + 1], dtype=np.int64),
        "u64": np.array([2**64 - 1], dtype=np.uint64),
        "bf16": np.array([1.0, -2.5], dtype=ml_dtypes.bfloat16),
        "c64": np.array([1 + 2j], dtype=np.complex64),
        "b": np.array([True, False]),
        "empty": np.zeros((0, 3), dtype=np.float64),
        "scalar": np.array(7, dtype=np.int8),
        "nested": [1, "two", None, True, 2.5],
    }


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
