"""sae-lens learns our architectures whichever of `lmm_concepts` and `sae_lens` is imported first.

sae-lens keeps a plain registry (`sae_lens.registry.register_sae_class`) and reads no entry point, so a dictionary
saved by us loads with `SAE.load_from_disk` only once our classes are registered. Importing them imports sae-lens
and torch (~5-20 s), which `import lmm_concepts` must not cost (`lmm-concepts --help` would). So:

- `sae_lens` already imported: `lmm_concepts.dictionary.saes` is imported now (it registers its classes at its end);
- otherwise a finder on `sys.meta_path` waits for `import sae_lens` (or of any of its submodules, which imports the
  package first), lets it finish, then imports `lmm_concepts.dictionary.saes`, and removes itself.

Importing `lmm_concepts.dictionary.saes` directly registers as well, so our own code never depends on the hook.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from typing import Any

SAE_LENS = "sae_lens"
OUR_SAES = "lmm_concepts.dictionary.saes"


def _import_our_saes() -> None:
    # If OUR_SAES is being imported right now (its import pulled in sae-lens), it registers when it finishes.
    if OUR_SAES not in sys.modules:
        importlib.import_module(OUR_SAES)


class _RegisteringLoader(importlib.abc.Loader):
    """sae-lens's own loader, then our registration once the package has run."""

    def __init__(self, loader: Any, finder: _AfterSaeLens):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        if module.__spec__ is not None:  # what importlib.resources and reloads read is sae-lens's own loader
            module.__spec__.loader = self._loader
        module.__loader__ = self._loader
        self._finder.remove()
        _import_our_saes()

    def __getattr__(self, name: str) -> Any:
        # get_resource_reader, is_package, ... asked during sae-lens's own import
        return getattr(self._loader, name)


class _AfterSaeLens(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != SAE_LENS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader, self)
                return spec
        return None

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def register_with_sae_lens() -> None:
    """Register our sae-lens architectures now if sae-lens is imported, else right after it is."""
    if SAE_LENS in sys.modules:
        _import_our_saes()
    elif not any(isinstance(f, _AfterSaeLens) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterSaeLens())
