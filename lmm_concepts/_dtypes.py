"""The one table of floating dtypes the package names: option name, torch dtype, safetensors code.

Options (`--dtype`, `--model_dtype`, a store's manifest) name a dtype by its torch name; safetensors headers by
their code ("F32"). Every conversion between the three goes through `FLOAT_DTYPES`.

Importing this module costs no torch (option groups of `--help` import it): `FLOAT_DTYPES`, the table with torch's
dtype objects, is built from `SAFETENSORS_CODES` on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lmm_concepts.errors import InputError

if TYPE_CHECKING:
    import torch

#: name -> safetensors code, in the order choices are listed; the name is also torch's (`torch.float32`)
SAFETENSORS_CODES: dict[str, str] = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}

#: name -> (torch dtype, safetensors code); built on first access (module `__getattr__`)
FLOAT_DTYPES: dict[str, tuple[torch.dtype, str]]


def _float_dtypes() -> dict[str, tuple[torch.dtype, str]]:
    """`FLOAT_DTYPES`, built on the first call and stored as the module attribute (later calls and reads reuse it)."""
    table = globals().get("FLOAT_DTYPES")
    if table is None:
        import torch

        table = {name: (getattr(torch, name), code) for name, code in SAFETENSORS_CODES.items()}
        globals()["FLOAT_DTYPES"] = table
    return table


def __getattr__(name: str) -> Any:
    if name == "FLOAT_DTYPES":
        return _float_dtypes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def torch_dtype(name: str, choices: Sequence[str] | None = None, option: str = "--dtype") -> torch.dtype:
    """The torch dtype named `name`, one of `choices` (default: any of the table), or an InputError naming
    `option` and the choices."""
    choices = tuple(SAFETENSORS_CODES) if choices is None else tuple(choices)
    if name not in choices:
        raise InputError(f"{option} {name!r}: choose one of {', '.join(choices)}")
    return _float_dtypes()[name][0]


def dtype_name(dtype: torch.dtype) -> str:
    """The table's name of a torch dtype ("float32")."""
    for name, (t, _) in _float_dtypes().items():
        if t == dtype:
            return name
    raise InputError(
        f"dtype {dtype} is not a floating dtype this package handles ({', '.join(SAFETENSORS_CODES)})"
    )


def safetensors_code(dtype: torch.dtype) -> str:
    """The safetensors header code of a torch dtype ("F32")."""
    return SAFETENSORS_CODES[dtype_name(dtype)]


def from_safetensors_code(code: str) -> torch.dtype:
    """The torch dtype of a safetensors header code; an InputError for codes outside the table (integers, F8)."""
    for t, c in _float_dtypes().values():
        if c == code:
            return t
    raise InputError(
        f"safetensors dtype {code!r} is not a floating dtype this package reads "
        f"({', '.join(SAFETENSORS_CODES.values())})"
    )
