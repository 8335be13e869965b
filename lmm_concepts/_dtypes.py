"""The one table of floating dtypes the package names: option name, torch dtype, safetensors code.

Options (`--dtype`, `--model_dtype`, a store's manifest) name a dtype by its torch name; safetensors headers by
their code ("F32"). Every conversion between the three goes through `FLOAT_DTYPES`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lmm_concepts.errors import InputError

#: name -> (torch dtype, safetensors code)
FLOAT_DTYPES: dict[str, tuple[torch.dtype, str]] = {
    "float32": (torch.float32, "F32"),
    "float16": (torch.float16, "F16"),
    "bfloat16": (torch.bfloat16, "BF16"),
    "float64": (torch.float64, "F64"),
}


def torch_dtype(name: str, choices: Sequence[str] | None = None, option: str = "--dtype") -> torch.dtype:
    """The torch dtype named `name`, one of `choices` (default: any of the table), or an InputError naming
    `option` and the choices."""
    choices = tuple(FLOAT_DTYPES) if choices is None else tuple(choices)
    if name not in choices:
        raise InputError(f"{option} {name!r}: choose one of {', '.join(choices)}")
    return FLOAT_DTYPES[name][0]


def dtype_name(dtype: torch.dtype) -> str:
    """The table's name of a torch dtype ("float32")."""
    for name, (t, _) in FLOAT_DTYPES.items():
        if t == dtype:
            return name
    raise InputError(
        f"dtype {dtype} is not a floating dtype this package handles ({', '.join(FLOAT_DTYPES)})"
    )


def safetensors_code(dtype: torch.dtype) -> str:
    """The safetensors header code of a torch dtype ("F32")."""
    return FLOAT_DTYPES[dtype_name(dtype)][1]


def from_safetensors_code(code: str) -> torch.dtype:
    """The torch dtype of a safetensors header code; an InputError for codes outside the table (integers, F8)."""
    for t, c in FLOAT_DTYPES.values():
        if c == code:
            return t
    raise InputError(
        f"safetensors dtype {code!r} is not a floating dtype this package reads "
        f"({', '.join(c for _, c in FLOAT_DTYPES.values())})"
    )
