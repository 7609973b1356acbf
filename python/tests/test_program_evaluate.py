"""program/evaluate.py: each equation's result is checked against the type
the tracer declared."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbridge_sidecar.program import lower
from jaxbridge_sidecar.protocol import WireError

from programs_support import Builder, aval


def test_a_declared_output_type_that_jax_disagrees_with_is_caught():
    b = Builder(aval("float32", 3))
    b.eq("reduce_sum", [0], {"axes": [0], "out_sharding": None}, [aval("float32", 3)])
    with pytest.raises(WireError, match=r"eqns\[0\] \(reduce_sum\) output 0: JAX computes float32\[\], the program declares float32\[3\]"):
        lower(b.bytes([1]))([np.zeros(3, np.float32)])
