"""Evaluating a decoded program with `jax.lax` calls (under `jax.jit` this
traces once). Each equation's result is checked against the type the
tracer declared, so a disagreement between the TypeScript shape rules and
JAX is caught where it happens."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..events import RunTable
from ..protocol import dtype_name
from .ir import Lit, ProgramError, Sub
from .rules import RULES


class Evaluation:
    """The context the rules of one trace run in (rules.Context). `token` is
    the traced run token, an operand of the jitted function when the program
    has callbacks; each callback passes it to `runs.deliver` with its
    arrays, so the events reach whichever run executes the compiled program
    (see events.py). Without `runs` (a program lowered outside a sidecar)
    callback events are dropped."""

    def __init__(self, runs: RunTable | None = None, token: Any = None):
        self.runs = runs
        self.token = token
        self.links: dict[int, Any] = {}

    def link(self, link: int, value: Any) -> None:
        self.links[link] = value

    def linked(self, link: int) -> Any:
        # Set by the vjp/linearize equation this one follows (decode.py checked that it exists).
        if link not in self.links:
            raise ProgramError(f"link {link}: its vjp or linearize equation has not run before the equation that applies it")
        return self.links[link]

    def evaluate(self, sub: Sub, args: list[Any]) -> list[Any]:
        return evaluate(sub, args, self)

    def callback(self, callback: int, arrays: list[Any], *, ordered: bool, partitioned: bool) -> None:
        if self.token is None:
            raise ProgramError("a callback equation in a program lowered without a run token")
        deliver = functools.partial(self.runs.deliver, callback) if self.runs is not None else _drop
        jax.debug.callback(deliver, self.token, *arrays, ordered=ordered, partitioned=partitioned)


def _drop(*_: Any) -> None:
    pass


def _value(o: int | Lit, env: list[Any]) -> Any:
    return env[o] if isinstance(o, int) else o.value


def evaluate(sub: Sub, args: list[Any], ctx: Evaluation) -> list[Any]:
    """Interpret a program with lax calls. Each result's shape and dtype is
    checked against what the tracer declared."""
    if len(args) != len(sub.inputs):
        raise ProgramError(f"program takes {len(sub.inputs)} inputs, got {len(args)}")
    env = list(args)
    for k, e in enumerate(sub.eqns):
        ins = [_value(o, env) for o in e.inputs]
        outs = RULES[e.prim].fn(ctx, ins, e.params)
        if len(outs) != len(e.outputs):
            raise ProgramError(f"eqns[{k}] ({e.prim}): produced {len(outs)} outputs, the program declares {len(e.outputs)}")
        for i, (got, want) in enumerate(zip(outs, e.outputs)):
            if tuple(got.shape) != want.shape or np.dtype(got.dtype) != want.dtype:
                raise ProgramError(
                    f"eqns[{k}] ({e.prim}) output {i}: JAX computes {dtype_name(got.dtype)}[{', '.join(map(str, got.shape))}], "
                    f"the program declares {want}; the tracer's shape rule disagrees with JAX"
                )
        env.extend(outs)
    return [jnp.asarray(_value(o, env)) if isinstance(o, Lit) else env[o] for o in sub.outputs]
