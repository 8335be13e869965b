"""The library never prints: it logs (module loggers) and draws tqdm bars. Only the command line prints: `cli.py`
and the functions `cli.COMMANDS` runs (what a command shows when it is done), plus the `python -m` entry of
the README families table."""

from __future__ import annotations

import ast
from pathlib import Path

from lmm_concepts.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "lmm_concepts"
ALLOWED_MODULES = {"lmm_concepts.cli"}
ALLOWED_FUNCTIONS = {tuple(c.run.split(":")) for c in COMMANDS.values()} | {  # (module, top-level function)
    ("lmm_concepts.models.bridge.table", "main"),  # a maintainer's command: `python -m ...table` prints the table
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def prints_outside_the_cli(root: Path = PACKAGE) -> list[str]:
    """'module:line (in function)' for every print call the rule does not allow."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        if module in ALLOWED_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for top in tree.body:
            owner = (
                top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else None
            )
            if (module, owner) in ALLOWED_FUNCTIONS:
                continue
            for node in ast.walk(top):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                    found.append(f"{module}:{node.lineno} (in {owner or 'module level'})")
    return found


def test_the_library_never_prints():
    assert not prints_outside_the_cli(), "log instead (logging.getLogger(__name__)): " + ", ".join(
        prints_outside_the_cli()
    )


def test_the_rule_allows_command_functions_and_flags_the_rest(tmp_path):
    pkg = tmp_path / "lmm_concepts"
    (pkg / "dictionary").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("print('usage')\n")
    (pkg / "dictionary" / "fit_cli.py").write_text(
        "def fit(cfg):\n    def inner():\n        print('nested in the command')\n    print('done')\n\n"
        "def helper():\n    print('a library function')\n"
    )
    (pkg / "dictionary" / "semi_nmf.py").write_text("class SemiNMF:\n    def fit(self):\n        print(1)\n")
    assert prints_outside_the_cli(pkg) == [
        "lmm_concepts.dictionary.fit_cli:7 (in helper)",
        "lmm_concepts.dictionary.semi_nmf:3 (in SemiNMF)",
    ]
