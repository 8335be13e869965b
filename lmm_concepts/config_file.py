"""`--config <file.yaml|file.json>`: a command's options read from a file; flags on the command line override it.

The file holds the command's options by their names, as on the command line (`n_concepts` or `n-concepts`):

    # fit.yaml                                  lmm-concepts fit --config fit.yaml --n-concepts 30
    store: runs/dog
    out: runs/dog/dico
    n_concepts: 20
    method: semi_nmf

An option of a nested group (the model options `model`, `device`, ... of `ground`, `evaluate`, ...) is given either
flat, as on the command line, or under the group's field name (`model: {model: toy, device: cpu}`), which is how
the JSON a command saves beside its results (`dataclasses.asdict` of its config, e.g. `fit_config.json`) nests it:
such a file is a valid `--config`. A key that is no option of the command is refused, naming it and the valid ones;
so is a value of the wrong type. Only `json` and `yaml` are imported here: reading a config costs no heavy import.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmm_concepts.errors import InputError

OPTION = "--config"
SUFFIXES = (".yaml", ".yml", ".json")


def split_config_option(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the `--config` path or None, argv without it); `--config PATH` and `--config=PATH` both work."""
    rest: list[str] = []
    path: str | None = None
    args = iter(argv)
    for arg in args:
        if arg == OPTION:
            path = next(args, None)
            if path is None or path.startswith("-"):
                raise InputError(f"{OPTION} needs a file: {OPTION} options.yaml (or .json)")
        elif arg.startswith(OPTION + "="):
            path = arg[len(OPTION) + 1 :]
        else:
            rest.append(arg)
    return path, rest


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a .yaml/.yml/.json file holds (an empty file is an empty mapping)."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise InputError(f"{OPTION} {path}: give a {', '.join(SUFFIXES)} file")
    if not path.is_file():
        raise InputError(f"{OPTION} {path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text) if text.strip() else {}
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as err:  # json.JSONDecodeError or yaml.YAMLError (yaml is imported only when needed)
        raise InputError(f"{OPTION} {path}: cannot parse it ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise InputError(f"{OPTION} {path}: expected a mapping of option: value, got {type(data).__name__}")
    return data


def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def _is_group(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def options(cls: type, prefix: tuple[str, ...] = ()) -> dict[str, tuple[tuple[str, ...], Any]]:
    """Option name -> (path of fields to it, its type), nested groups flattened as on the command line."""
    found: dict[str, tuple[tuple[str, ...], Any]] = {}
    for name, (_, hint) in _fields(cls).items():
        if _is_group(hint):
            found.update(options(hint, (*prefix, name)))
        else:
            found[name] = ((*prefix, name), hint)
    return found


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (list, tuple, Sequence):
        args = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value) if args else True
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a type we do not check here: the command checks its value


def _as_typed(value: Any, hint: Any) -> Any:
    """`value` as the command line would have read its text: YAML reads `l1: 0.5` and `layers: [final, 3]` as
    numbers where the option takes text, and `lr: 1e-3` (no dot) as text where it takes a float."""
    args = typing.get_args(hint)
    if isinstance(value, list) and typing.get_origin(hint) in (list, tuple, Sequence) and args:
        return [_as_typed(v, args[0]) for v in value]
    if _type_ok(value, hint):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and _type_ok(str(value), hint):
        return str(value)
    if isinstance(value, str) and _type_ok(1.0, hint):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _choices(cls: type, path: tuple[str, ...]) -> Any:
    """The `choices` an option declares (simple_parsing's `field(choices=...)`, e.g. the registered learners), or None."""
    for part in path[:-1]:
        cls = _fields(cls)[part][1]
    field, _ = _fields(cls)[path[-1]]
    return field.metadata.get("custom_args", {}).get("choices")


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def config_defaults(cls: type, data: dict[str, Any], source: str = OPTION) -> dict[str, Any]:
    """`data` (a config file's mapping) as the nested defaults of dataclass `cls`, every key and value checked."""
    flat = options(cls)
    out: dict[str, Any] = {}

    def put(path: tuple[str, ...], hint: Any, key: str, value: Any) -> None:
        value = _as_typed(value, hint)
        if not _type_ok(value, hint):
            raise InputError(
                f"{source}: {key} = {value!r} is not a valid value (expected {_hint_name(hint)})"
            )
        choices = _choices(cls, path)
        if choices is not None and any(
            v not in choices for v in (value if isinstance(value, list) else [value])
        ):
            raise InputError(
                f"{source}: {key} = {value!r} is not a valid value (choose one of {', '.join(map(str, choices))})"
            )
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = list(value) if isinstance(value, list) else value

    def walk(cls_: type, items: dict[str, Any], prefix: tuple[str, ...]) -> None:
        fields = _fields(cls_)
        unknown = []
        for raw_key, value in items.items():
            key = str(raw_key).replace("-", "_")
            field = fields.get(key)
            if field is not None and _is_group(field[1]) and isinstance(value, dict):
                walk(field[1], value, (*prefix, key))
            elif field is not None and not _is_group(field[1]):
                put((*prefix, key), field[1], str(raw_key), value)
            elif not prefix and key in flat:  # an option of a nested group, given flat as on the command line
                put(*flat[key], str(raw_key), value)
            else:
                unknown.append(str(raw_key))
        if unknown:
            valid = sorted(options(cls_)) if prefix else sorted(flat)
            where = f" (in {'.'.join(prefix)})" if prefix else ""
            raise InputError(
                f"{source}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}{where}; "
                f"valid options: {', '.join(valid)}"
            )

    walk(cls, data, ())
    return out
