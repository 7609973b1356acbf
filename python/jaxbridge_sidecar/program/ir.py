"""The decoded form of a Program: typed variables, literals, equations and
sub-programs. `decode.py` builds it from the wire's canonical JSON after
checking every field; `evaluate.py` interprets it. Nothing here runs JAX."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..protocol import WireError, dtype_name

IR_VERSION = 2


def ProgramError(message: str) -> WireError:  # noqa: N802 - an error kind, not a function
    return WireError("ProgramError", message)


@dataclasses.dataclass(frozen=True, slots=True)
class Aval:
    dtype: np.dtype
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{dtype_name(self.dtype)}[{', '.join(map(str, self.shape))}]"


@dataclasses.dataclass(frozen=True, slots=True)
class Lit:
    value: Any  # a numpy scalar of the literal's dtype
    text: str

    @property
    def aval(self) -> Aval:
        return Aval(np.dtype(self.value.dtype), ())


@dataclasses.dataclass(frozen=True, slots=True)
class Eqn:
    prim: str
    inputs: tuple[int | Lit, ...]
    params: dict[str, Any]
    outputs: tuple[Aval, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Sub:
    inputs: tuple[Aval, ...]
    eqns: tuple[Eqn, ...]
    outputs: tuple[int | Lit, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Program(Sub):
    version: int
    x64: bool
    # jax.jit's in_shardings / out_shardings, one entry per input / output
    # (None: unspecified, as jit takes it); None when the program has none.
    in_shardings: tuple[Any, ...] | None = None
    out_shardings: tuple[Any, ...] | None = None


def output_avals(sub: Sub) -> tuple[Aval, ...]:
    """The types of a program's outputs: variables are numbered inputs first, then each equation's outputs."""
    avals = list(sub.inputs)
    for e in sub.eqns:
        avals.extend(e.outputs)
    return tuple(avals[o] if isinstance(o, int) else o.aval for o in sub.outputs)


def has_primitive(sub: Sub, prim: str) -> bool:
    """Whether a program (or any of its sub-programs) holds an equation of `prim`."""
    for e in sub.eqns:
        if e.prim == prim:
            return True
        for v in e.params.values():
            if isinstance(v, Sub) and has_primitive(v, prim):
                return True
            if isinstance(v, tuple) and any(isinstance(b, Sub) and has_primitive(b, prim) for b in v):
                return True
    return False


def has_callbacks(sub: Sub) -> bool:
    """Whether a program (or any of its sub-programs) holds a `callback` equation."""
    return has_primitive(sub, "callback")
