"""From real grounding to the report: a planted model and dictionary, recovery, panels, a rendered page."""

from __future__ import annotations

import pytest
import torch

from lmm_concepts import ground
from lmm_concepts.metrics.recovery import concept_recovery
from lmm_concepts.report import Panels, render_html
from lmm_concepts.report.build import collect_thumbnails, method_panels
from tests._ground_fixtures import (
    PLANTED,
    HandDictionary,
    concept_vectors,
    plant_unembedding,
    planted_store,
    tiny_model,
)


def _split(U, seed, prefix):
    store, labels = planted_store(U, seed=seed)
    store.sample_ids = [f"{prefix}{i}" for i in range(len(store.sample_ids))]
    for row, sid, k in zip(store.metadata, store.sample_ids, labels.tolist(), strict=True):
        row["sample_id"] = sid
        row["attributes"] = {"topic": PLANTED[k][0], "count": 1 + (k == 0)}
    return store


def test_planted_concepts_flow_into_recovery_and_panels():
    model = tiny_model()
    U = concept_vectors()
    plant_unembedding(model, U)
    train, test = _split(U, 2, "train-"), _split(U, 3, "test-")
    dico = HandDictionary(U)
    expl = ground(model, dico, train, n_words=4, n_images=3)
    V_train, V_test = dico.encode(train.layer("final")), dico.encode(test.layer("final"))
    rec = concept_recovery(V_train, [r["attributes"] for r in train.metadata], V_test,
                           [r["attributes"] for r in test.metadata], concept_words=expl.words(),
                           value_word=lambda a, v: None if a == "count" else v)
    topic = {v.value: v for v in rec.values if v.attribute == "topic"}
    # each planted topic is found by its own concept, perfectly, and that concept's words name it
    assert {v: r.concept for v, r in topic.items()} == {PLANTED[k][0]: k for k in PLANTED}
    assert all(r.test_auroc == pytest.approx(1.0) and r.word_in_grounding for r in topic.values())

    panel = method_panels("semi_nmf", expl, V_train, V_test, test.sample_ids, test.metadata, rec, n_show=4)
    assert all(f"topic={PLANTED[k][0]}" in panel.concepts[k].recovers for k in range(3))
    assert [w.word for w in panel.concepts[0].words][:2] == PLANTED[0][:2]
    # the histogram counts the samples where the concept is active, and says what share that is
    n_active = int((V_train[:, 1] != 0).sum())
    assert sum(panel.concepts[1].hist_counts) == n_active
    assert panel.concepts[1].frac_active == pytest.approx(n_active / len(train.sample_ids))
    # test image i belongs to concept i % 3, which must be its top concept
    assert [im.top[0][0] for im in panel.images] == [0, 1, 2, 0]
    assert all(torch.tensor([a for _, a in im.top]).diff().le(0).all() for im in panel.images)

    images = collect_thumbnails([panel], [train, test])
    assert set(images) == {i for c in panel.concepts for i in c.mas} | {im.id for im in panel.images}
    html = render_html({"word": "dog", "methods": {"semi_nmf": {"recovery_auroc": rec.mean_test_auroc,
                                                                 "recovery": rec.to_dict()}}},
                       Panels([panel], images))
    assert html.count('<div class="concept"') == 3 and "topic=pizza" in html
