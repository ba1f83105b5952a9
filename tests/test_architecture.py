"""The package map of docs/architecture.md holds: each package imports only the packages
of ours that the map allows (read from the source with ``ast``, so a lazy import inside a
function counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# What each package may import of ours (docs/architecture.md, "The map").
ALLOWED: dict[str, set[str]] = {
    "teleconsult": {"api", "signaling", "consults", "sessions", "store", "ecglive", "ecg", "media"},
    "api": {"signaling", "consults", "sessions", "ecglive", "ecg"},
    "signaling": {"sessions", "consults"},
    "consults": set(),
    "sessions": set(),
    "store": {"sessions", "consults"},
    "ecglive": {"ecg"},
    "ecg": set(),
    "media": set(),
}
OURS = set(ALLOWED) | {"web"}


def imported_packages(path: Path) -> set[str]:
    """The top-level names of our packages that one source file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names)
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_map_allows(package: str) -> None:
    """No module of the package imports one of ours outside its row of the map."""
    wrong = {
        f"{path.relative_to(REPO)} imports {name}"
        for path in (REPO / package).rglob("*.py")
        for name in imported_packages(path) - ALLOWED[package] - {package}
    }
    assert not wrong, sorted(wrong)


def test_map_matches_the_document() -> None:
    """docs/architecture.md lists every package of the map with the same allowed imports."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].rstrip("/") in ALLOWED:
            allowed = cells[2].replace("`", "")
            names = {n.strip().rstrip("/") for n in allowed.split(",")}
            rows[cells[0].rstrip("/")] = names - {"nothing", "everything", ""}
    assert set(rows) == set(ALLOWED)
    for package, names in rows.items():
        expected = ALLOWED[package] if package != "teleconsult" else set()
        assert names == expected, package
