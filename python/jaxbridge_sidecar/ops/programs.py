"""Programs traced in TypeScript: `run` (by hash, with the body the first
time; see program/cache.py), `program_stats`, and `pycall_shapes`, which
types a call of a remote object before the tracer records it."""

from __future__ import annotations

from typing import Any

import jax

from ..allowlist import check_method_name
from ..events import RunEvents
from ..protocol import WireError, dtype_from_name, dtype_name
from ..program.pycall import Target, call
from .host import Host, Op, reply_error_body


def run(host: Host, env: dict[str, Any]) -> Any:
    out = env.get("out")
    if out is None:
        return _run(host, env, None)
    # Client-chosen output ids (docs/protocol.md, "Client-chosen handles"):
    # whatever makes this request fail poisons them, so that the requests the
    # client already sent after it, naming them, fail with this error too.
    try:
        return _run(host, env, host.handles.check_out(out))
    except Exception as e:
        host.handles.poison(out, e, reply_error_body(e), env.get("id"))
        raise


def _run(host: Host, env: dict[str, Any], out: list[int] | None) -> Any:
    entry, lowered = host.programs.resolve(env.get("hash"), env.get("program"))
    args = env.get("args") or []
    if not isinstance(args, list):
        raise WireError("ProtocolError", "run needs `args` as a list")
    fetch = bool(env.get("fetch"))
    if out is not None:
        if fetch:
            raise WireError("ProtocolError", "run: `out` keeps the outputs on the device; it cannot be combined with `fetch`")
        if len(out) != len(entry.program.outputs):
            raise WireError("ArgumentError", f"run: `out` names {len(out)} ids but the program has {len(entry.program.outputs)} outputs")
    before = entry.traces
    values = host.materialize(args)

    def reply(outs: Any) -> dict[str, Any]:
        if out is not None:
            host.handles.store(out, list(outs))
            return {"outputs": None, "lowered": lowered, "traced": entry.traces > before}
        return {"outputs": host.export(list(outs), fetch), "lowered": lowered, "traced": entry.traces > before}

    if entry.has_callbacks:
        # Runs on the worker thread so that its events flow while it runs;
        # the reply is built on the I/O thread after its last event batch.
        def work(run: RunEvents) -> Any:
            try:
                outs = jax.block_until_ready(entry(values, run.token))
                jax.effects_barrier()
            except Exception as e:
                if out is not None:
                    host.handles.poison(out, e, reply_error_body(e), env.get("id"))
                raise
            return outs

        return host.start_run(env.get("id"), work, reply)
    outs = entry(values)
    # JAX dispatches asynchronously; the reply waits for the values only if asked (docs/protocol.md "Readiness").
    return reply(jax.block_until_ready(outs) if env.get("ready", True) is not False or fetch else outs)


def program_stats(host: Host, env: dict[str, Any]) -> Any:
    return host.programs.stats()


def pycall_shapes(host: Host, env: dict[str, Any]) -> dict[str, Any]:
    """The output structure and types of `target.method(*args)`, by `jax.eval_shape`."""
    method = check_method_name(env.get("method"), "pycall")
    target = Target(host, env.get("target"), env.get("args"), "target")
    arrays = _avals(env.get("arrays"), "arrays")
    if len(arrays) != target.arrays:
        raise WireError("ArgumentError", f"pycall_shapes: the templates have {target.arrays} array slots, `arrays` gives {len(arrays)}")
    described: list[Any] = []

    def trace(arrays: list[Any]) -> list[Any]:
        node, outs = call(target, method, arrays, "pycall")
        described.append(node)
        return outs

    outs = jax.eval_shape(trace, arrays)
    return {
        "tree": described[0],
        "outputs": [{"dtype": dtype_name(o.dtype), "shape": list(o.shape), "weak": bool(getattr(o, "weak_type", False))} for o in outs],
    }


def _avals(value: Any, name: str) -> list[jax.ShapeDtypeStruct]:
    if not isinstance(value, list):
        raise WireError("ProtocolError", f"pycall_shapes needs `{name}` as a list of {{dtype, shape}}")
    out = []
    for i, a in enumerate(value):
        shape = a.get("shape") if isinstance(a, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise WireError("ProtocolError", f"pycall_shapes `{name}[{i}]` must be {{dtype, shape}} with a shape of non-negative integers, got {a!r}")
        out.append(jax.ShapeDtypeStruct(tuple(shape), dtype_from_name(a.get("dtype"))))
    return out


OPS: dict[str, Op] = {"run": run, "program_stats": program_stats, "pycall_shapes": pycall_shapes}
