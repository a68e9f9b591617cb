"""The layering of DESIGN.md ("The one idea"): a module imports only its own layer and the layers below it.

Every module of hesslab/ is parsed (``ast``; nothing is imported, so a cycle or a heavy import cannot hide a
violation), every ``import``/``from ... import`` in it — at the top or inside a function — is resolved to a hesslab
module, and the layer of the importer must be at least the layer of the imported. ``experiments/`` is imported by
nothing else in the library. A module that is not in the table below is itself a failure: a new module must be
placed in the picture before it lands.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hesslab"

# Lowest first. A key is a top-level module or subpackage of hesslab (a subpackage covers every file in it);
# "hesslab" is the package's own __init__.py, the public API. Modules DESIGN.md plans but that do not exist yet
# (kronecker, inverse, training, distributed, compress) are placed already, so they land in the right layer.
LAYERS = [
    ("foundation", ["runtime", "_checks", "sampling", "linalg", "_results"]),
    ("small datasets and nets", ["data", "models"]),
    ("f(θ) of a model and its products", ["functional"]),
    ("exact curvature", ["_dense", "exact", "kronecker"]),
    ("curvature operators", ["operators", "batches", "_merging", "fisher_operator"]),
    ("estimators and solvers on an operator", ["hutchinson", "spectrum", "inverse", "training", "distributed"]),
    ("domain tools", ["optim", "optimize", "transport", "pde", "compress", "landscape"]),
    ("the public API", ["hesslab"]),
    ("experiments, one per notebook", ["experiments"]),
    ("for notebooks only", ["plot", "widgets"]),
]
LAYER = {name: level for level, (_, names) in enumerate(LAYERS) for name in names}


def module_name(path: Path, root: Path) -> str:
    """hesslab/optim/sophia.py -> 'hesslab.optim.sophia'; hesslab/optim/__init__.py -> 'hesslab.optim'."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The key of LAYERS a module belongs to: 'hesslab.optim.sophia' -> 'optim', 'hesslab' -> 'hesslab'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imported_modules(source: str, module: str, is_package: bool, root: Path) -> list[tuple[int, str]]:
    """(line, hesslab module) for every import of hesslab in ``source``; relative imports resolved from ``module``.

    ``from .. import data`` names the submodule hesslab.data when hesslab/data.py (or hesslab/data/) exists, and
    otherwise a name of hesslab/__init__.py.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "hesslab"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[: len(base) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            elif node.module and node.module.split(".")[0] == "hesslab":
                target = node.module
            else:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                path = root.parent.joinpath(*submodule.split("."))
                found.append((node.lineno, submodule if path.with_suffix(".py").exists() or path.is_dir() else target))
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    """Every breach of the layering in the package at ``root``, one readable line each (empty when all is well)."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        if unit(module) not in LAYER:
            problems.append(f"{module} is in no layer of LAYERS: place it in the picture of DESIGN.md")
            continue
        for line, imported in imported_modules(path.read_text(), module, path.name == "__init__.py", root):
            where = f"{path.relative_to(root.parent)}:{line}: {module} imports {imported}"
            if unit(imported) not in LAYER:
                problems.append(f"{where}, which is in no layer of LAYERS")
            elif unit(imported) == "experiments" and unit(module) != "experiments":
                problems.append(f"{where}: experiments/ is imported by nothing in the library")
            elif LAYER[unit(imported)] > LAYER[unit(module)]:
                problems.append(f"{where}: a lower layer ({LAYERS[LAYER[unit(module)]][0]}) imports a higher one "
                                f"({LAYERS[LAYER[unit(imported)]][0]})")
    return problems


def test_no_module_imports_a_higher_layer_and_every_module_is_placed():
    assert len(list(PACKAGE.rglob("*.py"))) > 30  # the real package was found and walked
    assert violations() == []


def test_the_imports_of_a_module_are_all_found_and_resolved():
    """Top-level and function-local imports, relative at every level, absolute, and `from .. import <module>`."""
    source = ("from .common import x\nfrom .. import data, models\nfrom ..exact import hessian\nimport hesslab\n"
              "def f():\n    from hesslab.spectrum import lanczos\n    import numpy\n")
    found = imported_modules(source, "hesslab.optim.sophia", False, PACKAGE)
    assert sorted(found) == [(1, "hesslab.optim.common"), (2, "hesslab.data"), (2, "hesslab.models"),
                             (3, "hesslab.exact"), (4, "hesslab"), (6, "hesslab.spectrum")]
    # in a package's __init__.py, "." is the package itself
    assert imported_modules("from ._dual import sparsify\n", "hesslab.transport", True, PACKAGE) == [
        (1, "hesslab.transport._dual")]


def copy_of_package(tmp_path: Path) -> Path:
    root = tmp_path / "hesslab"
    for path in PACKAGE.rglob("*.py"):
        target = root / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    return root


@pytest.mark.parametrize("file, line, message", [
    ("functional.py", "from .spectrum import lanczos", "a lower layer (f(θ) of a model and its products) imports a "
                                                       "higher one (estimators and solvers on an operator)"),
    ("operators.py", "def f():\n    import hesslab.optimize", "imports hesslab.optimize"),
    ("_checks.py", "import hesslab as hl", "imports hesslab: a lower layer (foundation) imports a higher one"),
    ("optim/common.py", "from ..experiments import lazy_newton", "experiments/ is imported by nothing in the library"),
    ("plot.py", "from .experiments.lazy_newton import f", "experiments/ is imported by nothing in the library"),
    ("newmodule.py", "", "hesslab.newmodule is in no layer of LAYERS"),
    ("spectrum/_eigen.py", "from ..newmodule import x", "imports hesslab.newmodule, which is in no layer"),
])
def test_the_check_fails_on_a_package_that_breaks_the_layering(tmp_path, file, line, message):
    root = copy_of_package(tmp_path)
    assert violations(root) == []
    (root / file).write_text(((root / file).read_text() if (root / file).exists() else "") + "\n" + line + "\n")
    (problem,) = violations(root)
    assert message in problem
