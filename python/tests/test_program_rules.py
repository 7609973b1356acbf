"""program/rules.py: the primitive table names only lax, and lowered
programs equal lax written by hand, control flow and random keys included."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxbridge_sidecar.program import RULES, lower

from programs_support import Builder, aval, f32, i32


def test_every_rule_has_a_lax_counterpart_and_only_pycall_reaches_python_objects():
    assert "add" in RULES and "scan" in RULES and "cond" in RULES and "while" in RULES
    for name, rule in RULES.items():
        if name == "pycall":
            # The one exception, by design: it names objects by ids the sidecar handed out (test_pycall.py).
            assert rule.params == {"target": "pycall", "method": "method", "out": "pyout"}
            continue
        for kind_ in rule.params.values():
            # Names (axis names, checkpoint names) only label values; a policy is one of jax.checkpoint_policies' names.
            # Meshes, shardings and collectives' axis names are strings and device ids: a mesh names this job's devices by id, nothing else.
            plain = {"int", "uint", "bool", "ints", "ints?", "dtype", "dtype?", "null", "dot_dims", "pad_config", "gather_dims", "scatter_dims", "program", "programs", "axes", "name", "name?", "names", "policy"}
            sharding = {"axis_names", "perm", "mesh", "specs", "sharding"}
            assert kind_ in plain | sharding or kind_.startswith(("enum:", "enum_int:")), (name, kind_)


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
