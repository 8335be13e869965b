"""Neuronpedia's feature layout: one batch file `batch-0.json` as SAEDashboard's Neuronpedia runner writes them.

    {"model_id", "layer", "sae_set", "features": [feature, ...]}

The fields are those Neuronpedia's feature dashboard reads from a batch feature (its `InternalFeature` /
`InternalFeatureActivation` types) — every list present, even when empty, because the viewer maps over them. Each
field's source is in `FIELDS` (also written to the sidecar `lmm_concepts.json`, with the images and sample ids,
which have no place in Neuronpedia's layout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmm_concepts.export.features import ConceptFeature, FeatureSet

BATCH_FILE = "batch-0.json"

FIELDS: dict[str, str] = {
    "model_id": "--model_id (default: the store's model family)",
    "layer": "block index L of blocks.L.hook_resid_post; n_layers for the final norm's output",
    "sae_set": "--sae_set (default: lmm-concepts-<explanations name>)",
    "feature_index": "concept index k (row of W_dec)",
    "activations": "the concept's top samples (largest codes in the store), strongest first",
    "activations[].tokens": "the regenerated sequence's tokens, visual tokens collapsed into one '<image ×N>'",
    "activations[].values": "the concept's code at every token (full dictionary); '<image ×N>': the largest in "
                            "magnitude over the visual tokens",
    "activations[].qualifying_token_index": "the token whose vector the store holds (where the sample was ranked)",
    "activations[].bin_min, bin_max, bin_contains": "-1, the top code, -1: SAEDashboard's 'TOP ACTIVATIONS' group",
    "pos_str, pos_values": "top tokens of the concept's logit lens (the explanations' lens) and their logits",
    "neg_str, neg_values": "bottom tokens of the logit lens and their logits",
    "frac_nonzero": "share of the store's samples whose code is non-zero (density at the word of interest)",
    "freq_hist_data_bar_values, freq_hist_data_bar_heights": "histogram of the non-zero codes over the store "
                                                             "(bin centres, counts; all codes for signed dictionaries)",
    "logits_hist_data_bar_values, logits_hist_data_bar_heights": "histogram of the logit lens over the vocabulary",
    "correlated_features_indices, correlated_features_pearson": "top-3 concepts by Pearson correlation of codes",
    "correlated_features_l1": "cosine similarity of those code columns (SAEDashboard stores its cosine here too)",
    "n_prompts_total": "samples in the store",
    "n_tokens_in_prompt": "the longest exported sequence, in tokens",
    "dataset": "the store's dataset class",
    "neuron_alignment_*, correlated_neurons_*, decoder_weights_dist": "empty: not computed",
}


def layer_number(hook_name: str, n_layers: int | None) -> int:
    """Neuronpedia's integer layer for a hook (see FIELDS["layer"])."""
    head, _, rest = hook_name.partition(".")
    index = rest.partition(".")[0]
    if head == "blocks" and index.isdigit():
        return int(index)
    return int(n_layers) if n_layers is not None else 0


def feature_dict(f: ConceptFeature, n_prompts: int, n_tokens: int, dataset: str) -> dict[str, Any]:
    return {
        "feature_index": f.index,
        "activations": [
            {"tokens": s.tokens, "values": s.values, "bin_min": -1, "bin_max": round(f.top[0].activation, 4),
             "bin_contains": -1, "qualifying_token_index": s.position}
            for s in f.top
        ],
        "pos_str": f.pos_tokens, "pos_values": f.pos_values,
        "neg_str": f.neg_tokens, "neg_values": f.neg_values,
        "frac_nonzero": round(f.frac_nonzero, 6),
        "freq_hist_data_bar_heights": f.act_counts, "freq_hist_data_bar_values": f.act_centres,
        "logits_hist_data_bar_heights": f.logit_counts, "logits_hist_data_bar_values": f.logit_centres,
        "n_prompts_total": n_prompts, "n_tokens_in_prompt": n_tokens, "dataset": dataset,
        "neuron_alignment_indices": [], "neuron_alignment_values": [], "neuron_alignment_l1": [],
        "correlated_neurons_indices": [], "correlated_neurons_l1": [], "correlated_neurons_pearson": [],
        "correlated_features_indices": [j for j, _, _ in f.correlated],
        "correlated_features_pearson": [p for _, p, _ in f.correlated],
        "correlated_features_l1": [c for _, _, c in f.correlated],
        "decoder_weights_dist": [],
    }  # fmt: skip


def neuronpedia_batch(fs: FeatureSet, model_id: str, sae_set: str) -> dict[str, Any]:
    n_tokens = max((len(s.tokens) for f in fs.features for s in f.top), default=0)
    return {
        "model_id": model_id,
        "layer": layer_number(fs.hook_name, fs.n_layers),
        "sae_set": sae_set,
        "features": [feature_dict(f, fs.n_samples, n_tokens, fs.dataset) for f in fs.features],
    }


def files(fs: FeatureSet, model_id: str, sae_set: str) -> dict[Path, Any]:
    """The files of this format, relative to the output folder (the sidecar is added by the caller)."""
    return {Path(BATCH_FILE): neuronpedia_batch(fs, model_id, sae_set)}
