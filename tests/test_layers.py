"""The layers hold: contracts of import-linter, and no module uses another package's private names.

The contracts are in ``pyproject.toml`` (``[tool.importlinter]``): from the server
extension down to the store, no layer imports a higher one, even indirectly, and the
library never imports a Jupyter server. Breaking either fails this test (and CI).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"kfjupyter": REPO / "kfjupyter", "kfjupyter_server": REPO / "server_ext" / "kfjupyter_server"}


def test_the_layer_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a test dependency: pip install -e .[test]"
    result = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _module_name(path: Path) -> str:
    for name, root in PACKAGES.items():
        if root in path.parents or path == root:
            rel = path.relative_to(root).with_suffix("")
            parts = [name, *rel.parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def _owner(module: str) -> str:
    """The package a module belongs to, for privacy: ``kfjupyter.tuning.local`` → ``kfjupyter.tuning``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "kfjupyter" and len(parts) > 1 else parts[0]


def _private_imports():
    for root in PACKAGES.values():
        for path in sorted(root.rglob("*.py")):
            module = _module_name(path)
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ImportFrom):
                    continue
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith(("kfjupyter", "kfjupyter_server")):
                    continue
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and _owner(target) != _owner(module):
                        yield f"{path.relative_to(REPO)}:{node.lineno}: {module} imports {target}.{alias.name}"


def test_no_package_imports_another_packages_private_names():
    assert list(_private_imports()) == []


@pytest.mark.parametrize("source, found", [
    ("from ..training.api import _program", True),
    ("from ..runtime.logs import read_lines", False),
    ("from .local import _storage", False),
])  # fmt: skip
def test_the_private_name_check_finds_what_it_should(tmp_path, monkeypatch, source, found):
    pkg = tmp_path / "kfjupyter"
    (pkg / "tuning").mkdir(parents=True)
    (pkg / "tuning" / "api.py").write_text(source + "\n")
    monkeypatch.setitem(PACKAGES, "kfjupyter", pkg)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert bool(list(_private_imports())) is found
