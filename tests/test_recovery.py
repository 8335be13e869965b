"""Ground-truth concept recovery on planted cases whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmm_concepts.metrics.recovery import RecoveryResult, attribute_values, auroc_columns, concept_recovery


def test_auroc_hand_values_and_ties():
    # positives {0.35, 0.8} vs negatives {0.1, 0.4}: pairs won 1 + 1 + 0 + 1 = 3 of 4
    assert auroc_columns(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool))[0] == pytest.approx(0.75)
    # ties count one half: positives {1, 0} vs negatives {1, 0} -> (0.5 + 1 + 0 + 0.5) / 4
    assert auroc_columns(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1, 0, 1, 0], bool))[0] == pytest.approx(0.5)
    # all columns at once, one perfect, one reversed, one constant
    scores = np.array([[3.0, 0.0, 7.0], [2.0, 1.0, 7.0], [1.0, 2.0, 7.0], [0.0, 3.0, 7.0]])
    np.testing.assert_allclose(auroc_columns(scores, np.array([1, 1, 0, 0], bool)), [1.0, 0.0, 0.5])
    with pytest.raises(ValueError, match="positives and negatives"):
        auroc_columns(scores, np.ones(4, bool))


def test_auroc_matches_sklearn_on_random_data():
    from sklearn import metrics as sklearn_metrics  # a dev dependency: never skipped
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(200, 5)), 1)  # rounding makes many ties
    y = rng.random(200) < 0.3
    ours = auroc_columns(scores, y)
    ref = [sklearn_metrics.roc_auc_score(y, scores[:, j]) for j in range(5)]
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_attribute_values_flattens_objects_and_scalars():
    record = {"background": "White", "count": 2,
              "objects": [{"shape": "circle", "colour": "red"}, {"shape": "circle", "colour": "blue"}]}
    assert attribute_values(record) == {
        ("background", "white"), ("count", "2"), ("shape", "circle"), ("colour", "red"), ("colour", "blue")}


def _planted():
    """Train: concept 0 ranks `red` perfectly; concept 1 is noise on train but perfect on test.
    Test: concept 0 gets `red` right 3 times in 4 pairs, so its held-out AUROC is 0.75 exactly."""
    train_attrs = [{"colour": c} for c in ["red", "red", "blue", "blue"]]
    V_train = torch.tensor([[0.9, 0.5], [0.8, 0.1], [0.1, 0.6], [0.2, 0.2]])
    # concept-1 train AUROC for red: positives {0.5, 0.1} vs negatives {0.6, 0.2} -> 1 win of 4 = 0.25
    test_attrs = [{"colour": c} for c in ["red", "red", "blue", "blue"]]
    V_test = torch.tensor([[0.35, 0.9], [0.8, 0.8], [0.1, 0.1], [0.4, 0.2]])
    return V_train, train_attrs, V_test, test_attrs


def test_concept_chosen_on_train_and_scored_on_test():
    V_train, train_attrs, V_test, test_attrs = _planted()
    result = concept_recovery(V_train, train_attrs, V_test, test_attrs)
    red = next(v for v in result.values if v.value == "red")
    assert red.concept == 0 and red.sign == 1
    assert red.train_auroc == pytest.approx(1.0)
    assert red.test_auroc == pytest.approx(0.75)  # concept 1 would score 1.0 on test: selection never peeks
    # blue is the complement of red: concept 1 is best on train for blue (0.75 vs concept 0's 0.0)
    blue = next(v for v in result.values if v.value == "blue")
    assert blue.concept == 1 and blue.train_auroc == pytest.approx(0.75)
    # concept 1 on test for blue: positives {0.1, 0.2} vs negatives {0.9, 0.8} -> 0
    assert blue.test_auroc == pytest.approx(0.0)
    assert result.mean_test_auroc == pytest.approx((0.75 + 0.0) / 2)


def test_signed_methods_choose_the_sign_on_train():
    V_train, train_attrs, V_test, test_attrs = _planted()
    result = concept_recovery(V_train, train_attrs, V_test, test_attrs, signed=True)
    blue = next(v for v in result.values if v.value == "blue")
    # -concept 0 separates blue perfectly on train (AUROC 1 - 0 = 1)
    assert (blue.concept, blue.sign) == (0, -1)
    assert blue.train_auroc == pytest.approx(1.0)
    # scored on test with the same sign: concept 0 gives blue 1 - 0.75 = 0.25, so -concept 0 gives 0.75
    assert blue.test_auroc == pytest.approx(0.75)
    # the unsigned rule may not flip
    unsigned = next(v for v in concept_recovery(V_train, train_attrs, V_test, test_attrs).values if v.value == "blue")
    assert unsigned.sign == 1


def test_word_check_and_unscorable_values():
    V_train, train_attrs, V_test, test_attrs = _planted()
    for r in train_attrs + test_attrs:
        r["shape"] = "circle"  # every sample is a circle: nothing to separate
    train_attrs[0]["size"] = "large"  # present on train only
    words = [["red", "thing"], ["blues", "sky"]]
    result = concept_recovery(V_train, train_attrs, V_test, test_attrs, concept_words=words)
    by_value = {v.value: v for v in result.values}
    assert by_value["red"].word_in_grounding is True
    assert by_value["blue"].word_in_grounding is True  # plural "blues" counts
    assert by_value["circle"].concept is None and "every train sample" in by_value["circle"].note
    assert by_value["large"].test_auroc is None and "no positives" in by_value["large"].note
    assert result.word_hit_rate == pytest.approx(1.0)
    # the mean counts only scored values
    assert result.mean_test_auroc == pytest.approx(0.375)
    # a value word of None skips the check
    result = concept_recovery(V_train, train_attrs, V_test, test_attrs, concept_words=words,
                              value_word=lambda a, v: None if a == "colour" else v)
    assert all(v.word_in_grounding is None for v in result.values if v.attribute == "colour")
    assert RecoveryResult.from_dict(result.to_dict()) == result


def test_perfectly_planted_concepts_are_recovered():
    rng = np.random.default_rng(1)
    colours = ["red", "green", "blue"]

    def split(n):
        labels = rng.integers(0, 3, n)
        V = rng.random((n, 5)) * 0.1
        V[np.arange(n), labels] += 1.0  # concept j fires for colour j
        return V, [{"colour": colours[i]} for i in labels]

    result = concept_recovery(*split(60), *split(40))
    assert [v.concept for v in result.values] == [2, 1, 0]  # sorted values: blue, green, red
    assert result.mean_test_auroc == pytest.approx(1.0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="one record per row"):
        concept_recovery(np.zeros((3, 2)), [{}] * 2, np.zeros((2, 2)), [{}] * 2)
    with pytest.raises(ValueError, match="K=3"):
        concept_recovery(np.zeros((2, 2)), [{}] * 2, np.zeros((2, 3)), [{}] * 2)
    with pytest.raises(ValueError, match="NaN"):
        concept_recovery(np.full((2, 2), np.nan), [{}] * 2, np.zeros((2, 2)), [{}] * 2)
