"""The package's imports only go downward (LAYERS in jaxbridge_sidecar/__init__.py),
op families do not import each other, and ops and programs use no other
object's private names. Checked by walking every module's imports with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import jaxbridge_sidecar
from jaxbridge_sidecar import LAYERS

ROOT = Path(jaxbridge_sidecar.__file__).parent
PACKAGE = "jaxbridge_sidecar"


def modules() -> dict[str, Path]:
    """Dotted names inside the package ("program.decode", "server", "__init__") → files."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if len(parts) > 1 and parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """The package-internal modules that module `name` imports (at module level
    or inside functions), as (line, dotted name)."""
    here = name.split(".") if is_package else name.split(".")[:-1]
    known = modules()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    found.append((node.lineno, alias.name[len(PACKAGE) + 1 :]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                target = node.module.split(".")[1:]
            else:
                continue
            prefix = ".".join(target)
            for alias in node.names:
                sub = f"{prefix}.{alias.name}" if prefix else alias.name
                found.append((node.lineno, sub if sub in known else prefix))
    return found


def imports_of(name: str, path: Path) -> list[tuple[int, str]]:
    return imports(name, path.read_text(), is_package=path.name == "__init__.py" and name != "__init__")


def layer_of(name: str) -> int:
    top = name.split(".")[0]
    for i, (_, members) in enumerate(LAYERS):
        if top in members:
            return i
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in jaxbridge_sidecar/__init__.py")


def test_every_module_has_a_layer_and_imports_only_its_own_layer_or_below():
    bad = []
    for name, path in modules().items():
        mine = layer_of(name)
        for line, target in imports_of(name, path):
            if target and layer_of(target) > mine:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {LAYERS[mine][0]} module {name} imports {target} ({LAYERS[layer_of(target)][0]})")
    assert bad == []


def test_op_families_import_no_other_family():
    bad = []
    for name, path in modules().items():
        if name.startswith("ops.") and name != "ops.host":
            bad += [f"{name}:{line} imports {t}" for line, t in imports_of(name, path) if t.startswith("ops") and t != "ops.host"]
    assert bad == []


def test_ops_and_programs_use_no_other_object_s_private_names():
    bad = []
    for name, path in modules().items():
        if name.split(".")[0] not in ("ops", "program"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert bad == []


def test_the_walk_sees_imports_that_run_up():
    """The checker itself: relative, absolute and function-local imports are all found."""
    source = "from ..server import Server\nfrom ..ops import host\nfrom . import rules\n\ndef f():\n    import jaxbridge_sidecar.cli\n"
    found = [t for _, t in imports("program.decode", source)]
    assert found == ["server", "ops.host", "program.rules", "cli"]
    assert [layer_of(t) > layer_of("program.decode") for t in found] == [True, True, False, True]
