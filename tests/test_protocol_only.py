"""The pipeline reaches a model only through the `LMM` protocol (`models/interface.py`), so every backend serves it.

Read from the source (AST): in extraction, grounding, metrics, steering, hooks, the report, the exports, the demo and
the command line, a model (any expression ending in `model` or `lmm`) is used only through the protocol's members;
no module names a backend class (`HookedLMM`, `BridgeLMM`, TransformerLens's `HookedTransformer`), and none calls
TransformerLens's `run_with_cache` / `run_with_hooks` on anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

from lmm_concepts.models.interface import LMM

PACKAGE = Path(__file__).resolve().parents[1] / "lmm_concepts"
PIPELINE = [
    *(PACKAGE / d for d in ("extraction", "grounding", "metrics", "report", "export", "demo")),
    *(PACKAGE / f for f in ("steering.py", "hooks.py", "cli.py")),
]
MODEL_NAMES = {"model", "lmm"}
BACKENDS = {"HookedLMM", "BridgeLMM", "HookedTransformer", "HookedSAETransformer", "TransformerBridge"}
TL_ONLY = {"run_with_cache", "run_with_hooks", "cfg", "lmm_cfg", "ln_final", "unembed", "to_str_tokens", "blocks",
           "embed", "generate_from_inputs"}
PROTOCOL = {n for n in vars(LMM) if not n.startswith("_")} | set(LMM.__annotations__)
NOT_AN_LMM = {  # (file, expression) -> what it is
    ("lmm_concepts/metrics/clipscore.py", "self.model"): "the scorer's open_clip CLIP",
    ("*", "cfg.model"): "a command's model option group (ModelSpec), which loads the LMM",
}


def pipeline_files() -> list[Path]:
    return sorted(f for p in PIPELINE for f in ([p] if p.is_file() else p.rglob("*.py")))


def _terminal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def violations(path: Path) -> list[str]:
    found = []
    where = path.relative_to(PACKAGE.parent) if path.is_relative_to(PACKAGE.parent) else path
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and _terminal(node.value) in MODEL_NAMES and node.attr not in PROTOCOL
                and not {(str(where), ast.unparse(node.value)), ("*", ast.unparse(node.value))} & set(NOT_AN_LMM)):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)} (not a member of the LMM protocol)")
        if isinstance(node, ast.Attribute) and node.attr in {"run_with_cache", "run_with_hooks"}:
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)} (TransformerLens only: use capture / logits)")
        names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
        names += [node.id] if isinstance(node, ast.Name) else []
        names += [node.attr] if isinstance(node, ast.Attribute) else []
        found += [f"{where}:{node.lineno}: {name} (a backend class)" for name in names if name in BACKENDS]
    return found


def test_the_pipeline_uses_a_model_through_the_protocol_only():
    files = pipeline_files()
    assert len(files) > 30  # the folders above exist and hold the pipeline
    found = [v for f in files for v in violations(f)]
    assert not found, "\n".join(found)


def test_the_checker_sees_a_backend_member(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(state, model):\n    n = state.model.cfg.n_layers\n    model.run_with_hooks(x)\n"
                   "    return model.capture(x, ['a']), HookedLMM\n")
    assert [v.split(": ", 1)[1] for v in violations(bad)] == [
        "state.model.cfg (not a member of the LMM protocol)",
        "model.run_with_hooks (not a member of the LMM protocol)",
        "model.run_with_hooks (TransformerLens only: use capture / logits)",
        "HookedLMM (a backend class)",
    ]
    assert TL_ONLY.isdisjoint(PROTOCOL) and {"capture", "logits", "final_norm", "identity"} <= PROTOCOL
