"""program/decode.py: programs are checked completely before anything runs,
refused primitives name themselves, literals are exact."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbridge_sidecar.allowlist import NotAllowed
from jaxbridge_sidecar.program import decode_literal, decode_program, program_hash
from jaxbridge_sidecar.program.ir import IR_VERSION
from jaxbridge_sidecar.protocol import WireError

from jaxbridge_sidecar.program.ir import IR_VERSION
from programs_support import Builder, aval, canon, f32


def kind(excinfo) -> str:
    e = excinfo.value
    return e.kind if isinstance(e, WireError) else type(e).__name__


def simple() -> Builder:
    b = Builder(aval("float32", 3))
    (t,) = b.eq("tanh", [0], {}, [aval("float32", 3)])
    b.eq("add", [t, f32(1.0)], {}, [aval("float32", 3)])
    return b


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
        (lambda p: p.update(version=1), "IR version 1; this sidecar reads version 2"),
        (lambda p: p.update(version=3), "IR version 3"),
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
        decode_program(simple().bytes([2]).decode().replace(f'"version":{IR_VERSION}', '"version":NaN'))


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


def test_program_hash_is_sha256_of_the_bytes():
    data = simple().bytes([2])
    import hashlib

    assert program_hash(data) == hashlib.sha256(data).hexdigest()
    assert json.loads(data)["version"] == IR_VERSION == 2
