"""The transformation equations of program/rules.py: each applies JAX's own
transformation to its body and equals it written in Python under jax.jit;
decode.py checks every count they rely on before anything runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbridge_sidecar.allowlist import NotAllowed
from jaxbridge_sidecar.program import decode_program, lower
from jaxbridge_sidecar.protocol import WireError

from programs_support import Builder, aval, f64


def f(*shape: int) -> dict:
    return aval("float64", *shape)


def sin_sum_body() -> Builder:
    """(c, x) -> sum(sin(c * x)): a const c and one argument x."""
    b = Builder(f(3), f(3))
    (m,) = b.eq("mul", [0, 1], {}, [f(3)])
    (s,) = b.eq("sin", [m], {}, [f(3)])
    b.eq("reduce_sum", [s], {"axes": [0], "out_sharding": None}, [f()])
    return b


def diff_params(body: dict, **kw) -> dict:
    return {"body": body, "num_consts": 1, "argnums": [0], "num_aux": 0, "holomorphic": False, **kw}


def bits(a) -> np.ndarray:
    return np.asarray(a).view(np.uint64)


C = np.array([0.5, -1.0, 2.0])
X = np.array([1.5, 0.25, -0.75])


def test_grad_value_and_grad_and_jacobians_close_over_their_consts():
    body = sin_sum_body().sub([4])
    top = Builder(f(3), f(3))
    (g,) = top.eq("grad", [0, 1], diff_params(body), [f(3)])
    v, g2 = top.eq("value_and_grad", [0, 1], diff_params(body), [f(), f(3)])
    (h,) = top.eq("hessian", [0, 1], diff_params(body), [f(3, 3)])
    vec = sin_sum_body()
    vec_body = vec.sub([3])  # sin(c * x), a vector
    (jf,) = top.eq("jacfwd", [0, 1], diff_params(vec_body), [f(3, 3)])
    (jr,) = top.eq("jacrev", [0, 1], diff_params(vec_body), [f(3, 3)])
    ours = lower(top.bytes([g, v, g2, h, jf, jr]))([C, X])
    fn = lambda x, c: jnp.sum(jnp.sin(c * x))  # noqa: E731
    vecfn = lambda x, c: jnp.sin(c * x)  # noqa: E731
    theirs = jax.jit(lambda c, x: (jax.grad(fn)(x, c), *jax.value_and_grad(fn)(x, c), jax.hessian(fn)(x, c), jax.jacfwd(vecfn)(x, c), jax.jacrev(vecfn)(x, c)))(C, X)
    for a, b in zip(ours, theirs):
        assert np.array_equal(bits(a), bits(b))


def test_grad_through_a_const_differentiates_the_closure_as_python_does():
    # d/dc of grad_x(sum(sin(c * x))) at the outer level: the inner grad closes over c.
    inner = Builder(f(3), f(3))
    (g,) = inner.eq("grad", [0, 1], diff_params(sin_sum_body().sub([4])), [f(3)])
    (s,) = inner.eq("reduce_sum", [g], {"axes": [0], "out_sharding": None}, [f()])
    top = Builder(f(3), f(3))
    (gc,) = top.eq("grad", [0, 1], {"body": inner.sub([s]), "num_consts": 0, "argnums": [0], "num_aux": 0, "holomorphic": False}, [f(3)])
    ours = lower(top.bytes([gc]))([C, X])[0]
    theirs = jax.jit(jax.grad(lambda c, x: jnp.sum(jax.grad(lambda xx: jnp.sum(jnp.sin(c * xx)))(x))))(C, X)
    assert np.array_equal(bits(ours), bits(theirs))


def test_jvp_takes_and_gives_tangents_of_inexact_values_only():
    # (x, n) -> (x * n, n + 1): n is an integer; its tangent is float0 in JAX and absent here.
    b = Builder(f(3), aval("int32", 3))
    (nf,) = b.eq("convert_element_type", [1], {"new_dtype": "float64", "weak_type": False}, [f(3)])
    (y,) = b.eq("mul", [0, nf], {}, [f(3)])
    (n1,) = b.eq("add", [1, {"lit": "1", "dtype": "int32"}], {}, [aval("int32", 3)])
    top = Builder(f(3), aval("int32", 3), f(3))
    outs = top.eq("jvp", [0, 1, 2], {"body": b.sub([y, n1]), "num_consts": 0, "num_aux": 0}, [f(3), aval("int32", 3), f(3)])
    n = np.array([1, 2, 3], np.int32)
    ours = lower(top.bytes(outs))([X, n, C])
    (y_, n_), (t_, tn) = jax.jvp(lambda x, k: (x * k.astype(jnp.float64), k + 1), (X, n), (C, np.zeros(3, jax.dtypes.float0)))
    assert tn.dtype == jax.dtypes.float0
    for a, w in zip(ours, [y_, n_, t_]):
        assert np.array_equal(np.asarray(a), np.asarray(w))


def test_vjp_and_linearize_run_the_forward_pass_once_and_their_calls_apply_the_linear_map():
    body = sin_sum_body().sub([3])
    top = Builder(f(3), f(3), f(3))
    (o,) = top.eq("vjp", [0, 1], {"body": body, "num_consts": 1, "num_aux": 0, "link": 0}, [f(3)])
    (ct,) = top.eq("vjp_call", [o, 2], {"link": 0}, [f(3)])
    (ct2,) = top.eq("vjp_call", [o, 1], {"link": 0}, [f(3)])
    (lo,) = top.eq("linearize", [0, 1], {"body": body, "num_consts": 1, "num_aux": 0, "link": 1}, [f(3)])
    (t,) = top.eq("linearize_call", [lo, 2], {"link": 1}, [f(3)])
    ours = lower(top.bytes([o, ct, ct2, t]))([C, X, C])

    def py(c, x, v):
        out, pull = jax.vjp(lambda xx: jnp.sin(c * xx), x)
        _, lin = jax.linearize(lambda xx: jnp.sin(c * xx), x)
        return out, pull(v)[0], pull(x)[0], lin(v)

    for a, w in zip(ours, jax.jit(py)(C, X, C)):
        assert np.array_equal(bits(a), bits(w))


def test_vmap_custom_rules_checkpoint_and_stop_gradient_equal_jax():
    # vmap over the rows of x with c unbatched (a const).
    vb = Builder(f(3), f(3))
    (m,) = vb.eq("mul", [0, 1], {}, [f(3)])
    top = Builder(f(3), f(2, 3), f(3))
    (vm,) = top.eq("vmap", [0, 1], {"body": vb.sub([m]), "num_consts": 1, "in_axes": [0], "out_axes": [1], "axis_size": 2, "axis_name": "rows"}, [f(3, 2)])
    # custom_jvp: sin with a doubled derivative; custom_vjp: sin with residual x and a tripled cotangent.
    call = Builder(f(3))
    (s,) = call.eq("sin", [0], {}, [f(3)])
    jv = Builder(f(3), f(3))
    (s2,) = jv.eq("sin", [0], {}, [f(3)])
    (cs,) = jv.eq("cos", [0], {}, [f(3)])
    (tt,) = jv.eq("mul", [cs, 1], {}, [f(3)])
    (t2,) = jv.eq("mul", [tt, f64(2.0)], {}, [f(3)])
    fw = Builder(f(3))
    (s3,) = fw.eq("sin", [0], {}, [f(3)])
    bw = Builder(f(3), f(3))
    (c3,) = bw.eq("cos", [0], {}, [f(3)])
    (g3,) = bw.eq("mul", [c3, 1], {}, [f(3)])
    (g33,) = bw.eq("mul", [g3, f64(3.0)], {}, [f(3)])

    def grad_of(prim: str, params: dict) -> dict:
        gb = Builder(f(3))
        (y,) = gb.eq(prim, [0], params, [f(3)])
        (sy,) = gb.eq("reduce_sum", [y], {"axes": [0], "out_sharding": None}, [f()])
        return gb.sub([sy])

    jparams = {"call": call.sub([s]), "jvp": jv.sub([s2, t2]), "num_call_consts": 0, "num_jvp_consts": 0}
    vparams = {"call": call.sub([s]), "fwd": fw.sub([s3, 0]), "bwd": bw.sub([g33]), "num_call_consts": 0, "num_fwd_consts": 0, "num_bwd_consts": 0}
    g_args = {"num_consts": 0, "argnums": [0], "num_aux": 0, "holomorphic": False}
    (gj,) = top.eq("grad", [2], {"body": grad_of("custom_jvp_call", jparams), **g_args}, [f(3)])
    (gv,) = top.eq("grad", [2], {"body": grad_of("custom_vjp_call", vparams), **g_args}, [f(3)])
    cb = Builder(f(3))
    (sn,) = cb.eq("sin", [0], {}, [f(3)])
    (nm,) = cb.eq("checkpoint_name", [sn], {"name": "s"}, [f(3)])
    (sg,) = cb.eq("stop_gradient", [nm], {}, [f(3)])
    (cm,) = cb.eq("mul", [sg, 0], {}, [f(3)])
    (gc,) = top.eq("grad", [2], {"body": grad_of("checkpoint", {"body": cb.sub([cm]), "prevent_cse": True, "policy": "save_only_these_names", "policy_names": ["s"]}), **g_args}, [f(3)])
    ours = lower(top.bytes([vm, gj, gv, gc]))([C, np.stack([X, C]), X])

    @jax.custom_jvp
    def sin_j(x):
        return jnp.sin(x)

    sin_j.defjvp(lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0] * 2.0))

    @jax.custom_vjp
    def sin_v(x):
        return jnp.sin(x)

    sin_v.defvjp(lambda x: (jnp.sin(x), x), lambda r, g: (jnp.cos(r) * g * 3.0,))
    from jax.ad_checkpoint import checkpoint_name

    def py(c, xs, x):
        return (
            jax.vmap(lambda r: c * r, out_axes=1, axis_name="rows")(xs),
            jax.grad(lambda v: jnp.sum(sin_j(v)))(x),
            jax.grad(lambda v: jnp.sum(sin_v(v)))(x),
            jax.grad(lambda v: jnp.sum(jax.checkpoint(lambda u: jax.lax.stop_gradient(checkpoint_name(jnp.sin(u), "s")) * u, policy=jax.checkpoint_policies.save_only_these_names("s"))(v)))(x),
        )

    for a, w in zip(ours, jax.jit(py)(C, np.stack([X, C]), X)):
        assert np.array_equal(bits(a), bits(w))


@pytest.mark.parametrize(
    "eqn, message",
    [
        (("grad", [0, 1], lambda b: diff_params(b, argnums=[1]), [f(3)]), "argnums must be distinct indices among the 1 arguments"),
        (("grad", [0, 1], lambda b: diff_params(b, argnums=[0, 0]), [f(3), f(3)]), "argnums must be distinct"),
        (("grad", [0, 1], lambda b: diff_params(b, num_consts=3), [f(3)]), "num_consts 3 exceeds the 2 inputs of body"),
        (("grad", [0], lambda b: diff_params(b), [f(3)]), "inputs (consts, then arguments, as the body takes them): expected 2, got 1"),
        (("grad", [0, 1], lambda b: diff_params(b), [f(3), f(3)]), "outputs: expected 1, got 2"),
        (("value_and_grad", [0, 1], lambda b: diff_params(b, num_aux=1), [f(), f(3)]), "needs exactly one main output"),
        (("jvp", [0, 1], lambda b: {"body": b, "num_consts": 1, "num_aux": 0}, [f(), f()]), "a tangent per inexact primal): expected 3, got 2"),
        (("vjp_call", [0, 1], lambda b: {"link": 4}, [f(3)]), "link 4 names no earlier vjp equation"),
        (("vmap", [0, 1], lambda b: {"body": b, "num_consts": 1, "in_axes": [0, 0], "out_axes": [None], "axis_size": 3, "axis_name": None}, [f()]), "in_axes (one per argument): expected 1, got 2"),
        (("vmap", [0, 1], lambda b: {"body": b, "num_consts": 1, "in_axes": [2], "out_axes": [None], "axis_size": 3, "axis_name": None}, [f()]), "in_axes[0] is 2, but the argument has rank 2"),
        (("vmap", [0, 1], lambda b: {"body": b, "num_consts": 1, "in_axes": [0], "out_axes": [None], "axis_size": 3, "axis_name": "a\u00e9"}, [f()]), "printable ASCII name"),
        (("checkpoint", [0, 1], lambda b: {"body": b, "prevent_cse": True, "policy": "save_everything", "policy_names": []}, [f()]), "one of jax.checkpoint_policies"),
        (("vmap", [0, 1], lambda b: {"body": b, "num_consts": 1, "in_axes": [-1], "out_axes": [None], "axis_size": 3, "axis_name": None}, [f()]), "non-negative integers and nulls"),
    ],
)
def test_transformation_counts_and_params_are_checked_before_anything_runs(eqn, message):
    prim, ins, params, outs = eqn
    top = Builder(f(3), f(3))
    ids = top.eq(prim, ins, params(sin_sum_body().sub([4])), outs)
    with pytest.raises((WireError, NotAllowed)) as ei:
        decode_program(top.bytes(ids))
    assert message in str(ei.value)


def test_a_link_is_used_once_per_vjp_and_only_by_its_own_kind():
    body = sin_sum_body().sub([3])
    top = Builder(f(3), f(3))
    (o,) = top.eq("vjp", [0, 1], {"body": body, "num_consts": 1, "num_aux": 0, "link": 0}, [f(3)])
    (o2,) = top.eq("vjp", [0, 1], {"body": body, "num_consts": 1, "num_aux": 0, "link": 0}, [f(3)])
    with pytest.raises(WireError, match="link 0 is used by an earlier vjp equation"):
        decode_program(top.bytes([o, o2]))
    top = Builder(f(3), f(3))
    (o,) = top.eq("vjp", [0, 1], {"body": body, "num_consts": 1, "num_aux": 0, "link": 0}, [f(3)])
    (t,) = top.eq("linearize_call", [o, 1], {"link": 0}, [f(3)])
    with pytest.raises(WireError, match="names no earlier linearize equation"):
        decode_program(top.bytes([t]))


def test_a_type_the_tracer_got_wrong_is_caught_where_jax_computes_it():
    # vmap's output declared without the batch axis.
    vb = Builder(f(3), f(3))
    (m,) = vb.eq("mul", [0, 1], {}, [f(3)])
    top = Builder(f(3), f(2, 3))
    (vm,) = top.eq("vmap", [0, 1], {"body": vb.sub([m]), "num_consts": 1, "in_axes": [0], "out_axes": [0], "axis_size": 2, "axis_name": None}, [f(3, 2)])
    with pytest.raises(WireError, match=r"eqns\[0\] \(vmap\) output 0: JAX computes float64\[2, 3\], the program declares float64\[3, 2\]"):
        lower(top.bytes([vm]))([C, np.stack([X, C])])
