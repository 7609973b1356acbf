"""Evaluating a decoded program with `jax.lax` calls (under `jax.jit` this
traces once). Each equation's result is checked against the type the
tracer declared, so a disagreement between the TypeScript shape rules and
JAX is caught where it happens."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..protocol import dtype_name
from .ir import Lit, ProgramError, Sub
from .rules import RULES


class CallbackSink:
    """Where `callback` equations deliver: `current` is the sink of the run now
    executing (one run with callbacks executes at a time, see server.py). A
    compiled program is cached and reused across calls, so its host function
    looks the sink up at event time rather than capturing one."""

    current: Any = None


def _host_callback(cb_id: int) -> Callable[..., None]:
    def host_fn(*arrays: Any) -> None:
        sink = CallbackSink.current
        if sink is None:
            return  # run outside a callback context (a direct lower() call): dropped
        sink.emit(cb_id, [np.asarray(a) for a in arrays])

    return host_fn


class Evaluation:
    """The context the rules of one trace run in (rules.Context)."""

    def evaluate(self, sub: Sub, args: list[Any]) -> list[Any]:
        return evaluate(sub, args, self)

    def callback(self, callback: int, arrays: list[Any], *, ordered: bool, partitioned: bool) -> None:
        jax.debug.callback(_host_callback(callback), *arrays, ordered=ordered, partitioned=partitioned)


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
