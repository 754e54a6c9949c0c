"""The package imports only what it declares."""

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _requirement_names(requirements):
    """Distribution names of requirement lines; ``dask[distributed]`` also names the
    distribution its extra installs (dask's extras are named after them)."""
    names = set()
    for line in requirements:
        name, extras = re.match(r"([\w.-]+)(?:\[([^\]]*)\])?", line).groups()
        names |= {name, *(extras or "").split(",")} - {""}
    return {name.lower().replace("_", "-") for name in names}


def _imports(tree):
    """``(top-level module, at module level?)`` for each absolute import in ``tree``."""
    nested = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(function)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            yield name.split(".")[0], id(node) not in nested


def test_runtime_imports_are_declared():
    """Module-level imports need a required dependency; imports inside functions
    may also come from an optional extra (they run only when that feature is used)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = _requirement_names(project["dependencies"])
    optional = set().union(*map(_requirement_names, project["optional-dependencies"].values()))
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for path in sorted((ROOT / "sklearn_clipdet").rglob("*.py")):
        for module, at_top in _imports(ast.parse(path.read_text(), str(path))):
            if module in sys.stdlib_module_names or module == "sklearn_clipdet":
                continue
            provided_by = {name.lower().replace("_", "-") for name in distributions.get(module, [])}
            allowed = required if at_top else required | optional
            if not provided_by & allowed:
                undeclared.append(f"{path.relative_to(ROOT)}: {module}")
    assert not undeclared, f"imports of undeclared distributions: {undeclared}"



@pytest.mark.parametrize("code", [
    "import sklearn_clipdet.exceptions",
    "from sklearn_clipdet.exceptions import WeightsUnavailableError, ImageDecodeError",
])
def test_light_modules_import_no_torch(code):
    """The errors are a leaf: catching one loads neither torch nor the estimators."""
    import subprocess

    check = f"import sys; {code}; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_errors_are_defined_in_exceptions():
    from sklearn_clipdet import exceptions

    for name in exceptions.__all__:
        assert getattr(exceptions, name).__module__ == "sklearn_clipdet.exceptions", name
