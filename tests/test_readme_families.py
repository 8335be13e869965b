"""README.md's table of model families is what the family specs' `describe()` rows give: edit a family's file,
then regenerate the table (`python -m lmm_concepts.models.bridge.table --write README.md`)."""

from __future__ import annotations

import re
from pathlib import Path

from lmm_concepts.models.bridge import supported_architectures
from lmm_concepts.models.bridge.family import registered_families
from lmm_concepts.models.bridge.table import BEGIN, COLUMNS, END, families_table, readme_table

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "regenerate it with `python -m lmm_concepts.models.bridge.table --write README.md`"


def test_the_readme_table_is_what_describe_gives():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = readme_table(readme)
    assert found is not None, (
        f"README.md lacks the families table's markers ({BEGIN} ... {END}); add them and {REGENERATE}"
    )
    expected = families_table()
    if found != expected:
        old, new = set(found.splitlines()), set(expected.splitlines())
        changed = [f"- {line}" for line in found.splitlines() if line not in new]
        changed += [f"+ {line}" for line in expected.splitlines() if line not in old]
        raise AssertionError(
            f"README.md's families table differs from FamilySpec.describe(); {REGENERATE}.\n"
            + "\n".join(changed)
        )


def test_every_served_architecture_has_a_row_of_every_column():
    """One row per family spec, each architecture named, and no cell's text breaking the row (a `|` in a token
    such as `<|image_pad|>` is escaped)."""
    table = families_table()
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]  # the header row first
    assert len(rows) == len(registered_families())
    assert all(f"`{arch}`" in table for arch in supported_architectures())
    assert all(len(re.split(r"(?<!\\)\|", row)) == len(COLUMNS) + 2 for row in rows)
