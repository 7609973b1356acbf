"""lower.py: programs are checked completely before anything runs, refused
primitives name themselves, and lowered programs equal lax written by hand."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxbridge_sidecar.allowlist import NotAllowed
from jaxbridge_sidecar.program import RULES, decode_literal, decode_program, lower, program_hash
from jaxbridge_sidecar.protocol import WireError

from programs_support import Builder, aval, canon, f32, f64, i32


def kind(excinfo) -> str:
    e = excinfo.value
    return e.kind if isinstance(e, WireError) else type(e).__name__


def simple() -> Builder:
    b = Builder(aval("float32", 3))
    (t,) = b.eq("tanh", [0], {}, [aval("float32", 3)])
    b.eq("add", [t, f32(1.0)], {}, [aval("float32", 3)])
    return b


# --- refusals ---------------------------------------------------------------------


@pytest.mark.parametrize("prim", ["os.system", "__import__", "eval", "custom_call", "pure_callback", "jax.numpy.load", "", "ADD"])
def test_a_primitive_outside_the_table_is_not_allowed_and_named(prim):
    b = Builder(aval("float32", 3))
    b.eq(prim, [0], {}, [aval("float32", 3)])
    with pytest.raises(NotAllowed) as ei:
        decode_program(b.bytes([1]))
    assert repr(prim) in str(ei.value) and "eqns[0]" in str(ei.value)


def test_a_refused_primitive_inside_a_nested_body_is_found_before_anything_runs():
    body = Builder(aval("float32", 3))
    body.eq("subprocess", [0], {}, [aval("float32", 3)])
    b = Builder(aval("float32", 3))
    b.eq("scan", [0], {"body": body.sub([1]), "length": 2, "reverse": False, "unroll": 1, "num_consts": 0, "num_carry": 1, "_split_transpose": False}, [aval("float32", 3)])
    with pytest.raises(NotAllowed, match=r"program\.eqns\[0\] \(scan\)\.body\.eqns\[0\]: primitive 'subprocess'"):
        decode_program(b.bytes([1]))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p["eqns"][0]["params"].update(extra=1), "unknown ['extra']"),
        (lambda p: p["eqns"].append({"prim": "reduce_sum", "inputs": [0], "params": {"axes": [0]}, "outputs": [aval("float32")]}), "missing ['out_sharding']"),
        (lambda p: p["eqns"].append({"prim": "reduce_sum", "inputs": [0], "params": {"axes": "0", "out_sharding": None}, "outputs": [aval("float32")]}), "list of integers"),
        (lambda p: p["eqns"].append({"prim": "convert_element_type", "inputs": [0], "params": {"new_dtype": "object", "weak_type": False}, "outputs": [aval("float32", 3)]}), "unsupported dtype 'object'"),
        (lambda p: p["eqns"][0].update(inputs=[7]), "variable 7 is used before it is defined"),
        (lambda p: p["eqns"][1].update(inputs=[0, {"lit": "1.0", "dtype": "float32"}]), "must be '0x' and 8 hex digits"),
        (lambda p: p["eqns"][1].update(inputs=[0, {"lit": "300", "dtype": "int8"}]), "out of range for int8"),
        (lambda p: p["eqns"][1].update(inputs=[0]), "takes 2 inputs, got 1"),
        (lambda p: p.update(outputs=[9]), "variable 9 is used before"),
        (lambda p: p.update(version=2), "IR version 2"),
        (lambda p: p.pop("x64"), "needs `x64`"),
        (lambda p: p.update(hack="x"), "unknown program fields ['hack']"),
        (lambda p: p["inputs"].append({"dtype": "float32", "shape": [-1]}), "non-negative integers"),
        (lambda p: p["eqns"][0].update(extra=1), "an equation is {prim, inputs, params, outputs}"),
    ],
)
def test_malformed_programs_are_program_errors_naming_the_place(mutate, message):
    p = simple().program([2])
    mutate(p)
    with pytest.raises((WireError, NotAllowed)) as ei:
        decode_program(canon(p))
    assert kind(ei) == "ProgramError"
    assert message in str(ei.value)


def test_json_floats_and_non_json_are_refused():
    text = simple().bytes([2]).decode().replace('"shape":[3]', '"shape":[3.0]', 1)
    with pytest.raises(WireError, match="no JSON floats"):
        decode_program(text)
    with pytest.raises(WireError, match="not valid JSON"):
        decode_program(b"\xff\xfe")
    with pytest.raises(WireError, match="NaN"):
        decode_program(simple().bytes([2]).decode().replace('"version":1', '"version":NaN'))


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


def test_a_declared_output_type_that_jax_disagrees_with_is_caught():
    b = Builder(aval("float32", 3))
    b.eq("reduce_sum", [0], {"axes": [0], "out_sharding": None}, [aval("float32", 3)])
    with pytest.raises(WireError, match=r"eqns\[0\] \(reduce_sum\) output 0: JAX computes float32\[\], the program declares float32\[3\]"):
        lower(b.bytes([1]))([np.zeros(3, np.float32)])


def test_every_rule_has_a_lax_counterpart_and_only_pycall_reaches_python_objects():
    assert "add" in RULES and "scan" in RULES and "cond" in RULES and "while" in RULES
    for name, rule in RULES.items():
        if name == "pycall":
            # The one exception, by design: it names objects by ids the sidecar handed out (test_pycall.py).
            assert rule.params == {"target": "pycall", "method": "method", "out": "pyout"}
            continue
        for kind_ in rule.params.values():
            assert kind_ in {"int", "uint", "bool", "ints", "ints?", "dtype", "dtype?", "null", "dot_dims", "pad_config", "gather_dims", "scatter_dims", "program", "programs"} or kind_.startswith(("enum:", "enum_int:")), (name, kind_)


# --- literals ----------------------------------------------------------------------


def test_literals_decode_to_exact_typed_scalars():
    assert decode_literal({"lit": "0x3f800000", "dtype": "float32"}, "t").value == np.float32(1)
    v = decode_literal({"lit": "0x7fc00001", "dtype": "float32"}, "t").value
    assert np.isnan(v) and np.array(v).view(np.uint32) == 0x7FC00001
    assert decode_literal({"lit": "0x3dcd", "dtype": "bfloat16"}, "t").value.dtype == jnp.bfloat16
    assert decode_literal({"lit": "-128", "dtype": "int8"}, "t").value == np.int8(-128)
    assert decode_literal({"lit": "18446744073709551615", "dtype": "uint64"}, "t").value == np.uint64(2**64 - 1)
    assert decode_literal({"lit": "true", "dtype": "bool"}, "t").value == np.bool_(True)
    c = decode_literal({"lit": "0x3f800000,0xc0000000", "dtype": "complex64"}, "t").value
    assert c == np.complex64(1 - 2j)


# --- lowered programs equal lax written directly -----------------------------------------


def test_lowering_traces_once_and_caches_in_jit():
    low = lower(simple().bytes([2]))
    x = np.array([0.5, -1, 2], np.float32)
    a = low([x])
    b = low([x])
    assert low.traces == 1
    assert np.array_equal(np.asarray(a[0]), np.asarray(jax.jit(lambda x: jnp.tanh(x) + 1)(x)))
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0]))


def _nested_program() -> bytes:
    """scan over xs with carry h; the body conds on sum(h) > 0 (true: h * w via while 3 times, false: h - xs_t),
    closing over w (a const of the scan) and over the scan's x inside the cond."""
    f = lambda *s: aval("float32", *s)  # noqa: E731
    # while body: (i, h) -> (i + 1, h * w)
    wb = Builder(f(3), aval("int32"), f(3))  # const w, carry i, h
    (i1,) = wb.eq("add", [1, i32(1)], {}, [aval("int32")])
    (hw,) = wb.eq("mul", [2, 0], {}, [f(3)])
    wc = Builder(aval("int32"), f(3))  # carry i, h
    (lt,) = wc.eq("lt", [0, i32(3)], {}, [aval("bool")])
    # true branch: operands (w, x, h) -> while
    tb = Builder(f(3), f(3), f(3))
    (zero,) = tb.eq("broadcast_in_dim", [i32(0)], {"shape": [], "broadcast_dimensions": []}, [aval("int32")])
    _, h3 = tb.eq("while", [0, zero, 2], {"cond": wc.sub([lt]), "body": wb.sub([i1, hw]), "cond_nconsts": 0, "body_nconsts": 1}, [aval("int32"), f(3)])
    # false branch: (w, x, h) -> h - x
    fb = Builder(f(3), f(3), f(3))
    (d,) = fb.eq("sub", [2, 1], {}, [f(3)])
    # scan body: consts w; carry h; x -> (new h, sum(h))
    sb = Builder(f(3), f(3), f(3))
    (s,) = sb.eq("reduce_sum", [1], {"axes": [0], "out_sharding": None}, [f()])
    (gt,) = sb.eq("gt", [s, f32(0.0)], {}, [aval("bool")])
    (nh,) = sb.eq("cond", [gt, 0, 2, 1], {"branches": [fb.sub([d]), tb.sub([h3])]}, [f(3)])
    top = Builder(f(3), f(4, 3), f(3))  # h0, xs, w
    outs = top.eq("scan", [2, 0, 1], {"body": sb.sub([nh, s]), "length": 4, "reverse": False, "unroll": 1, "num_consts": 1, "num_carry": 1, "_split_transpose": False}, [f(3), f(4)])
    return top.bytes(outs)


def _nested_direct(h0, xs, w):
    def body(h, x):
        s = jnp.sum(h)

        def true_fn(h):
            return lax.while_loop(lambda st: st[0] < 3, lambda st: (st[0] + 1, st[1] * w), (0, h))[1]

        return lax.cond(s > 0, true_fn, lambda h: h - x, h), s

    return lax.scan(body, h0, xs)


def test_nested_scan_cond_while_equals_lax_written_directly():
    rng = np.random.default_rng(0)
    for trial in range(5):
        h0 = rng.standard_normal(3).astype(np.float32)
        xs = rng.standard_normal((4, 3)).astype(np.float32)
        w = rng.standard_normal(3).astype(np.float32)
        ours = lower(_nested_program())([h0, xs, w])
        theirs = jax.jit(_nested_direct)(h0, xs, w)
        for a, b in zip(ours, jax.tree.leaves(theirs)):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(np.asarray(a).view(np.uint32), np.asarray(b).view(np.uint32)), trial


def test_switch_with_an_int_index_clamps_like_lax_switch():
    f = lambda *s: aval("float32", *s)  # noqa: E731
    branches = []
    for k in range(3):
        bb = Builder(f(2))
        (o,) = bb.eq("mul", [0, f32(float(k + 1))], {}, [f(2)])
        branches.append(bb.sub([o]))
    top = Builder(aval("int32"), f(2))
    outs = top.eq("cond", [0, 1], {"branches": branches}, [f(2)])
    low = lower(top.bytes(outs))
    x = np.array([1.5, -2], np.float32)
    for idx in [-1, 0, 1, 2, 7]:
        got = np.asarray(low([np.int32(idx), x])[0])
        want = np.asarray(lax.switch(idx, [lambda x, k=k: x * np.float32(k + 1) for k in range(3)], x))
        assert np.array_equal(got, want), idx


def test_random_primitives_match_jax_random():
    top = Builder(aval("int64"))
    (k,) = top.eq("random_seed", [0], {"impl": "threefry2x32"}, [aval("uint32", 2)])
    (ks,) = top.eq("random_split", [k], {"impl": "threefry2x32", "shape": [3]}, [aval("uint32", 3, 2)])
    (b,) = top.eq("random_bits", [k], {"impl": "threefry2x32", "bit_width": 32, "shape": [5]}, [aval("uint32", 5)])
    (fk,) = top.eq("random_fold_in", [k, {"lit": "9", "dtype": "uint32"}], {"impl": "threefry2x32"}, [aval("uint32", 2)])
    out = lower(top.bytes([k, ks, b, fk]))([np.int64(42)])
    key = jax.random.key(42)
    assert np.array_equal(out[0], jax.random.key_data(key))
    assert np.array_equal(out[1], jax.random.key_data(jax.random.split(key, 3)))
    assert np.array_equal(out[2], jax.random.bits(key, (5,), np.uint32))
    assert np.array_equal(out[3], jax.random.key_data(jax.random.fold_in(key, 9)))


def test_program_hash_is_sha256_of_the_bytes():
    data = simple().bytes([2])
    import hashlib

    assert program_hash(data) == hashlib.sha256(data).hexdigest()
    assert json.loads(data)["version"] == 1
