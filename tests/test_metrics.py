"""Metrics against values computed by hand; CLIPScore and BERTScore with tiny local models, network blocked."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from lmm_concepts.metrics import (
    ClipModel,
    clip_score,
    clipscore_matrix,
    dictionary_quality,
    load_bert,
    load_clip,
    matched_cosine,
    overlap,
    seed_stability,
    topr_mean,
)
from tests._ground_fixtures import HandDictionary, tiny_bert, tiny_clip_folder


class StubCLIP(torch.nn.Module):
    """encode_image / encode_text return fixed vectors, so cosines are known by hand."""

    def __init__(self, img: dict[int, list[float]], txt: dict[str, list[float]]):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.img, self.txt = img, txt

    def encode_image(self, x):
        return torch.tensor([self.img[int(v)] for v in x[:, 0]])

    def encode_text(self, ids):
        return torch.tensor([list(self.txt.values())[int(i)] for i in ids])


def stub_clip():
    img = {0: [1.0, 0.0], 1: [0.0, 2.0]}
    txt = {"a": [0.6, 0.8], "b": [-1.0, 0.0], "c": [3.0, 4.0]}
    tokenizer = lambda ts: torch.tensor([list(txt).index(t) for t in ts])  # noqa: E731
    return ClipModel(StubCLIP(img, txt), tokenizer=tokenizer, preprocess=lambda im: torch.tensor([float(im)]))


def test_clipscore_formula_by_hand():
    clip = stub_clip()
    # image 0 = (1, 0); text a = (.6, .8): cos .6 -> 1.5; text b: cos -1 -> 0; image 1 = (0, 1) vs c = (.6, .8): .8 -> 2.0
    torch.testing.assert_close(clip_score(clip, [0, 0, 1], ["a", "b", "c"]), torch.tensor([1.5, 0.0, 2.0]))
    S = clipscore_matrix(clip.encode_images([0, 1]), clip.encode_texts(["a", "b", "c"]))
    torch.testing.assert_close(S, torch.tensor([[1.5, 0.0, 1.5], [2.0, 0.0, 2.0]]))
    # top-1 = the strongest concept's score; top-3 = mean of the three strongest
    top = torch.tensor([[1, 0, 2], [2, 1, 0]])
    torch.testing.assert_close(topr_mean(S, top, 1), torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(topr_mean(S, top, 3), torch.tensor([1.0, 4.0 / 3]))
    with pytest.raises(ValueError, match="pairs them"):
        clip_score(clip, [0], ["a", "b"])


def test_tiny_open_clip_from_local_folder(tmp_path):
    folder = tiny_clip_folder(tmp_path / "clip")
    clip = load_clip(folder)
    ims = [Image.new("RGB", (40, 40), (255, 0, 0)), Image.new("RGB", (40, 40), (0, 0, 255))]
    texts = ["A photo is described by the words dog, puppy", "A photo is described by the words beach"]
    s = clip_score(clip, ims, texts)
    i = torch.nn.functional.normalize(clip.model.encode_image(torch.stack([clip.preprocess(m) for m in ims])), dim=-1)
    t = torch.nn.functional.normalize(clip.model.encode_text(clip.tokenizer(texts)), dim=-1)
    torch.testing.assert_close(s, 2.5 * (i * t).sum(-1).clamp_min(0).detach())
    with pytest.raises(FileNotFoundError, match="load_clip"):
        load_clip(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        load_clip("ViT-B-32", checkpoint=tmp_path / "missing.safetensors")


def test_bertscore_with_tiny_local_bert_matches_hand_computation(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    folder = tiny_bert(tmp_path / "bert")
    bert = load_bert(folder, num_layers=2)
    cands = ["dog puppy leash", "beach ocean", ""]
    refs = [["a dog on a leash", "the puppy"], ["a photo of the sand"], ["a car"]]
    F = bert.f1(cands, refs)

    model, tok = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)

    def emb(s):
        with torch.no_grad():
            h = model(**tok(s, return_tensors="pt"), output_hidden_states=True).hidden_states[2][0]
        return torch.nn.functional.normalize(h, dim=-1)

    def f1(c, ref):  # greedy matching; [CLS]/[SEP] carry zero weight but can be matched (bert-score's rule)
        S = emb(c) @ emb(ref).T
        P, R = S[1:-1].max(1).values.mean(), S[:, 1:-1].max(0).values.mean()
        return (2 * P * R / (P + R)).item()

    by_hand = [max(f1(c, x) for x in rs) for c, rs in zip(cands[:2], refs[:2], strict=True)] + [0.0]
    torch.testing.assert_close(F, torch.tensor(by_hand), atol=1e-5, rtol=1e-5)
    assert not bert.rescaled
    with pytest.raises(FileNotFoundError, match="load_bert"):
        load_bert(tmp_path / "nowhere", num_layers=2)
    with pytest.raises(ValueError, match="no ground-truth caption"):
        bert.f1(["dog"], [[]])


def test_overlap_by_hand():
    T = [["dog", "cat", "car"], ["dog", "tree"], ["sun"]]
    # |T0∩T1|/|T0| = 1/3, |T1∩T0|/|T1| = 1/2, all others 0; six ordered pairs
    assert math.isclose(overlap(T), (1 / 3 + 1 / 2) / 6)
    assert overlap([["a", "b"], ["a", "b"]]) == 1.0
    assert overlap([["a"], []]) == 0.0


def test_dictionary_quality_by_hand():
    W = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    Z = torch.tensor([[2.0, 0.0, 0.0], [0.0, -1.0, 0.0], [1.0, 1.0, 0.0]])
    q = dictionary_quality(HandDictionary(W), Z)
    # codes relu(Z W^T): [2,0,0], [0,0,0], [1,1,0]; reconstruction misses only the -1: error 1/sqrt(4+1+2)
    assert math.isclose(q.relative_error, 1 / math.sqrt(7), rel_tol=1e-6)
    assert math.isclose(q.l0, (1 + 0 + 2) / 3, rel_tol=1e-6)
    assert math.isclose(q.mean_activation, 4 / 9, rel_tol=1e-6)
    assert q.dead == [2] and q.n_dead == 1


def test_seed_stability_hungarian_by_hand():
    A = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    B = torch.tensor([[0.0, 2.0], [1.0, 1.0]])  # best matching: A0-B1 (cos .7071), A1-B0 (cos 1)
    mean, pairs = matched_cosine(A, B)
    assert math.isclose(mean, (1 + 1 / math.sqrt(2)) / 2, rel_tol=1e-6)
    assert sorted((i, j) for i, j, _ in pairs) == [(0, 1), (1, 0)]
    # signed codes: u and -u are the same concept
    assert math.isclose(matched_cosine(A, -A, absolute=True)[0], 1.0, rel_tol=1e-6)
    assert math.isclose(seed_stability([HandDictionary(A), HandDictionary(A.flip(0))]), 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="two dictionaries"):
        seed_stability([HandDictionary(A)])
