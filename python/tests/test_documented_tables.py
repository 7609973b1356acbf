"""The lists docs/protocol.md tables (through `python -m jaxbridge_sidecar
ops`, which test/wire/protocol-doc.test.ts compares with the doc) are the
sidecar's real ones. protocol.ERROR_KINDS: every WireError the sources
construct names one of them (as a literal, so this test can see it), and
every one of them is raised somewhere. allowlist.documented_defaults(): a
default AllowList resolves every callable it names and refuses every denied
attribute wherever a namespace it names has one."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import jaxbridge_sidecar
from jaxbridge_sidecar.protocol import ERROR_KINDS

ROOT = Path(jaxbridge_sidecar.__file__).parent


def _constructed() -> dict[str, list[str]]:
    """Kind -> where a WireError of that kind is constructed; NotAllowed where allowlist.NotAllowed is."""
    found: dict[str, list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id if isinstance(node.func, ast.Name) else None
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name == "WireError":
                kind = node.args[0] if node.args else None
                assert isinstance(kind, ast.Constant) and isinstance(kind.value, str), f"{where}: WireError's kind must be a string literal"
                found.setdefault(kind.value, []).append(where)
            elif name == "NotAllowed":
                found.setdefault("NotAllowed", []).append(where)
    return found


def test_every_kind_the_sources_raise_is_listed_and_every_listed_kind_is_raised():
    found = _constructed()
    unlisted = {k: v for k, v in found.items() if k not in ERROR_KINDS}
    assert not unlisted, f"error kinds raised but not in protocol.ERROR_KINDS (and so not in docs/protocol.md): {unlisted}"
    never = [k for k in ERROR_KINDS if k not in found]
    assert not never, f"protocol.ERROR_KINDS lists kinds no source raises: {never}"
    assert len(set(ERROR_KINDS)) == len(ERROR_KINDS)


def test_the_ops_command_prints_the_kinds_and_the_default_allow_list():
    out = subprocess.run([sys.executable, "-m", "jaxbridge_sidecar", "ops"], capture_output=True, text=True, check=True, timeout=120)
    printed = json.loads(out.stdout)
    assert printed["errors"] == list(ERROR_KINDS)
    from jaxbridge_sidecar.allowlist import documented_defaults

    assert printed["allow"] == documented_defaults()


def test_the_documented_allow_list_is_the_one_a_default_sidecar_enforces():
    import importlib

    import pytest

    from jaxbridge_sidecar.allowlist import AllowList, NotAllowed, documented_defaults

    doc = documented_defaults()
    allow = AllowList()
    for name in doc["callables"]:
        assert callable(allow.resolve(name)), name
    refused = 0
    for ns in doc["namespaces"]:
        module = importlib.import_module(ns)
        for attr in doc["denied attributes"]:
            if hasattr(module, attr):
                with pytest.raises(NotAllowed):
                    allow.resolve(f"{ns}.{attr}")
                refused += 1
    assert refused >= 3
    for outside in ("os.system", "numpy.load", "jax.jit"):
        with pytest.raises(NotAllowed):
            allow.resolve(outside)
