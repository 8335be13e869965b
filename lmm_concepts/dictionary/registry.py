"""The learner registry: one entry per concept learner, from which every consumer derives its list of methods.

    register_learner("semi_nmf", "lmm_concepts.dictionary.semi_nmf:SemiNMF", label="Semi-NMF",
                     sae="lmm_concepts.dictionary.saes:SEMI_NMF_CLASSES")

An entry holds what the consumers need to know about a learner, each fact stated once:
  - `name`     the method name on the command line (`fit --method`, `sweep --learner`, `demo --methods`) and in
               results (`results.json["methods"]`); `label` is how the report titles it;
  - `cls`      the `ConceptDictionary` subclass; `options` (the keyword parameters of its constructor), `signed`
               (codes may be negative) and `architecture` (the sae-lens architecture it exports to) are read
               from it, so they cannot disagree with the class;
  - `streaming` it fits from a row source without loading the data (out of core, data-parallel under torchrun);
  - `demo`     the demo compares it unless `--methods` says otherwise;
  - `sae`      the sae-lens classes (`SAEClasses`) of an architecture this learner introduces:
               `register_architectures()` registers them with sae-lens (on import for the built-ins; call it again
               after registering one), and a plain SAE of that architecture (saved without our metadata) loads into
               this learner.

`cls` and `sae` are given as objects or as "module:qualname" strings (a `SAEClasses` object, or a function
returning one, for `sae`), imported on first use. The built-ins are registered by strings, so the registry lists
them (`learner_names`, `fit --help`, the demo's methods, the report's labels) without importing torch or sae-lens;
a learner's class, and its checks (a `ConceptDictionary` with an `architecture`, the same as its SAE config's), come
when a consumer first needs them. `register_architectures` reads each architecture's name from its SAE config
(`config.architecture()`), so registering with sae-lens imports no learner module.

The built-in learners are registered by `lmm_concepts.dictionary` (its `__init__`), in the order the command line
lists them; adding a learner is its file plus one `register_learner` call there. `registered_learner` registers
one for the length of a `with` block (tests, experiments) and removes it afterwards.

This module imports no learner: every learner module may import it, and it is a leaf of the import graph.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

from lmm_concepts.errors import InputError

#: constructor parameters every learner takes that are settings of the run, not options of the method
RUN_SETTINGS = ("device", "dtype")


class SAEClasses(NamedTuple):
    """The sae-lens classes of one architecture: inference SAE and its config, training SAE and its config (or None)."""

    sae: type
    config: type
    training_sae: type | None = None
    training_config: type | None = None

    @property
    def architecture(self) -> str:
        """The architecture's name, as its config states it (sae-lens's `SAEConfig.architecture()`)."""
        return self.config.architecture()


def qualified_name(obj: Any) -> str:
    """ "module:qualname" of a class or function: how a registry entry names what it holds."""
    return f"{obj.__module__}:{obj.__qualname__}"


def _check_target(target: str, what: str) -> None:
    module, sep, name = target.partition(":")
    if not (sep and module and name):
        raise InputError(f'{what} {target!r}: name it as "package.module:Name"')


def import_target(target: str, what: str) -> Any:
    """The object a "module:qualname" string names, or an InputError that starts with `what`."""
    _check_target(target, what)
    module, _, name = target.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise InputError(f"{what} {target!r} cannot be imported ({type(err).__name__}: {err})") from err
    return obj


class Learner:
    """One registered learner (see the module docstring for each field). `cls` and `sae` are imported on first use."""

    def __init__(
        self,
        name: str,
        cls: type | str,
        label: str,
        streaming: bool = False,
        demo: bool = False,
        sae: SAEClasses | str | None = None,
    ):
        self.name = name
        self.label = label
        self.streaming = streaming
        self.demo = demo
        #: "module:qualname" of the learner class (known without importing it)
        self.target = cls if isinstance(cls, str) else qualified_name(cls)
        self._cls = cls
        self._sae = sae

    def __repr__(self) -> str:
        return (
            f"Learner({self.name!r}, {self.target!r}, label={self.label!r}, streaming={self.streaming}, "
            f"demo={self.demo}, sae={self.has_sae})"
        )

    @property
    def cls(self) -> type:
        """The learner class (imported on first use, then checked: it must declare its sae-lens `architecture`)."""
        if isinstance(self._cls, str):
            self._cls = _checked_class(import_target(self._cls, f"learner {self.name!r}: class"))
        return self._cls

    @property
    def has_sae(self) -> bool:
        """True when the learner introduces a sae-lens architecture of its own (known without importing it)."""
        return self._sae is not None

    @property
    def sae(self) -> SAEClasses | None:
        """The sae-lens classes of the architecture the learner introduces (imported on first use), or None."""
        if isinstance(self._sae, str):
            obj = import_target(self._sae, f"learner {self.name!r}: sae")
            if callable(obj) and not isinstance(obj, SAEClasses):
                obj = obj()
            if not isinstance(obj, SAEClasses):
                raise InputError(
                    f"learner {self.name!r}: sae {self._sae!r} is a {type(obj).__name__}, not SAEClasses "
                    "(or a function returning one)"
                )
            self._sae = obj
        return self._sae

    def check_sae(self) -> None:
        """Refuse a learner whose class exports to another architecture than the one its SAE classes define."""
        if self.sae is not None and self.cls.architecture != self.sae.architecture:
            raise InputError(
                f"learner {self.name!r}: {self.cls.__qualname__}.architecture is {self.cls.architecture!r} but its "
                f"sae classes define {self.sae.architecture!r}; make them agree"
            )

    @property
    def architecture(self) -> str:
        """The sae-lens architecture the learner exports to (a class attribute of the learner)."""
        return self.cls.architecture

    @property
    def signed(self) -> bool:
        """True when codes may be negative (PCA); False for non-negative codes."""
        return bool(self.cls.signed_codes)

    @property
    def options(self) -> tuple[str, ...]:
        """The method's options: its constructor's keyword parameters, less `n_concepts` and the run settings."""
        return tuple(name for name in self._parameters() if name not in ("n_concepts", *RUN_SETTINGS))

    def _parameters(self) -> list[str]:
        sig = inspect.signature(self.cls.__init__)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind in kinds]

    def takes(self, option: str) -> bool:
        return option in self._parameters()

    def check_options(self, given: Mapping[str, Any], flags: Mapping[str, str] | None = None) -> None:
        """Refuse options the caller set that this learner does not take (rather than ignore them silently).

        `flags` maps an option to how the caller spells it (e.g. "max_epochs" -> "--epochs") for the message.
        """
        flags = flags or {}
        refused = [name for name in given if not self.takes(name)]
        if refused:
            spelled = ", ".join(flags.get(name, name) for name in refused)
            takers = {name: [n for n, entry in _LEARNERS.items() if entry.takes(name)] for name in refused}
            who = "; ".join(
                f"{flags.get(k, k)} is taken by {', '.join(v) or 'no learner'}" for k, v in takers.items()
            )
            raise InputError(
                f"the {self.name} learner does not take {spelled} ({who}): leave it out or choose another learner"
            )

    def build(
        self,
        n_concepts: int,
        given: Mapping[str, Any] | None = None,
        shared: Mapping[str, Any] | None = None,
        flags: Mapping[str, str] | None = None,
    ):
        """A fresh, unfitted learner with K = `n_concepts`.

        `given`: options the caller set explicitly; one the learner does not take is refused (`InputError`).
        `shared`: settings offered to every learner (device, dtype, a run's seed); each learner takes those its
        constructor has and leaves the others.
        """
        given = dict(given or {})
        self.check_options(given, flags)
        kwargs = {k: v for k, v in (shared or {}).items() if self.takes(k)}
        return self.cls(n_concepts, **{**kwargs, **given})


def _checked_class(cls: Any) -> type:
    if not isinstance(cls, type) or not isinstance(getattr(cls, "architecture", None), str):
        raise InputError(
            f"{getattr(cls, '__qualname__', cls)} has no `architecture`: register ConceptDictionary subclasses only"
        )
    return cls


_LEARNERS: dict[str, Learner] = {}


def register_learner(
    name: str,
    cls: type | str,
    *,
    label: str | None = None,
    streaming: bool = False,
    demo: bool = False,
    sae: SAEClasses | str | None = None,
) -> Learner:
    """Add a learner under `name` (see the module docstring); a name already taken by another class is refused.

    `cls` (and `sae`) may be "module:qualname" strings, imported on first use; a class given as an object is
    checked now."""
    if not name.isidentifier():
        raise InputError(f"a learner's name must be an identifier (letters, digits, _), got {name!r}")
    if isinstance(cls, str):
        _check_target(cls, f"learner {name!r}: class")
    else:
        _checked_class(cls)
    if isinstance(sae, str):
        _check_target(sae, f"learner {name!r}: sae")
    entry = Learner(name, cls, label or name, streaming=streaming, demo=demo, sae=sae)
    old = _LEARNERS.get(name)
    if old is not None and old.target != entry.target:
        raise InputError(
            f"learner name {name!r} is already registered to {old.target.rpartition(':')[2]}; choose another"
        )
    if not isinstance(cls, str) and isinstance(sae, SAEClasses):  # both at hand: check them now
        entry.check_sae()
        other = [
            e.name
            for e in _LEARNERS.values()
            if e.has_sae and e.name != name and e.sae is not None and e.sae.architecture == sae.architecture
        ]
        if other:
            raise InputError(
                f"architecture {sae.architecture!r} is already introduced by learner {other[0]!r}"
            )
    _LEARNERS[name] = entry
    return entry


def unregister_learner(name: str) -> None:
    """Remove a learner (one added by a test or an experiment)."""
    _LEARNERS.pop(name, None)


@contextmanager
def registered_learner(name: str, cls: type | str, **kwargs) -> Iterator[Learner]:
    """`register_learner(name, cls, **kwargs)` for the length of the block; removed afterwards (a previous entry
    under the same name is put back)."""
    previous = _LEARNERS.get(name)
    entry = register_learner(name, cls, **kwargs)
    try:
        yield entry
    finally:
        unregister_learner(name)
        if previous is not None:
            _LEARNERS[name] = previous


def learners() -> dict[str, Learner]:
    """Every registered learner by name, in registration order (a copy)."""
    return dict(_LEARNERS)


def learner_names() -> list[str]:
    return list(_LEARNERS)


def get_learner(name: str, flag: str = "method") -> Learner:
    """The learner registered as `name`, or an `InputError` that lists the choices (as option `--{flag}`)."""
    entry = _LEARNERS.get(name)
    if entry is None:
        raise InputError(f"unknown --{flag} {name!r}: choose one of {', '.join(_LEARNERS)}")
    return entry


def method_label(name: str) -> str:
    """The report's title of a method: its learner's label, or the name itself for anything else."""
    entry = _LEARNERS.get(name)
    return entry.label if entry is not None else name


def architectures() -> dict[str, SAEClasses]:
    """The sae-lens architectures our learners introduce: architecture name -> its classes.

    Imports each introducing learner's SAE classes, not the learner itself (`SAEClasses.architecture`)."""
    out: dict[str, SAEClasses] = {}
    introduced_by: dict[str, str] = {}
    for e in list(_LEARNERS.values()):
        if not e.has_sae:
            continue
        classes = e.sae
        assert classes is not None
        arch = classes.architecture
        if arch in introduced_by:
            raise InputError(
                f"architecture {arch!r} is introduced by both learner {introduced_by[arch]!r} and {e.name!r}: "
                "one architecture belongs to one learner"
            )
        introduced_by[arch] = e.name
        out[arch] = classes
    return out


def learner_for_architecture(architecture: str) -> type | None:
    """The learner a plain SAE of `architecture` loads into: the one that introduced it (None for sae-lens's own)."""
    for e in list(_LEARNERS.values()):
        if e.has_sae and e.sae is not None and e.sae.architecture == architecture:
            e.check_sae()
            return e.cls
    return None


class NameChoices:
    """The registered names as a live sequence, for argparse `choices`: a learner registered after the options were
    declared (a plugin, a test) is still accepted and listed in `--help`."""

    def __iter__(self) -> Iterator[str]:
        return iter(list(_LEARNERS))

    def __contains__(self, name: object) -> bool:
        return name in _LEARNERS

    def __len__(self) -> int:
        return len(_LEARNERS)

    def __repr__(self) -> str:
        return repr(list(_LEARNERS))
