"""The report of a real run (extract -> fit -> ground -> evaluate written by the CLI), concept activations along the
captions, and the report's bad-input errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.cli import main
from tests._report_fixtures import EVIL
from tests._run_fixtures import MODEL, make_run
from tests.test_report import browser, check_page_in_browser  # noqa: F401  (browser is a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


def test_caption_activations_match_the_store(run):
    dico = lc.load_dictionary(run.dictionary)
    ids = run.store.sample_ids[:4]
    acts = lc.caption_activations(run.model, dico, run.store, ids)
    assert [a.sample_id for a in acts] == ids
    V = dico.encode(run.store.layer("final"))
    for a in acts:
        row = run.store.sample_ids.index(a.sample_id)
        meta = run.store.metadata[row]
        assert a.acts.shape == (len(a.tokens), 3) and len(a.token_ids) == len(a.tokens)
        # the stored token's codes are the store's codes: the dictionary applied to the same vector
        torch.testing.assert_close(a.acts[a.position], V[row], rtol=1e-4, atol=1e-4)
        # generated tokens decode to the stored caption; 4 visual tokens, then the prompt
        generated = [i for i, g in zip(a.token_ids, a.is_generated.tolist(), strict=True) if g]
        assert run.model.tokenizer.decode(generated, skip_special_tokens=True) == meta["generated"] == a.caption
        assert a.is_visual.tolist()[:4] == [True] * 4 and a.kinds[4] == "prompt"
        collapsed = a.collapsed()
        assert collapsed.tokens[0] == "<image ×4>" and len(collapsed.tokens) == len(a.tokens) - 3
        assert collapsed.tokens[collapsed.position] == a.tokens[a.position]
        torch.testing.assert_close(collapsed.acts[0], a.acts[:4].max(0).values)


def test_report_of_a_real_run_renders_in_chromium(run, tmp_path, browser):  # noqa: F811
    out = tmp_path / "page"
    main(["report", str(run.explanations), "--evaluation", str(run.evaluation), "--out", str(out), "--n_show", "5",
          "--captions", "3", *MODEL])
    results = json.loads((out / "results.json").read_text())
    (name,) = results["methods"]
    metrics = results["methods"][name]
    assert metrics["overlap"] is not None and metrics["relative_error"] > 0 and results["word"] == run.word
    assert results["layer"] == "final" and results["n_train"] == len(run.store)
    panels = json.loads((out / "panels.json").read_text())["methods"][0]
    assert len(panels["concepts"]) == 3 and len(panels["images"]) == 5 and len(panels["captions"]) == 3
    assert all(len(row) == 3 for c in panels["captions"] for row in c["acts"])
    html = (out / "report.html").read_text()
    assert EVIL not in html and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html  # the dataset's captions
    state = check_page_in_browser(browser, out / "report.html")
    assert state["n_concepts"] == 3
    # the tokens are coloured, and the concept selector recolours them
    before = browser.execute_script(
        "return Array.from(document.querySelectorAll('.caption-view span.tok')).map(s => s.style.backgroundColor)")
    assert len(before) == sum(len(c["tokens"]) for c in panels["captions"])
    after = browser.execute_script("""
        const select = document.querySelector('select.caption-concept');
        const chosen = Array.from(select.options).find(o => o.value !== 'top' && o.value !== String(
            document.querySelector('.caption-view').dataset.top));
        select.value = chosen.value; select.dispatchEvent(new Event('change'));
        return [Array.from(document.querySelectorAll('.caption-view span.tok')).map(s => s.style.backgroundColor),
                document.querySelector('.caption-view .shown').textContent, chosen.value];""")
    assert after[0] != before and after[1] == f"#{after[2]}"

    # the Python API is the same code path: same numbers, same panels
    again = lc.make_report(lc.Explanations.load(run.explanations), run.store, run.evaluation, out=tmp_path / "py",
                      dictionaries=run.dictionary, model=run.model, n_captions=3, n_show=5)
    assert json.loads((again.parent / "panels.json").read_text())["methods"][0] == panels


def test_report_without_model_or_evaluation_says_what_is_missing(run, tmp_path):
    path = lc.make_report(run.explanations, out=tmp_path / "bare", n_show=2)
    results = json.loads((tmp_path / "bare" / "results.json").read_text())
    assert any("pass the model" in n for n in results["notes"])
    assert "No metrics" in path.read_text()


def test_report_bad_input(run, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"no explanations in .*empty: looked for .*explanations\.json.*"
                                                r"\*/explanations\.json.*results\.json"):
        main(["report", str(tmp_path / "empty")])
    moved = tmp_path / "moved"
    shutil.copytree(run.explanations, moved)
    meta = json.loads((moved / "explanations.json").read_text())
    meta["store"] = str(tmp_path / "gone")
    (moved / "explanations.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match=rf"explanations 'moved' \({moved}\).*store {tmp_path / 'gone'}.*missing"):
        main(["report", str(moved)])
    meta["dictionary_path"] = None
    meta["store"] = str(run.store.path)
    (moved / "explanations.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="do not say which dictionary.*--dictionary"):
        main(["report", str(moved)])
