"""Build Programs by hand in tests, in the canonical encoding the TypeScript tracer uses."""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbridge_sidecar.program.ir import IR_VERSION


def canon(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace (what src/trace/ir.ts writes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def aval(dtype: str, *shape: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": list(shape)}


def f32(v: float) -> dict[str, str]:
    return {"lit": "0x" + format(int(np.array(v, np.float32).view(np.uint32)), "08x"), "dtype": "float32"}


def f64(v: float) -> dict[str, str]:
    return {"lit": "0x" + format(int(np.array(v, np.float64).view(np.uint64)), "016x"), "dtype": "float64"}


def i32(v: int) -> dict[str, str]:
    return {"lit": str(v), "dtype": "int32"}


class Builder:
    """Equations appended in order; `eq` returns the new variables' numbers."""

    def __init__(self, *inputs: dict[str, Any]):
        self.inputs = list(inputs)
        self.eqns: list[dict[str, Any]] = []
        self.n = len(inputs)

    def eq(self, prim: str, inputs: list[Any], params: dict[str, Any] | None = None, outputs: list[dict[str, Any]] | None = None) -> list[int]:
        outs = outputs or []
        self.eqns.append({"prim": prim, "inputs": inputs, "params": params or {}, "outputs": outs})
        ids = list(range(self.n, self.n + len(outs)))
        self.n += len(outs)
        return ids

    def sub(self, outputs: list[Any]) -> dict[str, Any]:
        return {"inputs": self.inputs, "eqns": self.eqns, "outputs": outputs}

    def program(self, outputs: list[Any], x64: bool = True, **header: Any) -> dict[str, Any]:
        """The top-level program; `header` adds in_shardings / out_shardings."""
        return {"version": IR_VERSION, "x64": x64, **self.sub(outputs), **header}

    def bytes(self, outputs: list[Any], x64: bool = True, **header: Any) -> bytes:
        return canon(self.program(outputs, x64, **header))


def mlp_program() -> bytes:
    b = Builder(aval("float64", 2, 3), aval("float64", 3, 4))
    (d,) = b.eq("dot_general", [0, 1], {"dimension_numbers": [[[1], [0]], [[], []]], "precision": None, "preferred_element_type": "float64"}, [aval("float64", 2, 4)])
    (t,) = b.eq("tanh", [d], {}, [aval("float64", 2, 4)])
    (s,) = b.eq("add", [t, f64(0.5)], {}, [aval("float64", 2, 4)])
    return b.bytes([s])


def expected(x, w):
    return np.asarray(jax.jit(lambda x, w: jnp.tanh(x @ w) + 0.5)(x, w))


def endless_program() -> bytes:
    """f32[] -> while (x >= x) { x + 1 }: a run that never ends (for hung-run tests)."""
    cond = Builder(aval("float32"))
    (t,) = cond.eq("ge", [0, 0], {}, [aval("bool")])
    body = Builder(aval("float32"))
    (n,) = body.eq("add", [0, f32(1.0)], {}, [aval("float32")])
    b = Builder(aval("float32"))
    (out,) = b.eq("while", [0], {"cond": cond.sub([t]), "body": body.sub([n]), "cond_nconsts": 0, "body_nconsts": 0}, [aval("float32")])
    return b.bytes([out])
