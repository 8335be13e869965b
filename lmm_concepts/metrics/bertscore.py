"""BERTScore F1 (Zhang et al. 2020) between grounded words and ground-truth captions, with a local encoder.

The `bert-score` package does the work (greedy cosine matching of contextual token embeddings from layer
`num_layers`; several references per candidate: the best F1). It runs offline from a local Hugging Face folder
when `num_layers` is given and the tokenizer has a finite `model_max_length` (set here from the model's
`max_position_embeddings` when the folder lacks it). Baseline rescaling needs a baseline file (bert-score ships
them only for hub models): scores are *not rescaled* unless `baseline_path` is given; results say which.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

BERT_HELP = (
    "pass bert=lmm_concepts.metrics.load_bert('/path/to/encoder', num_layers=N): a local Hugging Face folder "
    "(config.json, weights, tokenizer files)"
)


@dataclass
class BertModel:
    """A local encoder for BERTScore. `num_layers`: which hidden layer's embeddings are matched."""

    path: str
    num_layers: int
    baseline_path: str | None = None
    lang: str = "en"
    device: str | None = None
    batch_size: int = 64
    _scorer: object = field(default=None, repr=False, compare=False)

    @property
    def rescaled(self) -> bool:
        return self.baseline_path is not None

    def scorer(self):
        if self._scorer is None:
            try:
                from bert_score import BERTScorer
            except ImportError:
                raise ImportError(
                    "BERTScore needs the bert-score package: pip install 'lmm-concepts[metrics]' (or bert-score==0.3.13)"
                ) from None

            scorer = BERTScorer(
                model_type=self.path,
                num_layers=self.num_layers,
                batch_size=self.batch_size,
                lang=self.lang,
                rescale_with_baseline=self.rescaled,
                baseline_path=self.baseline_path,
                device=self.device or "cpu",
            )
            tok = scorer._tokenizer
            if tok.model_max_length is None or tok.model_max_length > 100_000:
                tok.model_max_length = int(getattr(scorer._model.config, "max_position_embeddings", 512))
            self._scorer = scorer
        return self._scorer

    def f1(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> Tensor:
        """F1 of each candidate against its references (the best over them). Empty candidates score 0."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
        if not candidates:
            return torch.zeros(0)
        empty_refs = [i for i, r in enumerate(references) if not r]
        if empty_refs:
            raise ValueError(f"samples {empty_refs[:5]} have no ground-truth caption: BERTScore needs at least one")
        out = torch.zeros(len(candidates))
        keep = [i for i, c in enumerate(candidates) if c.strip()]
        if keep:
            _, _, F = self.scorer().score([candidates[i] for i in keep], [list(references[i]) for i in keep])
            out[keep] = F.float().cpu()
        return out


def load_bert(
    path: str | os.PathLike, num_layers: int, baseline_path: str | os.PathLike | None = None, device: str | None = None
) -> BertModel:
    """A local encoder folder for BERTScore, checked now rather than at the first score."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {folder}: the BERTScore encoder's weights are missing; {BERT_HELP}")
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int (the encoder layer whose embeddings are matched), got {num_layers!r}")
    if baseline_path is not None and not Path(baseline_path).is_file():
        raise FileNotFoundError(f"BERTScore baseline file {baseline_path} does not exist; leave it out to skip rescaling")
    return BertModel(str(folder), num_layers, str(baseline_path) if baseline_path else None, device=device)


def as_bert(bert) -> BertModel:
    if bert is None:
        raise ValueError(f"BERTScore needs a local encoder: {BERT_HELP}")
    if not isinstance(bert, BertModel):
        raise TypeError(f"bert must be a BertModel (from load_bert), got {type(bert).__name__}")
    return bert
