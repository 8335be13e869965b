"""Lazy re-exports for a package `__init__`: names are imported from their modules when first used.

A package lists its re-exports once, as ordinary imports under `if TYPE_CHECKING:` (so type checkers and readers
see them), and ends with

    __getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

which reads those imports from the file and serves each name on first access (PEP 562). `import lmm_concepts`
then costs no torch or sae-lens import: `lmm-concepts --help` answers in about a second instead of 5-20 s.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _type_checking_imports(init_file: str, package: str) -> dict[str, tuple[str, str]]:
    """name -> (module, attribute) for every `from M import A [as N]` under `if TYPE_CHECKING:` in the file."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"))
    table: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                if not isinstance(imp, ast.ImportFrom):
                    raise TypeError(
                        f"{init_file}: only `from M import name` belongs under TYPE_CHECKING here"
                    )
                module = imp.module or ""
                if imp.level:  # relative: resolved against the package
                    base = package.split(".")[: len(package.split(".")) - imp.level + 1]
                    module = ".".join(base + ([module] if module else []))
                for alias in imp.names:
                    table[alias.asname or alias.name] = (module, alias.name)
    return table


def lazy_exports(
    package: str, init_file: str, namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module `__getattr__` and `__dir__` serving the names imported under `if TYPE_CHECKING:` in `init_file`."""
    table = _type_checking_imports(init_file, package)
    here = Path(init_file).parent
    shadowed = [n for n in table if (here / f"{n}.py").exists() or (here / n / "__init__.py").exists()]
    if shadowed:  # importing that submodule would set the package attribute to the module, hiding the export
        raise TypeError(f"{package}: lazy exports {shadowed} share their names with submodules; rename them")

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, attribute = table[name]
        module = importlib.import_module(module_name)
        try:
            value = getattr(module, attribute)
        except AttributeError:  # `from package import submodule`
            value = importlib.import_module(f"{module_name}.{attribute}")
        namespace[name] = value  # later accesses skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
