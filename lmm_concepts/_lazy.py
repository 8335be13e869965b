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
import importlib.util
import sys
import types
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


class _LazyPackage(types.ModuleType):
    """A package whose export shares its name with a submodule (`extraction.extract`, the function in the module
    of that name) keeps the export: the import system binds a submodule on its package once it is imported, which
    would hide the export; the binding is turned into the export, as an eager `from .extract import extract` did."""

    _lazy_table: dict[str, tuple[str, str]]

    def __setattr__(self, name: str, value: Any) -> None:
        table = self.__dict__.get("_lazy_table", {})
        if (
            isinstance(value, types.ModuleType)
            and table.get(name) == (value.__name__, name)
            and hasattr(value, name)
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)


def lazy_exports(
    package: str, init_file: str, namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module `__getattr__` and `__dir__` serving the names imported under `if TYPE_CHECKING:` in `init_file`."""
    table = _type_checking_imports(init_file, package)
    module = sys.modules[package]
    module.__class__ = _LazyPackage
    module.__dict__["_lazy_table"] = table

    def __getattr__(name: str) -> Any:
        if name not in table:
            # a subpackage or submodule (`lc.grounding.WordFilter`): an eager __init__ had imported it already
            if importlib.util.find_spec(f"{package}.{name}") is not None:
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, attribute = table[name]
        source = importlib.import_module(module_name)
        try:
            value = getattr(source, attribute)
        except AttributeError:  # `from package import submodule`
            value = importlib.import_module(f"{module_name}.{attribute}")
        namespace[name] = value  # later accesses skip this function
        return value

    def __dir__() -> list[str]:
        return sorted((set(namespace) | set(table)) - {"_lazy_table"})

    return __getattr__, __dir__
