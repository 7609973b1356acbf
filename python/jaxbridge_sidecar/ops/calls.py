"""Calling allow-listed Python: `call` (a function by dotted name), `import`
and `list_attrs` (what a namespace offers), and `call_method` (a method of
an object the sidecar handed out)."""

from __future__ import annotations

import importlib
from typing import Any

import jax

from ..allowlist import check_method_name
from ..protocol import WireError
from .host import Host, Op


def call(host: Host, env: dict[str, Any]) -> Any:
    name = env.get("fn")
    fn = host.allow.resolve(name)
    args = env.get("args") or []
    kwargs = env.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise WireError("ProtocolError", "call needs `args` as a list and `kwargs` as a map")
    args, kwargs = host.materialize(args), host.materialize(kwargs)
    host.allow.check_creation(name, fn, args, kwargs)
    out = fn(*args, **kwargs)
    fetch = bool(env.get("fetch"))
    # JAX dispatches asynchronously; the reply waits for the values only if asked (docs/protocol.md "Readiness").
    if env.get("ready", True) is not False or fetch:
        out = jax.block_until_ready(out)
    return host.export(out, fetch)


def import_module(host: Host, env: dict[str, Any]) -> Any:
    """Check a module may be imported (it is inside the allow-list) and list what it offers."""
    name = host.allow.check_module_name(env.get("module"))
    importlib.import_module(name)
    return host.allow.list_attrs(name)


def list_attrs(host: Host, env: dict[str, Any]) -> Any:
    return host.allow.list_attrs(env.get("path", ""))


def call_method(host: Host, env: dict[str, Any]) -> Any:
    """Call a public method (or __call__) of an object the sidecar handed out."""
    name = check_method_name(env.get("name"), "call_method")
    target = host.materialize(env.get("target"))
    host.allow.check_class(type(target))
    method = getattr(target, name)
    args = env.get("args") or []
    kwargs = env.get("kwargs") or {}
    out = jax.block_until_ready(method(*host.materialize(args), **host.materialize(kwargs)))
    return host.export(out, bool(env.get("fetch")))


OPS: dict[str, Op] = {"call": call, "import": import_module, "list_attrs": list_attrs, "call_method": call_method}
