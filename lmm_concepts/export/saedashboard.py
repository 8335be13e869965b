"""SAEDashboard's feature layout: `feature_data.json` as `SaeVisData.save_json` writes it, loadable with
`SaeVisData.load_json` (which reads `feature_data_dict` and `feature_stats`).

    {"feature_data_dict": {"<k>": FeatureData}, "feature_stats": FeatureStatistics}
    FeatureData = {feature_tables_data, acts_histogram_data, logits_table_data, logits_histogram_data,
                   sequence_data: {seq_group_data: [{title, seq_data: [SequenceData]}]}, prompt_data, dfa_data}

Token ids are the model's (SAEDashboard decodes them with the tokenizer's vocabulary); the collapsed visual token
carries the image placeholder's id. SAEDashboard's own runner would recompute activations with its feature masking,
which is wrong for lasso codes (see `features.py`); this file holds codes computed with the full dictionary. Each
field's source is in `FIELDS` (also written to the sidecar `lmm_concepts.json`, with the images and sample ids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lmm_concepts.export.features import ConceptFeature, FeatureSet

DATA_FILE = "feature_data.json"
QUANTILES = [i / 100 for i in range(100)]

FIELDS: dict[str, str] = {
    "feature_data_dict": "one FeatureData per concept index k",
    "acts_histogram_data.bar_values, bar_heights": "histogram of the concept's non-zero codes over the store (bin "
                                                   "centres, counts; all codes for signed dictionaries)",
    "acts_histogram_data.title": "'ACTIVATIONS<br>DENSITY = x%': share of the store's samples with a non-zero code",
    "*.tick_vals": "5 ticks across the histogram's range",
    "logits_table_data.top_token_ids, top_logits": "top tokens of the concept's logit lens and their logits",
    "logits_table_data.bottom_token_ids, bottom_logits": "bottom tokens of the logit lens and their logits",
    "logits_histogram_data": "histogram of the logit lens over the vocabulary",
    "sequence_data.seq_group_data[0]": "'TOP ACTIVATIONS<br>MAX = m': the concept's top samples, strongest first",
    "SequenceData.original_index": "the sample's row in the store",
    "SequenceData.qualifying_token_index": "the token whose vector the store holds",
    "SequenceData.token_ids, feat_acts": "the regenerated sequence (visual tokens collapsed into one) and the "
                                         "concept's code at every token, full dictionary",
    "SequenceData.token_logits": "the concept's logit-lens value for each token",
    "SequenceData.loss_contribution, top/bottom_token_ids, top/bottom_logits": "zeros / empty: not computed",
    "feature_tables_data.correlated_features_*": "top-3 concepts by Pearson correlation of codes, and the cosine",
    "feature_stats.max, frac_nonzero": "per concept: largest code, density over the store",
    "feature_stats.quantiles, quantile_data": "percentiles 0..99 of each concept's codes over the store (leading "
                                              "zeros dropped, as SAEDashboard stores them)",
    "prompt_data, dfa_data": "empty",
}


def ticks(centres: list[float]) -> list[float]:
    if not centres:
        return []
    lo, hi = min(centres), max(centres)
    return [round(lo + (hi - lo) * i / 4, 3) for i in range(5)]


def _histogram(centres: list[float], counts: list[int], title: str | None) -> dict[str, Any]:
    return {"bar_heights": counts, "bar_values": centres, "tick_vals": ticks(centres), "title": title}


def _sequence(token_ids: list[int], feat_acts: list[float], token_logits: list[float], row: int,
              position: int) -> dict[str, Any]:
    n = len(token_ids)
    return {"original_index": row, "qualifying_token_index": position, "token_ids": token_ids, "feat_acts": feat_acts,
            "loss_contribution": [0.0] * n, "token_logits": token_logits, "top_token_ids": [[] for _ in range(n)],
            "top_logits": [[] for _ in range(n)], "bottom_token_ids": [[] for _ in range(n)],
            "bottom_logits": [[] for _ in range(n)]}


def feature_data(f: ConceptFeature) -> dict[str, Any]:
    top_max = f.top[0].activation if f.top else 0.0
    empty = ("neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
             "correlated_neurons_indices", "correlated_neurons_pearson", "correlated_neurons_cossim",
             "correlated_b_features_indices", "correlated_b_features_pearson", "correlated_b_features_cossim")
    return {
        "feature_tables_data": {**{k: [] for k in empty},
                                "correlated_features_indices": [j for j, _, _ in f.correlated],
                                "correlated_features_pearson": [p for _, p, _ in f.correlated],
                                "correlated_features_cossim": [c for _, _, c in f.correlated]},
        "acts_histogram_data": _histogram(f.act_centres, f.act_counts,
                                          f"ACTIVATIONS<br>DENSITY = {100 * f.frac_nonzero:.3f}%"),
        "logits_table_data": {"bottom_token_ids": f.neg_ids, "bottom_logits": f.neg_values,
                              "top_token_ids": f.pos_ids, "top_logits": f.pos_values},
        "logits_histogram_data": _histogram(f.logit_centres, f.logit_counts, None),
        "sequence_data": {"seq_group_data": [{
            "title": f"TOP ACTIVATIONS<br>MAX = {top_max:.3f}",
            "seq_data": [_sequence(s.token_ids, s.values, s.token_logits, s.row, s.position) for s in f.top],
        }]},
        "prompt_data": _sequence([], [], [], 0, 0),
        "dfa_data": {"dfaValues": [], "dfaTargetIndex": [], "dfaMaxValue": 0.0},
    }  # fmt: skip


def feature_stats(fs: FeatureSet) -> dict[str, Any]:
    V = fs.codes.float()
    data = []
    for k in range(V.shape[1]):  # one column at a time: torch.quantile takes at most 2**24 values
        row = torch.quantile(V[:, k], torch.tensor(QUANTILES)).tolist()
        first = next((i for i, x in enumerate(row) if abs(x) > 1e-6), len(row))
        data.append([round(x, 6) for x in row[first:]])
    return {"max": [round(float(x), 6) for x in V.max(0).values], "frac_nonzero": [f.frac_nonzero for f in fs.features],
            "skew": [], "kurtosis": [], "quantile_data": data, "quantiles": [*QUANTILES, 1.0],
            "ranges_and_precisions": [[[0.0, 1.0], 2]]}


def files(fs: FeatureSet, model_id: str, sae_set: str) -> dict[Path, Any]:
    """The files of this format, relative to the output folder (the sidecar is added by the caller)."""
    return {Path(DATA_FILE): {"feature_data_dict": {str(f.index): feature_data(f) for f in fs.features},
                              "feature_stats": feature_stats(fs)}}
