# %% [markdown]
# # Attribution patching with concepts: which concepts drive a word's logit?
#
# A Semi-NMF concept's code is a non-negative lasso solution, an argmin, yet on each sample's support S of active
# concepts it is linear in the representation z: v_S = G_SS⁻¹(W_S·z − l1), with G = W_dec·W_decᵀ. So the codes
# pass gradients (implicit differentiation through that solution; exact wherever the support does not change),
# and the SAE made from a dictionary (`dico.to_sae`) works with the tools people use after an SAE. Attribution
# patching is one: the change of a metric when concept k is removed (v_k → 0) is estimated to first order by
#
#     attribution_k = ∂metric/∂v_k · (0 − v_k)
#
# from one forward and one backward pass, where measuring it takes one forward pass per concept. Here the metric
# is the logit of the word "circle" (or "circles") where the model is about to say it, and the concepts live at
# layer 0, so one transformer block and the final norm lie between them and the logit.

# %%
import os
from pathlib import Path

import torch
from scipy.stats import spearmanr

import lmm_concepts as lc
from lmm_concepts.data.synthetic import SyntheticWorld
from lmm_concepts.metrics import store_sequences

SMALL = os.environ.get("LMM_CONCEPTS_TUTORIAL_SMALL") == "1"
OUT = Path("runs/attribution")
LAYER = 0  # blocks.0.hook_resid_post
N_CONCEPTS = 10

# %% [markdown]
# ## Concepts of "circle" at layer 0
# As in the quickstart: caption images, keep the residual that predicts the word, fit Semi-NMF, ground in words.

# %%
model = lc.load_lmm("toy")
world = SyntheticWorld(seed=4, n_train=300 if SMALL else 1500, n_test=10)
files = world.write(OUT / "world", splits=("train",))
reps = lc.extract(model, lc.JsonlCaptions(files["train"]), token="circle", plural=True, layers=[LAYER],
                  out=OUT / "reps", overwrite=True, batch_size=64)
dico = lc.SemiNMF(n_concepts=N_CONCEPTS, l1=0.3, seed=0).fit(reps.layer(LAYER))
expl = lc.ground(model, dico, reps, n_words=4, n_images=3)
hook = reps.hook_name(LAYER)

# %% [markdown]
# ## The sequences and the metric
# `store_sequences` regenerates each stored sample's sequence (same prompt, same greedy caption) and gives the
# position whose residual was stored; the next token is the word.

# %%
seqs = store_sequences(model, reps, ids=reps.sample_ids[: 48 if SMALL else 200], batch_size=64)
inputs, pos = seqs.inputs, seqs.positions
rows = torch.arange(len(seqs))
word_ids = inputs.input_ids[rows, pos + 1]  # "circle" or "circles": the token that followed
print(f"{len(seqs)} captions; metric: the logit of {sorted(set(model.to_str_tokens(word_ids)))} at its position")

# %% [markdown]
# ## Attribution: one forward and one backward pass
# The SAE is attached with the error term, so the forward pass is exactly the model's. A forward hook keeps the
# concept activations (`hook_sae_acts_post`) and another makes the residual entering the SAE a leaf we can read
# the gradient of.

# %%
model.add_sae(dico.to_sae(hook), use_error_term=True)
acts_name, input_name = f"{hook}.hook_sae_acts_post", f"{hook}.hook_sae_input"
kept = {}


def keep_acts(acts, hook):
    acts.retain_grad()
    kept["acts"] = acts
    return acts


def leaf_input(x, hook):
    kept["input"] = x = x.detach().requires_grad_()
    return x


logits = model.run_with_hooks(**inputs, fwd_hooks=[(acts_name, keep_acts), (input_name, leaf_input)])
clean = logits[rows, pos, word_ids]
clean.sum().backward()  # rows are independent: each row's gradient is its own metric's
codes = kept["acts"].detach()[rows, pos]  # [n, K] at the word's position
attribution = (kept["acts"].grad[rows, pos] * (0 - codes)).mean(0)  # [K], mean over the captions
print(f"gradient reaching the residual stream at {hook}: mean norm {kept['input'].grad[rows, pos].norm(dim=1).mean():.3f}")

# %% [markdown]
# ## Ablation: set each concept's code to 0 at the word's position, one forward pass each

# %%
effect = torch.zeros(N_CONCEPTS)
with torch.no_grad():
    for k in range(N_CONCEPTS):
        def ablate(acts, hook, k=k):
            acts = acts.clone()
            acts[rows, pos, k] = 0
            return acts

        ablated = model.run_with_hooks(**inputs, fwd_hooks=[(acts_name, ablate)])[rows, pos, word_ids]
        effect[k] = (ablated - clean.detach()).mean()
model.reset_saes()

# %% [markdown]
# ## The two rankings
# The concepts that drive the word's logit are those whose removal lowers it most.

# %%
by_effect = effect.argsort().tolist()
by_attribution = attribution.argsort().tolist()
print(f"{'concept':<9}{'words':<36}{'ablation':>9}{'rank':>6}{'attribution':>13}{'rank':>6}")
for k in by_effect:
    print(f"{k:<9}{', '.join(expl[k].words):<36}{effect[k]:>9.3f}{by_effect.index(k) + 1:>6}"
          f"{attribution[k]:>13.3f}{by_attribution.index(k) + 1:>6}")
rho = spearmanr(attribution.numpy(), effect.numpy()).statistic
print(f"Spearman rank correlation between attribution and ablation over the {N_CONCEPTS} concepts: {rho:.2f}")

# %% [markdown]
# The first-order estimate ranks the concepts much as ablating them does (measured: 0.65 in the small setting CI
# runs, 0.62–0.99 over world seeds 0–5 in that setting; 0.84 in the full one). It misses the part of the effect
# that is not linear: removing any concept moves the residual off the model's usual path, which lowers the logit
# a little more than the gradient says (every ablation here is negative). At layer 1, where only the final norm
# is left, the correlation is 0.94–0.99 (seeds 0–5, small setting).

# %%
assert rho > 0.4, f"attribution and ablation rankings disagree (Spearman {rho:.2f})"
