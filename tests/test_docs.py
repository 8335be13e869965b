"""The repository refers only to files its users have: no docstring or document cites the development notes
(DESIGN.md, STYLE.md, HELPERS.md) or a path on the machine they were written on; the notation lives in docs/design.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOREIGN = re.compile(r"DESIGN\.md|STYLE\.md|HELPERS\.md|/work/")


def test_no_reference_to_files_users_do_not_have():
    files = [p for d in ("lmm_concepts", "docs", "tutorials", "benchmarks", "scripts") for p in (ROOT / d).rglob("*")
             if p.is_file() and p.suffix in {".py", ".md", ".txt", ".html", ".yaml", ".sh", ""}]
    files += [ROOT / "README.md", ROOT / "pyproject.toml"]
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in files
             for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if FOREIGN.search(line)]
    assert not found, "\n".join(found)


def test_the_design_notes_cover_the_notation_the_interface_and_the_hook_names():
    from lmm_concepts.models.interface import FINAL_HOOK, LEGACY_FINAL_HOOK, LMM

    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    assert all(s in design for s in ("| Z |", "| V |", "| W_dec |", "λ = 2·l1", "| A, B |", FINAL_HOOK, LEGACY_FINAL_HOOK))
    members = {n for n in vars(LMM) if not n.startswith("_")} | set(LMM.__annotations__)
    assert not [m for m in members if f"`{m}" not in design], "LMM members missing from docs/design.md"
