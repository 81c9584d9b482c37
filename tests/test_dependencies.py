"""What pyproject.toml declares is what app/ and workers/ import: no missing, no dead weight."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).parent.parent
OURS = {"app", "workers", "email_templates", "tests"}

# Declared and never imported, on purpose: each is used by something other than an import.
NOT_IMPORTED = {
    "gunicorn": "`roundtable serve` execs the gunicorn command",
    "gevent": "gunicorn's default worker class in `roundtable serve`",
    "mail-parser": "the stack's named parser: bench/reading.py and bench/webhook.py measure our reader against it; app/reading parses each message once with the standard library instead (issue 12)",
}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {normalized(re.match(r"[A-Za-z0-9._-]+", spec).group()) for spec in project["dependencies"]}  # type: ignore[union-attr]


def imported_modules() -> dict[str, set[str]]:
    """Top-level module -> the files importing it, for every absolute import (function-level ones too)."""
    found: dict[str, set[str]] = {}
    for folder in ("app", "workers"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.partition(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def imported_distributions() -> dict[str, set[str]]:
    distributions = packages_distributions()
    by_distribution: dict[str, set[str]] = {}
    for module, files in imported_modules().items():
        if module in sys.stdlib_module_names or module in OURS:
            continue
        assert module in distributions, f"{module} (imported by {sorted(files)}) is not installed"
        for distribution in distributions[module]:
            by_distribution.setdefault(normalized(distribution), set()).update(files)
    return by_distribution


def test_every_imported_package_is_declared() -> None:
    missing = {name: sorted(files) for name, files in imported_distributions().items() if name not in declared()}
    assert missing == {}, f"imported but not in pyproject's dependencies: {missing}"


def test_every_declared_package_is_imported_or_has_a_reason() -> None:
    unused = declared() - set(imported_distributions()) - set(NOT_IMPORTED)
    assert unused == set(), f"declared in pyproject but never imported by app/ or workers/: {sorted(unused)}"


def test_the_check_sees_imports_inside_functions() -> None:
    # WeasyPrint and the sendgrid helpers are imported where they are used, not at the top.
    modules = imported_modules()
    assert "app/packets.py" in modules["weasyprint"]
    assert "cryptography" in imported_distributions()
