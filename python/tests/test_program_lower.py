"""program/lower.py: a lowered program checks its x64 mode and arguments
before it runs, and JAX traces it once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbridge_sidecar.program import lower
from jaxbridge_sidecar.protocol import WireError

from programs_support import Builder, aval, f32


def simple() -> Builder:
    b = Builder(aval("float32", 3))
    (t,) = b.eq("tanh", [0], {}, [aval("float32", 3)])
    b.eq("add", [t, f32(1.0)], {}, [aval("float32", 3)])
    return b


def test_a_program_for_the_other_x64_mode_is_refused_at_run_time():
    low = lower(simple().bytes([2], x64=False))
    with pytest.raises(WireError, match="traced for jax_enable_x64=False but this sidecar runs with True"):
        low([np.zeros(3, np.float32)])


def test_arguments_must_match_the_program_inputs():
    low = lower(simple().bytes([2]))
    with pytest.raises(WireError, match=r"argument 0: the program expects float32\[3\], got float32\[4\]"):
        low([np.zeros(4, np.float32)])
    with pytest.raises(WireError, match=r"argument 0: the program expects float32\[3\], got int32\[3\]"):
        low([np.zeros(3, np.int32)])
    with pytest.raises(WireError, match="takes 1 arguments, got 2"):
        low([np.zeros(3, np.float32)] * 2)


def test_lowering_traces_once_and_caches_in_jit():
    low = lower(simple().bytes([2]))
    x = np.array([0.5, -1, 2], np.float32)
    a = low([x])
    b = low([x])
    assert low.traces == 1
    assert np.array_equal(np.asarray(a[0]), np.asarray(jax.jit(lambda x: jnp.tanh(x) + 1)(x)))
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
