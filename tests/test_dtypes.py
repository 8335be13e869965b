"""One dtype table (`lmm_concepts._dtypes`): every name <-> torch dtype <-> safetensors code conversion uses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lmm_concepts._dtypes import (
    FLOAT_DTYPES,
    dtype_name,
    from_safetensors_code,
    safetensors_code,
    torch_dtype,
)
from lmm_concepts.errors import InputError
from lmm_concepts.extraction.shards import store_dtype

PACKAGE = Path(__file__).resolve().parents[1] / "lmm_concepts"


@pytest.mark.parametrize("name", list(FLOAT_DTYPES))
def test_codes_are_safetensors_own(name, tmp_path):
    dtype = torch_dtype(name)
    save_file({"x": torch.zeros(2, 3, dtype=dtype)}, tmp_path / "x.safetensors")
    with safe_open(str(tmp_path / "x.safetensors"), framework="pt") as f:
        code = f.get_slice("x").get_dtype()
    assert (
        code == safetensors_code(dtype) and from_safetensors_code(code) == dtype and dtype_name(dtype) == name
    )


def test_bad_names_are_refused_with_the_choices():
    with pytest.raises(
        InputError, match="--dtype 'float8': choose one of float32, float16, bfloat16, float64"
    ):
        torch_dtype("float8")
    with pytest.raises(InputError, match="choose one of float32, float16, bfloat16$"):
        store_dtype("float64")  # a store holds 32- and 16-bit floats only
    with pytest.raises(InputError, match="'I64' is not a floating dtype"):
        from_safetensors_code("I64")


def test_no_other_module_spells_a_dtype_table():
    # a mapping written out again (name or safetensors code -> dtype, or getattr(torch, name)) outside _dtypes.py
    pattern = re.compile(r'"(F16|BF16|F32|F64)"|getattr\(torch,|torch\.(float16|bfloat16|float64)\s*:')
    found = [
        f"{p.relative_to(PACKAGE)}:{i}"
        for p in PACKAGE.rglob("*.py")
        if p.name != "_dtypes.py"
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, found
