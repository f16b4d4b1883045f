"""The package layout shows the layers, and imports point down."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mailbridge"
LEAVES = {"errors", "clock", "logs"}
"""The shared modules at the top, below every package."""
MAY_IMPORT = {
    "core": {"core"},
    "config": {"config", "core", "errors"},
    "mail": {"mail", "core", "config", "errors", "logs"},
    "store": {"store", "core", "config", "errors", "logs", "clock"},
    "metrics": {"metrics", "store", "core", "config", "errors", "logs", "clock"},
    "io": {"io", "metrics", "mail", "store", "core", "config", "errors", "logs", "clock"},
    "daemon": {"daemon", "io", "metrics", "mail", "store", "core", "config", *LEAVES},
    "cli": {"cli", "daemon", "io", "metrics", "mail", "store", "core", "config", *LEAVES},
    "errors": set(), "clock": set(), "logs": set(),
}


def _room(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def _imports(file: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mailbridge":
                found |= {f"mailbridge.{a.name}" for a in node.names if not a.name.startswith("__")}
            elif node.module.startswith("mailbridge."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mailbridge.")}
    return found


def test_top_level_holds_only_packages_and_shared_leaves() -> None:
    """At the top of mailbridge/: the packages, __init__, __main__ and the shared leaves."""
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert modules == LEAVES
    assert packages == set(MAY_IMPORT) - LEAVES


def test_imports_point_down() -> None:
    """Every module imports only from its own package and the layers below it."""
    wrong = []
    for file in sorted(PACKAGE.rglob("*.py")):
        relative = file.relative_to(PACKAGE.parent).with_suffix("")
        room = relative.parts[1] if len(relative.parts) > 1 else "__init__"
        if room in {"__init__", "__main__"}:
            continue
        room = room.removesuffix(".py")
        for target in _imports(file):
            target_room = _room(target)
            if target_room == "__init__":  # `from mailbridge import __version__`
                continue
            if target_room not in MAY_IMPORT[room]:
                wrong.append(f"{'/'.join(relative.parts)} imports {target}")
    assert wrong == []


def test_each_package_says_what_it_owns_and_may_import() -> None:
    """Each package's __init__ docstring names what it owns and what it may import."""
    for room in set(MAY_IMPORT) - LEAVES:
        doc = ast.get_docstring(ast.parse((PACKAGE / room / "__init__.py").read_text()))
        assert doc and "import" in doc, room
