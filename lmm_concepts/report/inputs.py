"""A run's outputs for the report and the exports: explanations, their store, dictionary, evaluations and model,
from objects or folders, checked to belong together (every error names both sides and the fix)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lmm_concepts.errors import InputError, MissingInputError
from lmm_concepts.grounding.explanations import Explanations
from lmm_concepts.grounding.store_access import describe_model, same_model, store_model  # noqa: F401  (re-exported)
from lmm_concepts.metrics.evaluate import EvaluationResults

PathLike = str | os.PathLike
EXPLANATIONS_FILE = "explanations.json"


class RunInputError(InputError):
    """Outputs that cannot be shown together (missing, or from different models); the message says which and why."""


def find_explanations(folder: PathLike) -> dict[str, Path]:
    """Explanations folders under `folder`, by name: the folder itself, its sub-folders (one per method), or those of
    its `explanations/` sub-folder (a demo's layout). An error lists what was looked for."""
    folder = Path(folder)
    if (folder / EXPLANATIONS_FILE).is_file():
        return {folder.resolve().name: folder}
    for base in (folder, folder / "explanations"):
        found = {p.parent.name: p.parent for p in sorted(base.glob(f"*/{EXPLANATIONS_FILE}"))}
        if found:
            return found
    raise MissingInputError(
        f"no explanations in {folder}: looked for {folder / EXPLANATIONS_FILE}, {folder}/*/{EXPLANATIONS_FILE} and "
        f"{folder}/explanations/*/{EXPLANATIONS_FILE} (folders written by `lmm-concepts ground` or Explanations.save), "
        f"and for {folder / 'results.json'} with {folder / 'panels.json'} (a saved report, written by "
        "`lmm-concepts demo` or lmm_concepts.report.write_report)"
    )


def load_explanations(path: PathLike, dictionary: Any = None) -> Explanations:
    """Explanations from a folder, with their dictionary: `dictionary` (an object or a folder), else the folder
    recorded by `lmm-concepts ground`; an error says how to give it when neither is there."""
    expl = Explanations.load(path)
    expl.dictionary = _dictionary(dictionary if dictionary is not None else expl.dictionary_path, path)
    if expl.dictionary is None:
        raise RunInputError(
            f"{path}: these explanations do not say which dictionary they were grounded from, and the samples' "
            "codes need it: pass the dictionary folder (--dictionary, or dictionaries=... in Python)"
        )
    _check_paired(expl, path)
    return expl


def _check_paired(expl: Explanations, where: Any) -> None:
    """The dictionary must be the one the explanations were grounded from (its W_dec, not only its shape)."""
    try:
        expl.paired()
    except ValueError as err:
        raise RunInputError(f"{where}: {err}") from err


def _dictionary(value: Any, where: PathLike) -> Any:
    from lmm_concepts.dictionary import load_dictionary

    if value is None or not isinstance(value, (str, os.PathLike)):
        return value
    if not (Path(value) / "cfg.json").is_file():
        raise RunInputError(f"{where}: the dictionary folder {value} holds no cfg.json (moved or deleted?); pass "
                            "the dictionary folder these explanations were grounded from")
    return load_dictionary(value)


def as_explanations(explanations: Any, dictionaries: Any = None) -> dict[str, Explanations]:
    """name -> Explanations holding a fitted `dictionary`, from an Explanations, a folder, or a mapping of them.

    `dictionaries`: one dictionary (object or folder) for a single explanations, or a mapping by name."""
    if isinstance(explanations, (Explanations, str, os.PathLike)):
        if isinstance(explanations, Explanations):
            name = Path(explanations.source).name if explanations.source else None  # as for its folder
            explanations = {name or getattr(explanations.dictionary, "architecture", None) or "concepts": explanations}
        else:
            explanations = find_explanations(explanations)
        if dictionaries is not None and not isinstance(dictionaries, Mapping):
            if len(explanations) != 1:
                raise RunInputError(f"one dictionary given for {len(explanations)} explanations "
                                    f"({', '.join(explanations)}): give a mapping name -> dictionary")
            dictionaries = {next(iter(explanations)): dictionaries}
    dictionaries = dictionaries or {}
    out: dict[str, Explanations] = {}
    for name, expl in explanations.items():
        if isinstance(expl, Explanations):
            if dictionaries.get(name) is not None:
                expl.dictionary = _dictionary(dictionaries[name], name)
            elif expl.dictionary is None and expl.dictionary_path:
                expl.dictionary = _dictionary(expl.dictionary_path, name)
            if expl.dictionary is None:
                raise RunInputError(f"explanations {name!r} hold no dictionary: ground them with the fitted "
                                    "dictionary, or pass it (dictionaries=...)")
            _check_paired(expl, name)
            out[str(name)] = expl
        else:
            out[str(name)] = load_explanations(expl, dictionaries.get(name))
    if not out:
        raise RunInputError("no explanations given")
    return out


def describe(name: str, expl: Explanations) -> str:
    """How errors name a set of explanations: its name, and the folder it was loaded from."""
    return f"explanations {name!r}" + (f" ({expl.source})" if expl.source else "")


def open_store(store: Any, explanations: Mapping[str, Explanations], role: str = "store"):
    """The store the explanations were grounded on: `store` (object or folder), else the one they recorded."""
    from lmm_concepts.extraction import RepresentationStore

    if store is not None and not isinstance(store, (str, os.PathLike)):
        return store
    name, expl = next(iter(explanations.items()))
    path = store if store is not None else expl.store
    if path is None:
        raise RunInputError(f"{describe(name, expl)} record no store: pass the store they were grounded on (--store)")
    if not (Path(path) / "manifest.json").is_file():
        recorded = "" if store is not None else ", the one they recorded,"
        raise RunInputError(
            f"{describe(name, expl)}: the {role} {path}{recorded} is missing (no manifest.json there); pass the "
            f"{role} the explanations go with (--{role.replace(' ', '_')})"
        )
    return RepresentationStore.open(path)


def check_store(explanations: Mapping[str, Explanations], store: Any, role: str = "store") -> None:
    """Each explanations' recorded model must be the model that built `store`."""
    theirs = store_model(store)
    for name, expl in explanations.items():
        if expl.model is None or theirs is None:
            continue
        if not same_model(expl.model, theirs):
            raise RunInputError(
                f"{describe(name, expl)} were grounded on a store of {describe_model(expl.model)} (store "
                f"{expl.store}), but the {role} {getattr(store, 'path', store)} belongs to "
                f"{describe_model(theirs)}: pass a {role} extracted with the same model"
            )


def check_model(model: Any, store: Any) -> None:
    """A loaded model must be the one that built `store` (its identity's weights digest)."""
    theirs = store_model(store)
    if theirs is None:
        return
    ours = model.identity()
    if not same_model(ours, theirs):
        raise RunInputError(
            f"the model given is {describe_model(ours)}, but the store {getattr(store, 'path', store)} was "
            f"extracted with {describe_model(theirs)}: load that model (--model ...)"
        )


def as_evaluations(results: Any, names: list[str]) -> dict[str, EvaluationResults]:
    """name -> EvaluationResults from one result (object or folder, for a single method), a folder of per-method
    folders, or a mapping of them."""
    if results is None:
        return {}
    if isinstance(results, EvaluationResults):
        return {names[0]: results} if len(names) == 1 else _one_for_many(names)
    if isinstance(results, (str, os.PathLike)):
        folder = Path(results)
        if (folder / "results.json").is_file():
            return {names[0]: EvaluationResults.load(folder)} if len(names) == 1 else _one_for_many(names)
        found = {n: EvaluationResults.load(folder / n) for n in names if (folder / n / "results.json").is_file()}
        if not found:
            raise RunInputError(
                f"no evaluation in {folder}: looked for {folder / 'results.json'} and "
                f"{folder}/<method>/results.json for {', '.join(names)} (folders written by `lmm-concepts evaluate`)"
            )
        return found
    return {str(k): v if isinstance(v, EvaluationResults) else EvaluationResults.load(v) for k, v in results.items()}


def _one_for_many(names: list[str]):
    raise RunInputError(f"one evaluation given for {len(names)} explanations ({', '.join(names)}): give a folder "
                        "holding one sub-folder per method, or a mapping name -> evaluation")
