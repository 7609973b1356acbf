"""allowlist.py: a name from the wire reaches only allowed namespaces, never
private names, files or configuration, and `list_attrs` offers exactly what
`call` can reach."""

from __future__ import annotations

import pytest

import numpy as np

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.protocol import PyRefIn

from remote_support import _back, _mlp


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "jax.numpy.load", "jax.config.update", "jax.numpy._src", "subprocess.run", "jax.profiler.start_trace"])
def test_names_outside_the_allow_list_are_refused(sidecar, name):
    _, client = sidecar
    env, _ = client.request("call", fn=name, args=["echo pwned"], kwargs={})
    assert not env["ok"]
    assert env["error"]["type"] == "NotAllowed"
    assert repr(name) in env["error"]["message"] or name in env["error"]["message"]
    env, _ = client.request("ping")
    assert env["result"] == "pong"


def test_list_attrs_offers_only_what_call_can_reach(sidecar):
    _, client = sidecar
    roots = {e["name"] for e in client.decoded("list_attrs", path="")["result"]}
    assert roots == {"jax"}
    jax_children = {e["name"]: e["kind"] for e in client.decoded("list_attrs", path="jax")["result"]}
    assert jax_children["numpy"] == "module" and jax_children["device_put"] == "function"
    assert "config" not in jax_children and "profiler" not in jax_children
    jnp_names = {e["name"]: e["kind"] for e in client.decoded("list_attrs", path="jax.numpy")["result"]}
    assert jnp_names["matmul"] == "function" and "load" not in jnp_names and "save" not in jnp_names
    assert all(not n.startswith("_") for n in jnp_names)
    env, _ = client.request("list_attrs", path="os")
    assert env["ok"] is False and env["error"]["type"] == "NotAllowed"


def test_private_methods_and_objects_outside_the_allow_list_are_refused(eqx_sidecar):
    _, client = eqx_sidecar
    m = _mlp(client)
    env, _ = client.request("call_method", target=_back(m), name="__reduce__", args=[], kwargs={})
    assert env["error"]["type"] == "NotAllowed"
    td = client.decoded("call", fn="jax.tree.structure", args=[[1]], kwargs={})["result"]
    env, _ = client.request("call_method", target=PyRefIn(td.id), name="unflatten", args=[[1]], kwargs={})
    assert env["error"]["type"] == "NotAllowed"


# --- an allow-list of functions, not of namespaces ----------------------------------

import sys  # noqa: E402
import types  # noqa: E402

from jaxbridge_sidecar.allowlist import DEFAULT_NAMES, DEFAULT_NAMESPACES, AllowList, NotAllowed, denied_name  # noqa: E402

# Modules whose functions reach files, processes or the interpreter's state.
IO_MODULES = ("os", "io", "pickle", "shutil", "subprocess", "socket", "pathlib", "importlib", "sys", "ctypes", "tempfile", "glob")
# Builtins that reach files, code or any object's attributes (tuple and friends are fine).
import builtins  # noqa: E402

RISKY_BUILTINS = {id(f) for f in (builtins.open, builtins.eval, builtins.exec, builtins.compile, builtins.__import__, builtins.input, builtins.breakpoint, builtins.getattr, builtins.setattr, builtins.delattr, builtins.globals, builtins.vars)}


def walk(allow: AllowList, path: str = "", seen: set[str] | None = None):
    """Every (dotted name, kind) that list_attrs exposes, through every module it lists."""
    seen = set() if seen is None else seen
    for entry in allow.list_attrs(path):
        full = f"{path}.{entry['name']}" if path else entry["name"]
        if full in seen:
            continue
        seen.add(full)
        yield full, entry["kind"]
        if entry["kind"] == "module":
            yield from walk(allow, full, seen)


def test_every_name_list_attrs_exposes_follows_the_rule_and_nothing_else_is_reachable():
    allow = AllowList(DEFAULT_NAMESPACES, DEFAULT_NAMES)
    names = list(walk(allow))
    callables = [(n, k) for n, k in names if k in ("function", "class")]
    assert len(callables) > 500, "the walk found too little"
    for name, _kind in callables:
        fn = allow.resolve(name)  # everything offered resolves
        last = name.rsplit(".", 1)[1]
        assert denied_name(last) is None and not last.startswith("_"), name
        owner = getattr(fn, "__module__", None) or ""
        assert owner.split(".")[0] not in IO_MODULES, f"{name} is defined in {owner}"
        assert id(fn) not in RISKY_BUILTINS, name
        # Functions, never attributes of objects: the parent of every name is a module.
        parent = sys.modules.get(name.rsplit(".", 1)[0])
        assert isinstance(parent, types.ModuleType), f"{name}: its parent is not a module"
    for name, kind in names:
        if kind == "value":
            with pytest.raises(NotAllowed):
                allow.resolve(name)


@pytest.mark.parametrize(
    "name",
    [
        "jax.lax.add_p.def_impl",
        "jax.lax.add_p.def_abstract_eval",
        "jax.tree_util.register_static",
        "jax.tree_util.register_pytree_node",
        "jax.numpy.set_printoptions",
        "jax.numpy.printoptions",
        "jax.numpy.generic.dump",
        "jax.numpy.ndarray.tofile",
        "jax.numpy.sin.__globals__",
        "jax.numpy.load",
        "jax.numpy.fromfile",
        "jax.nn.relu.__dict__",
    ],
)
def test_what_changes_the_process_or_touches_files_is_refused(sidecar, name):
    _, client = sidecar
    env, _ = client.request("call", fn=name, args=[], kwargs={})
    assert env["ok"] is False and env["error"]["type"] == "NotAllowed", env
    assert client.request("ping")[0]["result"] == "pong"


def test_a_refused_def_impl_leaves_jax_lax_add_working_for_everyone(sidecar):
    _, client = sidecar
    relu = client.decoded("call", fn="jax.tree_util.Partial", args=[], kwargs={})
    env, _ = client.request("call", fn="jax.lax.add_p.def_impl", args=[protocol.PyRefIn(relu["result"].id)] if relu["ok"] else [], kwargs={})
    assert env["error"]["type"] == "NotAllowed"
    got = client.decoded("call", fn="jax.lax.add", args=[np.float32(2), np.float32(3)], kwargs={}, fetch=True)["result"]
    assert float(got) == 5.0


def test_import_checks_the_name_before_it_imports_anything(tmp_path):
    from conftest import running_sidecar
    import relpkg

    with running_sidecar(tmp_path, namespaces=(*DEFAULT_NAMESPACES, "relpkg")) as (_server, client):
        env, _ = client.request("import", module="relpkg._side")
        assert env["ok"] is False and env["error"]["type"] == "NotAllowed"
        assert "relpkg._side" not in sys.modules and relpkg.IMPORTED == [], "the private module was imported before it was refused"
        names = {e["name"] for e in client.decoded("import", module="relpkg")["result"]}
        assert "double" in names and "IMPORTED" in names
        assert client.decoded("call", fn="relpkg.double", args=[21], kwargs={})["result"] == 42
