"""The code's shape, as the design promises it. (The layers and the absence of import cycles:
`lint-imports`, whose contracts are in pyproject.toml; .ci/run runs it after the tests.)"""

import ast
from pathlib import Path

import scar

SRC = Path(scar.__file__).parent
MAX_LINES = 500


def modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def unit(parts: tuple[str, ...]) -> tuple[str, ...]:
    """What a module belongs to: ``scar.<package>`` for the modules of a package, the module
    itself for a module directly in ``scar``."""
    return parts[:2]


def private_imports(root: Path) -> list[str]:
    """``from M import _name`` where M is in another unit than the importing module: what a
    package offers another must be public."""
    found = []
    for path in modules(root):
        parts = path.relative_to(root.parent).with_suffix("").parts
        package = parts[:-1]  # (of an __init__.py too: its package)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = (*base, *(node.module.split(".") if node.module else ()))
            elif node.module and node.module.split(".")[0] == root.name:
                target = tuple(node.module.split("."))
            else:
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and unit(target) != unit(parts):
                    found.append(f"{path.relative_to(root)}:{node.lineno} {alias.name}")
    return found


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(SRC)): n for p in modules(SRC) if (n := len(p.read_text().splitlines())) > MAX_LINES}  # fmt: skip
    assert not long, long


def test_no_private_name_is_imported_from_another_package():
    assert private_imports(SRC) == []


def test_the_private_import_check_finds_them(tmp_path):
    root = tmp_path / "scar"
    (root / "store").mkdir(parents=True)
    (root / "runtime").mkdir()
    for f in ("__init__.py", "store/__init__.py", "runtime/__init__.py", "store/format.py"):
        (root / f).write_text("")
    (root / "store" / "commit.py").write_text("from .format import _covered\n")  # same package
    (root / "runtime" / "a.py").write_text("from ..store.format import _covered, public\n")
    (root / "runtime" / "b.py").write_text("from scar.store import _x\nfrom .a import _y\n")
    (root / "checkpoint.py").write_text("from .recovery import _z\nfrom . import __version__\n")
    assert private_imports(root) == [
        "checkpoint.py:1 _z",
        "runtime/a.py:1 _covered",
        "runtime/b.py:1 _x",
    ]
