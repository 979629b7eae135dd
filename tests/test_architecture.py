"""The layering of docs/architecture.rst holds: every import inside the package points to a lower layer, no two
modules import each other (directly or round a longer loop), and only ``infer/_pyro_compat.py`` names Pyro's
private internals.

The checks read every import form (``import x``, ``import x as y``, ``from x import y``, ``from x import
submodule``, relative imports at any level) wherever it stands (module level or inside a function).  They run on
any package folder, so the tests at the end plant each kind of violation in a synthetic package and show that the
checks fail on it.
"""
import ast
import pathlib

import pytest

import pyro_node_uq

ROOT = pathlib.Path(pyro_node_uq.__file__).parent
#: bottom to top; a unit may import from units of lower layers only (and from itself)
LAYERS = [("utils", "validation"), ("nn",), ("distributions",), ("models",), ("data", "infer"), ("methods",),
          ("diagnostics",), ("compare",), ("cli",), ("__main__",)]
#: names of Pyro internals (private attributes, functions and classes) the package must reach only through
#: infer/_pyro_compat.py
PYRO_PRIVATE = {"_setup_prototype", "_unpack_latent", "_unconstrained_shapes", "_mean_accept_prob", "_divergences",
                "_potential_energy_last", "_pyro_name", "_mask", "_model", "_loc_scale", "_prototype_frames",
                "_init_loc_fn", "_PYRO_STACK", "_DIM_ALLOCATOR", "_EXCEPTION_HANDLERS", "_Subsample",
                "_MultiSampler", "_UnarySampler", "_cond_indep_stack", "_pyro_params", "_pyro_samples"}
COMPAT = ("infer", "_pyro_compat")


# ------------------------------------------------------------------------------------------- reading the package
def modules(root):
    """``{module parts: path}``: ``("infer", "mcmc", "mala")`` for a module, ``("infer", "mcmc")`` for a
    package's ``__init__.py``, ``()`` for the top package."""
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        out[parts[:-1] if parts[-1] == "__init__" else parts] = path
    return out


def _resolve(known, base, name):
    """``base + (name,)`` if that is a module of the package (``from package import submodule``), else ``base``."""
    return base + (name,) if name != "*" and base + (name,) in known else base


def imports(root, package):
    """``(module, imported module, line)`` for every import of one module of the package by another, every form."""
    known = modules(root)
    for parts, path in known.items():
        is_init = path.name == "__init__.py"
        here = parts if is_init else parts[:-1]  # the package this module belongs to
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    names = alias.name.split(".")
                    if names[0] == package:
                        targets.append(tuple(names[1:]))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    if node.level - 1 > len(here):
                        continue
                    base = here[: len(here) - (node.level - 1)]
                    base += tuple(node.module.split(".")) if node.module else ()
                elif node.module and node.module.split(".")[0] == package:
                    base = tuple(node.module.split(".")[1:])
                else:
                    continue
                targets += [_resolve(known, base, alias.name) for alias in node.names]
            for target in targets:
                if target != parts:
                    yield parts, target, node.lineno


def upward_imports(root, package, layers):
    """``"file:line: unit imports unit"`` for every import that does not point to a lower layer."""
    level = {unit: i for i, layer in enumerate(layers) for unit in layer}
    found = []
    for src, dst, line in imports(root, package):
        if not src or not dst or src[0] == dst[0]:
            continue
        if level[dst[0]] >= level[src[0]]:
            found.append(f"{'/'.join(src)}.py:{line}: {src[0]} imports {dst[0]}")
    return found


def import_loops(root, package):
    """The import loops between modules: each a sorted list of the modules that import each other, round and
    round (strongly connected components of the import graph with more than one module; a package's
    ``__init__`` counts as a module that imports what it names)."""
    graph = {}
    for src, dst, _ in imports(root, package):
        graph.setdefault(src, set()).add(dst)
    index, low, stack, on_stack, loops, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's algorithm
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(".".join(w) or package)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return loops


def _pyro_classes(trees):
    """Names of the package's classes that derive from a Pyro class (directly or through one of ours)."""
    pyro_names, bases = set(), {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pyro":
                pyro_names.update(a.asname or a.name for a in node.names)
            elif isinstance(node, ast.ClassDef):
                bases[node.name] = {ast.unparse(b).split(".")[-1].split("[")[0] for b in node.bases}
    derived, changed = set(), True
    while changed:
        new = {name for name, b in bases.items() if b & (pyro_names | derived)} - derived
        derived |= new
        changed = bool(new)
    return derived


def private_pyro_uses(root, private=PYRO_PRIVATE, compat=COMPAT):
    """``"file:line: name"`` for every use of a private Pyro name outside the compatibility module: an import of a
    private name from ``pyro``, or an attribute ``x.name`` with ``name`` in ``private``.  Allowed: overriding
    Pyro's hook (``def _setup_prototype`` and its ``super()._setup_prototype(...)``) and a class's own attribute
    of the same spelling (``self._model`` in a class that does not derive from Pyro)."""
    files = {parts: path for parts, path in modules(root).items() if parts != compat}
    trees = {parts: ast.parse(path.read_text(), str(path)) for parts, path in files.items()}
    pyro_derived, found = _pyro_classes(trees.values()), []
    for parts, tree in trees.items():
        where = "/".join(parts) + ".py"
        owners = {}  # node id -> the class it belongs to
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for inner in ast.walk(cls):
                owners[id(inner)] = cls.name
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                for alias in node.names:
                    full = f"{module}.{alias.name}" if module else alias.name
                    if full.split(".")[0] == "pyro" and any(p.startswith("_") and not p.startswith("__")
                                                            for p in full.split(".")[1:]):
                        found.append(f"{where}:{node.lineno}: {full}")
            elif isinstance(node, ast.Attribute) and node.attr in private:
                value = node.value
                if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
                    continue
                if isinstance(value, ast.Name) and value.id == "self" and owners.get(id(node)) not in pyro_derived:
                    continue
                found.append(f"{where}:{node.lineno}: .{node.attr}")
    return found


# ------------------------------------------------------------------------------------------- the package
def test_every_unit_has_a_layer():
    level = {unit for layer in LAYERS for unit in layer}
    units = {parts[0] for parts in modules(ROOT) if parts}
    assert units <= level, f"add {sorted(units - level)} to LAYERS and to docs/architecture.rst"


def test_imports_point_down_the_layers():
    upward = upward_imports(ROOT, "pyro_node_uq", LAYERS)
    assert not upward, "imports against the layering of docs/architecture.rst:\n" + "\n".join(upward)


#: loops that exist and are to be broken by their layer's owners; any other loop fails the test
KNOWN_LOOPS = [["data.arrays", "data.events", "data.problem", "data.units"]]


def test_no_import_loops():
    loops = [loop for loop in import_loops(ROOT, "pyro_node_uq") if loop not in KNOWN_LOOPS]
    assert not loops, "modules that import each other:\n" + "\n".join(" <-> ".join(loop) for loop in loops)


def test_private_pyro_names_only_in_the_compat_module():
    uses = private_pyro_uses(ROOT)
    assert not uses, "private Pyro names outside infer/_pyro_compat.py:\n" + "\n".join(uses)


def test_the_check_sees_imports():
    """The scan finds the imports it should (a check that finds nothing cannot fail)."""
    found = {(src[:1], dst[:1]) for src, dst, _ in imports(ROOT, "pyro_node_uq")}
    assert {(("methods",), ("infer",)), (("compare",), ("methods",)), (("models",), ("distributions",))} <= found


# ------------------------------------------------------------------------------------------- tests of the checks
SYNTHETIC_LAYERS = [("low",), ("high",)]


def _package(tmp_path, files):
    """A synthetic package ``pkg`` with modules ``low/a.py``, ``low/b.py``, ``high/c.py`` and ``files``."""
    root = tmp_path / "pkg"
    base = {"__init__.py": "", "low/__init__.py": "", "low/a.py": "X = 1\n", "low/b.py": "Y = 2\n",
            "high/__init__.py": "", "high/c.py": "from ..low.a import X\n"}
    for name, text in {**base, **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_clean_synthetic_package_passes(tmp_path):
    root = _package(tmp_path, {})
    assert upward_imports(root, "pkg", SYNTHETIC_LAYERS) == []
    assert import_loops(root, "pkg") == []
    assert private_pyro_uses(root, compat=()) == []


@pytest.mark.parametrize("form", [
    "import pkg.high.c\n",
    "import pkg.high.c as c\n",
    "from pkg.high.c import Z\n",
    "from pkg.high import c\n",
    "from pkg import high\n",
    "from ..high.c import Z\n",
    "from ..high import c\n",
    "from .. import high\n",
    "def f():\n    from ..high.c import Z\n    return Z\n",
    "class K:\n    def m(self):\n        import pkg.high.c\n",
])
def test_an_upward_import_of_every_form_fails(tmp_path, form):
    root = _package(tmp_path, {"low/b.py": form})
    upward = upward_imports(root, "pkg", SYNTHETIC_LAYERS)
    assert upward and upward[0].startswith("low/b.py:") and "low imports high" in upward[0]


@pytest.mark.parametrize("a_text,b_text", [
    ("from .b import Y\nX = 1\n", "from .a import X\nY = 2\n"),  # module level
    ("X = 1\ndef f():\n    from .b import Y\n", "from . import a\nY = 2\n"),  # one side inside a function
    ("import pkg.low.b\nX = 1\n", "def g():\n    from pkg.low.a import X\n"),  # absolute forms
])
def test_a_loop_between_two_files_fails(tmp_path, a_text, b_text):
    root = _package(tmp_path, {"low/a.py": a_text, "low/b.py": b_text})
    assert import_loops(root, "pkg") == [["low.a", "low.b"]]


def test_a_longer_loop_fails(tmp_path):
    root = _package(tmp_path, {"low/a.py": "from .b import Y\n", "low/b.py": "from . import d\nY = 2\n",
                               "low/d.py": "from .a import X\n"})
    assert import_loops(root, "pkg") == [["low.a", "low.b", "low.d"]]


@pytest.mark.parametrize("text", [
    "from pyro.poutine.subsample_messenger import _Subsample\n",
    "import pyro.infer.mcmc.api._MultiSampler\n",
    "def f(guide):\n    return guide._unconstrained_shapes\n",
    "def f(kernel):\n    return kernel._mean_accept_prob\n",
    "from pyro.infer.autoguide import AutoNormal\nclass G(AutoNormal):\n    def f(self):\n        return self._model\n",
])
def test_a_private_pyro_name_outside_the_compat_module_fails(tmp_path, text):
    root = _package(tmp_path, {"low/b.py": text})
    assert [use.split(":")[0] for use in private_pyro_uses(root, compat=())] == ["low/b.py"]


def test_overrides_and_own_attributes_are_not_private_uses(tmp_path):
    text = ("from pyro.infer.autoguide import AutoNormal\n"
            "class G(AutoNormal):\n    def _setup_prototype(self, *a):\n        super()._setup_prototype(*a)\n"
            "class Own:\n    def __init__(self):\n        self._model = None\n")
    root = _package(tmp_path, {"low/b.py": text, "low/_compat.py": "def f(g):\n    return g._model\n"})
    assert private_pyro_uses(root, compat=("low", "_compat")) == []
