"""sharding.py and the sharded programs: shardings on the wire round-trip to
equal NamedShardings, array layouts are what JAX reports, device_put and
run place arrays with jax's own shardings, and shard_map with its
collectives equals the same code written in Python (4 CPU devices, see
conftest.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxbridge_sidecar.program import decode_program, lower
from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.protocol import HandleRef, WireError
from jaxbridge_sidecar.sharding import layout, mesh_to_wire, sharding_from_wire, sharding_to_wire

from programs_support import Builder, aval, canon


def mesh(sizes: tuple[int, ...], names: tuple[str, ...], ids: list[int] | None = None) -> Mesh:
    by_id = {d.id: d for d in jax.devices()}
    devs = [by_id[i] for i in ids] if ids else jax.devices()[: int(np.prod(sizes))]
    return Mesh(np.array(devs, dtype=object).reshape(sizes), names, axis_types=(AxisType.Auto,) * len(names))


def wire_mesh(sizes: list[int], names: list[str], ids: list[int] | None = None) -> dict:
    return {"axis_names": names, "axis_sizes": sizes, "axis_types": ["Auto"] * len(names), "device_ids": ids or list(range(int(np.prod(sizes))))}


def shards_as_jax_reports(x: jax.Array) -> list:
    return [[s.device.id, [list(sl.indices(n)[:2]) for sl, n in zip(s.index, x.shape)], s.replica_id] for s in x.addressable_shards]


CASES = [
    ((4,), ("x",), P("x")),
    ((4,), ("x",), P(None, "x")),
    ((4,), ("x",), P()),
    ((2, 2), ("a", "b"), P("a", "b")),
    ((2, 2), ("a", "b"), P("b", None)),
    ((2, 2), ("a", "b"), P(("a", "b"))),
    ((2, 2), ("a", "b"), P(None, ("b", "a"))),
    ((2, 2), ("a", "b"), P("a")),
]


@pytest.mark.parametrize("sizes, names, spec", CASES)
def test_a_sharding_round_trips_to_an_equal_named_sharding_and_its_layout_is_what_jax_reports(sizes, names, spec):
    m = mesh(sizes, names, [3, 1, 0, 2][: int(np.prod(sizes))])  # ids out of order: ids travel, not positions
    s = NamedSharding(m, spec)
    back = sharding_from_wire(sharding_to_wire(s), "t")
    assert back == s and back.is_equivalent_to(s, 2)
    x = jax.device_put(np.arange(32.0).reshape(4, 8), s)
    lay = layout(x)
    assert lay["mesh"] == mesh_to_wire(m) and lay["mesh"]["device_ids"] == [3, 1, 0, 2][: int(np.prod(sizes))]
    assert sharding_from_wire({"mesh": lay["mesh"], "spec": lay["spec"]}, "t") == x.sharding
    assert lay["shards"] == shards_as_jax_reports(x)


def test_an_array_on_one_device_has_no_layout():
    assert layout(jnp.ones(3)) is None
    assert layout(jax.device_put(np.ones(3), jax.devices()[2])) is None


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda w: w["mesh"].update(device_ids=[0, 1, 2, 99]), "device ids [99]"),
        (lambda w: w["mesh"].update(device_ids=[0, 1, 1, 2]), "distinct device ids"),
        (lambda w: w["mesh"].update(axis_sizes=[3]), "product of axis_sizes"),
        (lambda w: w["mesh"].update(axis_types=["Manual"]), "axis_types"),
        (lambda w: w.update(spec=[["y"]]), "'y' is not an axis of the mesh ['x']"),
        (lambda w: w.update(spec=[["x"], ["x"]]), "used twice"),
        (lambda w: w.update(spec=["x"]), "null or a non-empty list"),
        (lambda w: w.update(extra=1), "a sharding is {mesh, spec}"),
    ],
)
def test_bad_shardings_are_argument_errors_naming_what_is_wrong(mutate, message):
    w = {"mesh": wire_mesh([4], ["x"]), "spec": [["x"]]}
    mutate(w)
    with pytest.raises(WireError) as ei:
        sharding_from_wire(w, "device_put `sharding`")
    assert ei.value.kind == "ArgumentError" and message in str(ei.value) and "device_put `sharding`" in str(ei.value)


def test_device_put_with_a_sharding_describes_the_layout_and_get_gathers(sidecar):
    server, client = sidecar
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    w = {"mesh": wire_mesh([2, 2], ["a", "b"], [2, 3, 0, 1]), "spec": [["a"], ["b"]]}
    h = client.decoded("device_put", value=[a], sharding=w)["result"][0]
    assert h.device == "sharded(4)" and h.layout["mesh"] == w["mesh"] and h.layout["spec"] == w["spec"]
    want = jax.device_put(a, sharding_from_wire(w, "t"))
    assert h.layout["shards"] == shards_as_jax_reports(want)
    assert [s[0] for s in h.layout["shards"]] == [2, 3, 0, 1]
    assert np.array_equal(client.decoded("get", value=[HandleRef(h.id)])["result"][0], a)
    # Shard by shard: each addressable shard's data, in the layout's order.
    pieces = client.decoded("get", value=[HandleRef(h.id)], shards=True)["result"][0]
    assert len(pieces) == 4 and all(np.array_equal(p, a[tuple(slice(b, e) for b, e in sh[1])]) for p, sh in zip(pieces, h.layout["shards"]))
    # An array on one device keeps the four-field handle (no layout to pay for).
    one = client.decoded("put", value=[a])["result"][0]
    assert one.layout is None and one.device == "cpu:0"
    env, _ = client.request("device_put", value=[a], sharding={"mesh": wire_mesh([4], ["x"]), "spec": [["x"], ["x"]]})
    assert env["error"]["type"] == "ArgumentError" and "used twice" in env["error"]["message"]

    # With global_shape the value is this process's block: one process holds the whole array, so the block is all of it.
    g = client.decoded("device_put", value=[a], sharding=w, global_shape=[4, 6])["result"][0]
    assert g.layout["shards"] == shards_as_jax_reports(want)
    assert np.array_equal(client.decoded("get", value=[HandleRef(g.id)])["result"][0], a)
    env, _ = client.request("device_put", value=[a], sharding=w, global_shape=[4, -6])
    assert env["error"]["type"] == "ProtocolError" and "global_shape" in env["error"]["message"]
    env, _ = client.request("device_put", value=[a], sharding=w, global_shape=[8, 6])
    assert not env["ok"] and "8" in env["error"]["message"]


def test_hello_names_the_process_of_a_single_process_job(sidecar):
    _server, client = sidecar
    reply = client.decoded("hello", protocol=protocol.PROTOCOL_VERSION)["result"]
    assert reply["process"] == {"index": 0, "count": 1} and {d["process_index"] for d in reply["devices"]} == {0}


def _spec(s):
    return [None if e is None else ([e] if isinstance(e, str) else list(e)) for e in s]


def _sharding(m: Mesh, s: P) -> dict:
    return {"mesh": mesh_to_wire(m), "spec": _spec(s)}


def test_jit_shardings_are_jax_jits_own():
    m = mesh((4,), ("b",))
    b = Builder(aval("float32", 8, 3), aval("float32", 8, 3))
    (y,) = b.eq("mul", [0, 1], {}, [aval("float32", 8, 3)])
    low = lower(b.bytes([y], in_shardings=[_sharding(m, P("b")), _sharding(m, P())], out_shardings=[_sharding(m, P(None, None))]))
    x, v = np.arange(24, dtype=np.float32).reshape(8, 3), np.full((8, 3), 2, np.float32)
    (out,) = low([x, v])
    assert out.sharding == NamedSharding(m, P(None, None)) and np.array_equal(np.asarray(out), x * v)
    # A committed argument with another sharding is JAX's error, not a silent reshard.
    wrong = jax.device_put(x, NamedSharding(mesh((2,), ("b",)), P("b")))
    with pytest.raises(ValueError):
        low([wrong, v])
    # in_shardings may be shorter than the inputs (captures come after): the rest are unspecified.
    p = decode_program(b.bytes([y], in_shardings=[_sharding(m, P("b"))]))
    assert p.in_shardings == (NamedSharding(m, P("b")), None) and p.out_shardings is None
    with pytest.raises(WireError, match="at most 2 shardings"):
        decode_program(b.bytes([y], in_shardings=[None, None, None]))
    with pytest.raises(WireError, match="unknown program fields"):
        body = Builder(aval("float32", 3))
        outer = Builder(aval("float32", 3))
        outer.eq("cond", [{"lit": "true", "dtype": "bool"}, 0], {"branches": [{**body.sub([0]), "in_shardings": []}] * 2}, [aval("float32", 3)])
        decode_program(outer.bytes([1]))


def test_a_sharding_constraint_is_jaxs_with_sharding_constraint():
    m = mesh((2, 2), ("a", "b"))
    b = Builder(aval("float32", 4, 4))
    (h,) = b.eq("sharding_constraint", [0], {"sharding": _sharding(m, P("a", "b"))}, [aval("float32", 4, 4)])
    (out,) = lower(b.bytes([h]))([np.eye(4, dtype=np.float32)])
    assert out.sharding.is_equivalent_to(NamedSharding(m, P("a", "b")), 2)


def _shard_map_program(body: Builder, body_out: list, m: Mesh, in_specs, out_specs, ins, outs, check_vma=True) -> bytes:
    b = Builder(*ins)
    params = {"body": body.sub(body_out), "mesh": mesh_to_wire(m), "in_specs": [_spec(s) for s in in_specs], "out_specs": [_spec(s) for s in out_specs], "check_vma": check_vma}
    ids = b.eq("shard_map", list(range(len(ins))), params, outs)
    return b.bytes(ids)


def test_shard_map_with_each_collective_equals_the_same_code_in_python():
    m = mesh((4,), ("x",))
    x = np.arange(32, dtype=np.float32).reshape(8, 4) - 7
    f = lambda *s: aval("float32", *s)  # noqa: E731
    cases = [
        ("psum", {"axes": ["x"]}, f(2, 4), P(), lambda v: lax.psum(v, "x")),
        ("pmean", {"axes": ["x"]}, f(2, 4), P(), lambda v: lax.pmean(v, "x")),
        ("pmax", {"axes": ["x"]}, f(2, 4), P(), lambda v: lax.pmax(v, "x")),
        ("pmin", {"axes": ["x"]}, f(2, 4), P(), lambda v: lax.pmin(v, "x")),
        ("all_gather", {"axis_name": ["x"], "all_gather_dimension": 1, "tiled": False, "to": "varying"}, f(2, 4, 4), P("x"), lambda v: lax.all_gather(v, "x", axis=1)),
        ("all_gather", {"axis_name": ["x"], "all_gather_dimension": 0, "tiled": True, "to": "invarying"}, f(8, 4), P(), lambda v: lax.all_gather(v, "x", tiled=True, to="invarying")),
        ("psum_scatter", {"axis_name": ["x"], "scatter_dimension": 1, "tiled": True}, f(2, 1), P("x"), lambda v: lax.psum_scatter(v, "x", scatter_dimension=1, tiled=True)),
        ("ppermute", {"axis_name": ["x"], "perm": [[0, 1], [1, 2], [2, 3], [3, 0]]}, f(2, 4), P("x"), lambda v: lax.ppermute(v, "x", [(0, 1), (1, 2), (2, 3), (3, 0)])),
        ("all_to_all", {"axis_name": ["x"], "split_axis": 1, "concat_axis": 0, "tiled": True}, f(8, 1), P("x"), lambda v: lax.all_to_all(v, "x", 1, 0, tiled=True)),
    ]
    for prim, params, out, out_spec, py in cases:
        body = Builder(f(2, 4))
        (r,) = body.eq(prim, [0], params, [out])
        glob = list(out["shape"])
        if out_spec == P("x"):
            glob[0] *= 4
        ours = lower(_shard_map_program(body, [r], m, [P("x")], [out_spec], [f(8, 4)], [aval("float32", *glob)]))([x])[0]
        theirs = jax.jit(jax.shard_map(py, mesh=m, in_specs=P("x"), out_specs=out_spec))(x)
        assert np.array_equal(np.asarray(ours), np.asarray(theirs)), prim
    body = Builder(f(2, 4))
    (i,) = body.eq("axis_index", [], {"axis_name": ["x"]}, [aval("int32")])
    (i1,) = body.eq("broadcast_in_dim", [i], {"shape": [1], "broadcast_dimensions": []}, [aval("int32", 1)])
    ours = lower(_shard_map_program(body, [i1], m, [P("x")], [P("x")], [f(8, 4)], [aval("int32", 4)]))([x])[0]
    assert np.array_equal(np.asarray(ours), np.arange(4, dtype=np.int32))


def test_psum_of_several_operands_is_one_equation_as_in_python():
    m = mesh((2, 2), ("a", "b"))
    f = lambda *s: aval("float32", *s)  # noqa: E731
    body = Builder(f(2), f(1, 3))
    r1, r2 = body.eq("psum", [0, 1], {"axes": ["a", "b"]}, [f(2), f(1, 3)])
    both = P(("a", "b"))
    prog = _shard_map_program(body, [r1, r2], m, [both, both], [P(), P()], [f(8), f(4, 3)], [f(2), f(1, 3)])
    x, y = np.arange(8, dtype=np.float32), np.arange(12, dtype=np.float32).reshape(4, 3)
    ours = lower(prog)([x, y])
    theirs = jax.jit(jax.shard_map(lambda u, v: lax.psum((u, v), ("a", "b")), mesh=m, in_specs=(both, both), out_specs=(P(), P())))(x, y)
    for o, t in zip(ours, theirs):
        assert np.array_equal(np.asarray(o), np.asarray(t))


def test_a_collective_outside_any_named_axis_is_jaxs_error_and_bad_parameters_are_program_errors():
    b = Builder(aval("float32", 3))
    (r,) = b.eq("psum", [0], {"axes": ["nowhere"]}, [aval("float32", 3)])
    with pytest.raises(NameError, match="nowhere"):
        lower(b.bytes([r]))([np.ones(3, np.float32)])
    for params, message in [({"axes": []}, "non-empty list of distinct axis names"), ({"axes": ["x", "x"]}, "distinct"), ({"axes": ["\n"]}, "printable ASCII")]:
        b = Builder(aval("float32", 3))
        b.eq("psum", [0], params, [aval("float32", 3)])
        with pytest.raises(WireError, match=message):
            decode_program(b.bytes([1]))
    b = Builder(aval("float32", 3))
    b.eq("ppermute", [0], {"axis_name": ["x"], "perm": [[0, -1]]}, [aval("float32", 3)])
    with pytest.raises(WireError, match="index pairs"):
        decode_program(b.bytes([1]))
    m = mesh((4,), ("x",))
    body = Builder(aval("float32", 1))
    with pytest.raises(WireError, match=r"in_specs\[0\]\[0\]: 'y' is not an axis"):
        decode_program(_shard_map_program(body, [0], m, [P("y")], [P("x")], [aval("float32", 4)], [aval("float32", 4)]))
