"""A decoded program as a `jax.jit` function, with the checks a run makes
before it executes: the x64 mode it was traced for and its arguments' types."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ..events import NO_RUN, RunTable
from ..protocol import WireError, dtype_name
from .decode import decode_program, program_hash
from .chunking import plan
from .evaluate import Evaluation, evaluate
from .ir import Program, ProgramError, has_callbacks, has_primitive
from .pycall import Objects


def check_x64(program: Program) -> None:
    mode = bool(jax.config.jax_enable_x64)
    if program.x64 != mode:
        raise ProgramError(
            f"program was traced for jax_enable_x64={program.x64} but this sidecar runs with {mode}; "
            "trace with the `x64` the sidecar reported in its handshake"
        )


def check_args(program: Program, args: list[Any]) -> None:
    if len(args) != len(program.inputs):
        raise WireError("ArgumentError", f"program takes {len(program.inputs)} arguments, got {len(args)}")
    for i, (a, want) in enumerate(zip(args, program.inputs)):
        shape = tuple(getattr(a, "shape", ()))
        dtype = getattr(a, "dtype", None)
        if dtype is None or shape != want.shape or np.dtype(dtype) != want.dtype:
            got = f"{dtype_name(dtype)}[{', '.join(map(str, shape))}]" if dtype is not None else type(a).__name__
            raise WireError("ArgumentError", f"argument {i}: the program expects {want}, got {got}")


class Lowered:
    """A decoded program and its jitted function; `traces` counts how often JAX traced it.

    A program with callbacks takes its run's token as an extra first operand
    (an int32 scalar, so a new run never retraces): `runs` is the table its
    callbacks deliver to (see events.py)."""

    def __init__(self, program: Program, hash_: str, runs: RunTable | None = None):
        self.program = program
        self.hash = hash_
        self.traces = 0
        self.has_callbacks = has_callbacks(program)
        # A program that calls Python objects holds the objects of the session
        # that sent it (pycall.py), so only that session may run it.
        self.uses_objects = has_primitive(program, "pycall")

        # The scans whose callback events travel once per chunk of steps (chunking.py).
        self.chunks = plan(program) if self.has_callbacks else {}

        if self.has_callbacks:

            def fn(token: Any, *args: Any) -> list[Any]:
                self.traces += 1
                return evaluate(program, list(args), Evaluation(runs, token, self.chunks))

        else:

            def fn(*args: Any) -> list[Any]:
                self.traces += 1
                return evaluate(program, list(args), Evaluation(runs))

        self.fn = jax.jit(fn, **_jit_shardings(program, self.has_callbacks))

    def __call__(self, args: list[Any], run: int = NO_RUN) -> list[Any]:
        """Run on `args`; `run` is the token of the run that receives the callback events."""
        check_x64(self.program)
        check_args(self.program, args)
        if self.has_callbacks:
            return self.fn(np.int32(run), *args)
        return self.fn(*args)


def _jit_shardings(program: Program, token: bool) -> dict[str, Any]:
    """jax.jit's own in_shardings / out_shardings for a program that has them
    (None entries: unspecified, so a committed argument keeps its sharding).
    The run token, when there is one, is an unspecified first argument."""
    out: dict[str, Any] = {}
    if program.in_shardings is not None:
        out["in_shardings"] = ((None,) if token else ()) + program.in_shardings
    if program.out_shardings is not None:
        # The jitted function returns a list: the sharding tree must be one too.
        out["out_shardings"] = list(program.out_shardings)
    return out


def lower(data: bytes | bytearray | memoryview | str, objects: Objects | None = None, runs: RunTable | None = None, max_array_bytes: int | None = None) -> Lowered:
    """Decode and wrap a program. `objects` is what a `pycall` equation may
    name (the sidecar's handles, structures and allow-list); without it such
    programs are refused. `runs` is where its callback events go; without it
    they are dropped. `max_array_bytes` bounds every value it names."""
    raw = bytes(data) if not isinstance(data, str) else data.encode()
    return Lowered(decode_program(raw, objects, max_array_bytes), program_hash(raw), runs)
