"""The layering of docs/architecture.rst holds: every import inside the package points to a lower layer."""
import ast
import pathlib

import pyro_node_uq

ROOT = pathlib.Path(pyro_node_uq.__file__).parent
#: bottom to top; a unit may import from units of lower layers only (and from itself)
LAYERS = [("utils", "validation"), ("nn",), ("distributions",), ("models",), ("data", "infer"), ("methods",),
          ("diagnostics",), ("compare",), ("cli",), ("__main__",)]
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _unit(parts):
    return parts[0] if parts else None


def package_imports():
    """``(importing unit, imported unit, file)`` for every import of one package unit by another."""
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("").parts
        here = list(rel[:-1])  # the package of this module
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                target = here[: len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("pyro_node_uq."):
                target = node.module.split(".")[1:]
            else:
                continue
            if _unit(target) is not None and _unit(target) != rel[0]:
                yield rel[0], _unit(target), path.relative_to(ROOT)


def test_every_unit_has_a_layer():
    units = {p.relative_to(ROOT).with_suffix("").parts[0] for p in ROOT.rglob("*.py")} - {"__init__"}
    assert units <= set(LEVEL), f"add {sorted(units - set(LEVEL))} to LAYERS and to docs/architecture.rst"


def test_imports_point_down_the_layers():
    upward = [f"{path}: {src} imports {dst}" for src, dst, path in package_imports() if LEVEL[dst] >= LEVEL[src]]
    assert not upward, "imports against the layering of docs/architecture.rst:\n" + "\n".join(upward)


def test_the_check_sees_imports():
    """The scan finds the imports it should (a check that finds nothing cannot fail)."""
    found = {(src, dst) for src, dst, _ in package_imports()}
    assert {("methods", "infer"), ("compare", "methods"), ("models", "distributions")} <= found
