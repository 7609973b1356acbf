"""The test oracle for traced programs: one long-lived Python process per
test file and x64 mode. Each request (one JSON line on stdin) carries a
Program traced in TypeScript, its inputs, and the same computation written
directly in Python JAX; the process runs both under jax.jit on CPU and
compares the outputs bit for bit (or within a tolerance the request states).

Requests:
  {"id", "program": str, "args": [array], "oracle": "lambda ...: ...", "tol"?: {"rtol", "atol"}}
  {"id", "ours": [array], "eager": true, "args": [array], "oracle": ..., "tol"?}
    (outputs the sidecar computed eagerly, compared with the oracle run op by op, without jax.jit)
  {"id", "exec": "python code that sets `result`", "args"?: [array], "tree"?: true}
    (with "tree", the reply's "leaves" are the result's pytree leaves: arrays encoded, others as {"static": value})
An array is {"dtype", "shape", "b64"}. Replies: {"id", "ok": true, ...} or {"id", "ok": false, "error"}.
"""

import base64
import json
import os
import sys
import traceback

import jax

jax.config.update("jax_enable_x64", os.environ.get("ORACLE_X64") == "1")
jax.config.update("jax_platforms", "cpu")
if os.environ.get("ORACLE_CPU_DEVICES"):
    jax.config.update("jax_num_cpu_devices", int(os.environ["ORACLE_CPU_DEVICES"]))

import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from jaxbridge_sidecar.program.lower import lower  # noqa: E402
from jaxbridge_sidecar.protocol import dtype_from_name, dtype_name  # noqa: E402

NS = {"jax": jax, "jnp": jnp, "lax": lax, "np": np, "nn": jax.nn, "random": jax.random, "ml_dtypes": ml_dtypes}


def mesh(sizes, names):
    """A mesh of the first devices, with Auto axes: what makeMesh builds in TypeScript."""
    from jax.sharding import AxisType, Mesh

    n = int(np.prod(sizes))
    return Mesh(np.array(jax.devices()[:n], dtype=object).reshape(sizes), tuple(names), axis_types=(AxisType.Auto,) * len(names))


from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

NS.update(mesh=mesh, P=PartitionSpec, NamedSharding=NamedSharding)


# lerax 0.0.5 on PyPI lacks filter_cond: the spec-derived one, shared with the other oracles.
from lerax_spec import filter_cond  # noqa: E402,F401


NS["filter_cond"] = filter_cond


def polyak_average(online, target, tau):
    """lerax's polyak_average as its documentation specifies it (PyPI lerax 0.0.5 lacks it):
    inexact array leaves become tau * online + (1 - tau) * target, every other leaf comes from online."""
    import equinox as eqx

    on_arr, on_static = eqx.partition(online, eqx.is_inexact_array)
    tg_arr, _ = eqx.partition(target, eqx.is_inexact_array)
    new = jax.tree.map(lambda o, t: tau * o + (1 - tau) * t, on_arr, tg_arr)
    return eqx.combine(new, on_static)


NS["polyak_average"] = polyak_average

# lerax 0.0.6's own utils.py, loaded by path when the test names it (test/support/lerax-oracle.ts).
if os.environ.get("ORACLE_LERAX_UTILS"):
    import importlib.util  # noqa: E402

    _spec = importlib.util.spec_from_file_location("lerax_utils_oracle", os.environ["ORACLE_LERAX_UTILS"])
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    NS["lerax_utils"] = _mod
try:
    import equinox as _eqx  # noqa: E402

    NS["eqx"] = _eqx
except Exception:  # noqa: BLE001
    pass
try:
    import lerax.utils as lerax_utils  # noqa: E402

    NS["lerax"] = lerax_utils
except Exception:  # noqa: BLE001 - lerax is an optional test dependency
    pass


def decode(a):
    dt = dtype_from_name(a["dtype"])
    return np.frombuffer(base64.b64decode(a["b64"]), dtype=dt).reshape(a["shape"]).copy()


def encode(x):
    x = np.asarray(x)
    return {"dtype": dtype_name(x.dtype), "shape": list(x.shape), "b64": base64.b64encode(np.ascontiguousarray(x).tobytes()).decode()}


def flat(out):
    if isinstance(out, (list, tuple)):
        res = []
        for o in out:
            res.extend(flat(o))
        return res
    if isinstance(out, dict):
        res = []
        for k in sorted(out):
            res.extend(flat(out[k]))
        return res
    return [out]


def bits(x):
    x = np.ascontiguousarray(np.asarray(x))
    if x.dtype == np.bool_:
        return x.view(np.uint8)
    return x.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64, 16: np.uint64}[x.dtype.itemsize])


def compare(got, want, tol):
    got, want = np.asarray(got), np.asarray(want)
    if got.dtype != want.dtype:
        return f"dtype: ours {dtype_name(got.dtype)}, JAX {dtype_name(want.dtype)}"
    if got.shape != want.shape:
        return f"shape: ours {list(got.shape)}, JAX {list(want.shape)}"
    if np.array_equal(bits(got), bits(want)):
        return None
    if got.dtype.kind in "fc" or got.dtype == ml_dtypes.bfloat16:
        g = got.astype(np.complex128 if got.dtype.kind == "c" else np.float64)
        w = want.astype(g.dtype)
        both_nan = np.isnan(g) & np.isnan(w)
        same = (bits(got) == bits(want)).reshape(got.shape) | both_nan if got.dtype.kind != "c" else (g == w) | both_nan
        if tol is None and same.all():
            return None  # bit-identical but for NaN payloads
        if tol is not None:
            close = np.isclose(g, w, rtol=tol.get("rtol", 0), atol=tol.get("atol", 0), equal_nan=True)
            if close.all():
                return None
        bad = np.argwhere(~same)
        i = tuple(bad[0]) if len(bad) else ()
        return f"values differ at {len(bad)} of {g.size} elements, first at {list(map(int, i))}: ours {g[i]!r}, JAX {w[i]!r}"
    bad = np.argwhere(bits(got) != bits(want))
    i = tuple(bad[0])
    return f"values differ at {len(bad)} of {got.size} elements, first at {list(map(int, i))}: ours {got[i]!r}, JAX {want[i]!r}"


def handle(req):
    args = [decode(a) for a in req.get("args", [])]
    if "exec" in req:
        ns = dict(NS, args=args)
        exec(req["exec"], ns)
        if req.get("tree"):
            # A pytree result: its leaves in jax.tree order, arrays encoded, other leaves as JSON.
            import equinox as eqx

            leaves = jax.tree.leaves(ns.get("result"))
            return {"leaves": [encode(l) if eqx.is_array(l) else {"static": l} for l in leaves], "structure": str(jax.tree.structure(ns.get("result")))}
        return {"result": ns.get("result")}
    if "ours" in req:
        # Eager ops (test/trace/eager.test.ts): outputs computed by the sidecar, compared with the oracle run op by op.
        low = None
        ours = [decode(a) for a in req["ours"]]
    else:
        low = lower(req["program"])
        ours = [np.asarray(o) for o in low(args)]
    fn = eval(req["oracle"], NS)
    if req.get("eager"):
        inputs = [jnp.asarray(a) for a in args[: req.get("oracle_nargs", len(args))]]
        theirs = [np.asarray(o) for o in flat(fn(*inputs))]
        if len(ours) == len(theirs) and any(compare(g, w, req.get("tol")) for g, w in zip(ours, theirs)):
            # An eager op is its jnp function compiled as one program. Where JAX runs
            # that function primitive by primitive and the result differs from its own
            # compiled form (bfloat16 / float16 intermediates rounded between ops, as
            # nn.gelu(x, approximate=False) on bfloat16), the compiled form is the oracle.
            jitted = [np.asarray(o) for o in flat(jax.jit(fn)(*inputs))]
            if not any(compare(g, w, req.get("tol")) for g, w in zip(ours, jitted)):
                theirs = jitted
    elif req.get("filter_jit"):
        import equinox as eqx

        out = eqx.filter_jit(fn)(*[jnp.asarray(a) for a in args[: req.get("oracle_nargs", len(args))]])
        theirs = [np.asarray(o) for o in jax.tree.leaves(out) if eqx.is_array(o)]
    else:
        theirs = [np.asarray(o) for o in flat(jax.jit(fn)(*[jnp.asarray(a) for a in args[: req.get("oracle_nargs", len(args))]]))]
    if len(ours) != len(theirs):
        return {"mismatch": f"{len(ours)} outputs from the program, {len(theirs)} from JAX"}
    for i, (g, w) in enumerate(zip(ours, theirs)):
        why = compare(g, w, req.get("tol"))
        if why:
            return {"mismatch": f"output {i}: {why}", "ours": [encode(o) for o in ours], "theirs": [encode(o) for o in theirs]}
    out = {"outputs": len(ours), "traces": low.traces if low is not None else 0}
    if req.get("return"):
        out["ours"] = [encode(o) for o in ours]
    return out


def _dumps(reply: dict) -> str:
    # JSON has no NaN or infinity: Python would write them anyway and JSON.parse would drop the
    # line, leaving the caller waiting forever. Such a reply becomes an error that says so.
    plain = lambda o: o.item() if hasattr(o, "item") else str(o)  # noqa: E731
    try:
        return json.dumps(reply, default=plain, allow_nan=False)
    except ValueError:
        return json.dumps({"id": reply.get("id"), "ok": False, "error": "ValueError: the oracle's reply holds a NaN or an infinity, which JSON cannot carry: return such values as arrays (leaves travel as bytes)"})


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        try:
            reply = {"id": req.get("id"), "ok": True, **handle(req)}
        except Exception as e:  # noqa: BLE001 - every failure is a reply
            reply = {"id": req.get("id"), "ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        sys.stdout.write(_dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
