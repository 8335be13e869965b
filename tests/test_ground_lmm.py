"""Grounding and faithfulness on a real (tiny) HookedLMM store built by `lmm_concepts.extract`."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.grounding import WordFilter
from lmm_concepts.metrics.faithfulness import EFFECTS
from lmm_concepts.metrics.sequences import store_sequences
from tests._extract_models import WORDS, noise_images, tiny_lmm


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    model = tiny_lmm()
    images = noise_images(16)
    texts = model.generate(images, max_new_tokens=5).texts
    word = Counter(w for t in texts for w in set(t.split())).most_common(1)[0][0]
    data = [(f"img{i}", im, [f"a {word}"]) for i, im in enumerate(images)]
    out = tmp_path_factory.mktemp("store")
    store = lc.extract(model, data, word, ["final", 0], out, batch_size=8, max_new_tokens=5, progress=False)
    return model, store, word


def test_ground_and_faithfulness_on_an_extracted_store(built):
    model, store, word = built
    assert len(store) >= 3
    dico = lc.SemiNMF(2, l1=0.01, max_iter=50).fit(store.layer("final"))
    vocab = WordFilter(vocabulary=frozenset(WORDS), min_length=2)
    expl = lc.ground(model, dico, store, n_words=5, n_images=2, word_filter=vocab)
    assert expl.layer == "ln_final.hook_out" and expl.lens == "raw"
    assert all(c.words and set(c.top_sample_ids) <= set(store.sample_ids) for c in expl.concepts)
    # the store's word is what its vectors predict: it is among the grounded words of the strongest concept
    V = dico.encode(store.layer("final"))
    assert word in expl[int(V.mean(0).argmax())].words
    expl0 = lc.ground(model, lc.PCA(2).fit(store.layer(0)), store, layer=0, n_words=3,
                      word_filter=vocab)
    assert expl0.lens == "ln_final" and expl0.hook_name == "blocks.0.hook_resid_post"

    seqs = store_sequences(model, store, batch_size=4)
    assert seqs.sample_ids == store.sample_ids and not seqs.dropped
    # the regenerated sequences give back the stored vectors at the stored positions
    for e, layer in ((expl, "final"), (expl0, 0)):
        got = model.capture(seqs.inputs.to(model.device), [e.hook_name])[e.hook_name]
        torch.testing.assert_close(got[torch.arange(len(seqs)), seqs.positions], store.layer(layer), rtol=1e-4,
                                   atol=1e-4)
    # after the final norm only the unembedding reads the vectors: no headline, the next-token effect is the lens's
    res = lc.faithfulness(model, expl, seqs, n_random=4)
    assert res.definitional and res.score is None and math.isnan(res.mean_drop)
    assert set(res.effects) == {"next_token", "direct"}
    assert res.effects["next_token"].mean_drop > res.effects["next_token"].mean_random_drop
    # at block 0 the last block stands between: every effect is measured, the headline is the indirect one
    res0 = lc.faithfulness(model, expl0, seqs, n_random=4)
    assert res0.score == "indirect" and not res0.definitional and set(res0.effects) == set(EFFECTS)
    assert all(not math.isnan(c.drop) for c in res0.per_concept)


def test_cli_ground_evaluate_sweep(built, tmp_path, capsys):
    from lmm_concepts.cli import main
    from tests._ground_fixtures import tiny_bert, tiny_clip_folder

    model, store, word = built
    lc.PCA(2).fit(store.layer("final")).save(tmp_path / "dico")
    (tmp_path / "words.txt").write_text("\n".join(WORDS))
    spec = ["--model", "tests._extract_models:tiny_lmm"]
    main(["ground", "--store", str(store.path), "--dictionary", str(tmp_path / "dico"), "--out", str(tmp_path / "ex"),
          "--n_words", "4", "--words_file", str(tmp_path / "words.txt"), *spec])
    expl = lc.Explanations.load(tmp_path / "ex")
    assert expl.n_concepts == 2 and all(c.words for c in expl.concepts) and "concept   0:" in capsys.readouterr().out
    clip, bert = tiny_clip_folder(tmp_path / "clip"), tiny_bert(tmp_path / "bert")
    main(["evaluate", "--explanations", str(tmp_path / "ex"), "--dictionary", str(tmp_path / "dico"),
          "--test_store", str(store.path), "--out", str(tmp_path / "res"), "--r", "2",
          "--metrics", "clipscore", "bertscore", "overlap", "faithfulness", "--with_model", "true",
          "--clip", clip, "--bert", bert, "--bert_layers", "2", *spec])
    res = lc.EvaluationResults.load(tmp_path / "res")
    assert "clipscore_top2" in res.scores["concepts"] and res.faithfulness is not None
    assert "| concepts |" in capsys.readouterr().out
    main(["sweep", "--over", "k", "--ks", "1", "2", "--train_store", str(store.path), "--test_store", str(store.path),
          "--out", str(tmp_path / "sweep"), "--learner", "pca", "--n_words", "3", *spec])
    assert lc.SweepResults.load(tmp_path / "sweep").column("k") == [1, 2]
    with pytest.raises(SystemExit, match="--store is required"):
        main(["ground", "--dictionary", str(tmp_path / "dico")])


def test_steering_a_hooked_lmm_during_generation(built):
    model, store, word = built
    images = store.images(store.sample_ids[:3])
    target = "w7" if word != "w7" else "w8"
    u = model.W_U[:, model.tokenizer.convert_tokens_to_ids(target)].detach()
    u = u / u.norm()

    def generate():
        return model.generate(images, max_new_tokens=4).texts

    shift = lc.caption_shift(model, u, "final", [target], generate, alphas=[0.0, 40.0])
    assert shift.mention_rate[1] == 1.0 and shift.word_rate[1] > shift.word_rate[0]
    assert model.generate(images, max_new_tokens=4).texts == shift.captions[0]  # hooks removed afterwards
    expl = lc.ground(model, lc.PCA(2).fit(store.layer("final")), store, n_words=2,
                     word_filter=WordFilter(vocabulary=frozenset(WORDS), min_length=2))
    assert len(expl.images(0, store)) == len(expl[0].top_sample_ids)


def test_a_dictionary_is_grounded_and_evaluated_only_at_the_layer_it_records(built, tmp_path, capsys):
    from lmm_concepts.cli import main
    from lmm_concepts.errors import InputError

    model, store, _ = built
    lc.PCA(2).fit(store.layer("final")).save(tmp_path / "dico", hook_name=store.hook_name("final"))
    dico = lc.load_dictionary(tmp_path / "dico")
    assert lc.ground(model, dico, store, n_words=2).hook_name == "ln_final.hook_out"  # its layer by default
    with pytest.raises(InputError, match=r"fitted on ln_final.hook_out .* at blocks.0.hook_resid_post"):
        lc.ground(model, dico, store, layer=0, n_words=2)
    expl = lc.ground(model, dico, str(store.path), layer=0, n_words=2, allow_layer_mismatch=True)  # a folder is opened
    assert expl.hook_name == "blocks.0.hook_resid_post"
    assert expl.notes[0] == ("the dictionary was fitted on ln_final.hook_out but is applied at "
                             "blocks.0.hook_resid_post (allow_layer_mismatch)")
    with pytest.raises(InputError, match="fitted on ln_final.hook_out"):
        lc.evaluate(expl, store, metrics=["overlap"], r=2)
    assert lc.evaluate(expl, store, metrics=["overlap"], r=2, allow_layer_mismatch=True).notes == [
        "the dictionary was fitted on ln_final.hook_out but is applied at blocks.0.hook_resid_post "
        "(allow_layer_mismatch)"]
    with pytest.raises(InputError, match="must be a RepresentationStore .* got NoneType"):
        lc.ground(model, dico, None)

    args = ["ground", "--store", str(store.path), "--dictionary", str(tmp_path / "dico"), "--out",
            str(tmp_path / "ex"), "--layer", "0", "--model", "tests._extract_models:tiny_lmm"]
    with pytest.raises(SystemExit, match="--allow_layer_mismatch") as exit_:
        main(args)
    assert exit_.value.code == 2  # bad input
    main([*args, "--allow_layer_mismatch", "true"])
    out = capsys.readouterr().out
    assert "note: the dictionary was fitted on ln_final.hook_out but is applied at blocks.0" in out
    assert "at blocks.0.hook_resid_post (the dictionary was fitted on ln_final.hook_out)" in out
