# %% [markdown]
# # Steering with a concept
#
# A concept vector u_k is a direction in the residual stream. Adding α·u_k at the layer it was learned from, during
# generation, should move the captions toward the concept's grounded words — a check that the concept is used by
# the model, not only read from it.

# %%
import os
from pathlib import Path

import lmm_concepts as lc
from lmm_concepts.data.synthetic import SyntheticWorld
from lmm_concepts.steering import caption_shift, steer

SMALL = os.environ.get("LMM_CONCEPTS_TUTORIAL_SMALL") == "1"
OUT = Path("runs/steering")
LAYER = 1

# %%
model = lc.load_lmm("toy")
world = SyntheticWorld(seed=2, n_train=250 if SMALL else 1500, n_test=40)
files = world.write(OUT / "world", splits=("train",))
reps = lc.extract(model, lc.JsonlCaptions(files["train"]), token="circle", plural=True, layers=[LAYER],
                  out=OUT / "reps", overwrite=True, batch_size=64)
dico = lc.SemiNMF(n_concepts=8, l1=1.0, seed=0).fit(reps.layer(LAYER))
expl = lc.ground(model, dico, reps, n_words=8, n_images=3)

# %% [markdown]
# Pick the concept whose words name a colour, and steer captions of images that are *not* that colour.

# %%
colours = {"red", "green", "blue", "yellow", "purple", "orange"}
k, colour = next(((c.index, w) for c in expl.concepts for w in c.words[:3] if w in colours), (0, None))
print(f"concept {k}: {', '.join(expl[k].words)}")
assert colour is not None, "no concept names a colour among its top 3 words"
images = [s.image for s in world.test if s.attributes["color"] != colour][:8]

before = model.generate(images, max_new_tokens=16).texts
with steer(model, expl.W_dec[k], alpha=6.0, layer=expl.hook_name):  # a context manager: hooks removed on exit
    after = model.generate(images, max_new_tokens=16).texts
for b, a in list(zip(before, after, strict=True))[:4]:
    print(f"  {b!r}\n→ {a!r}")

# %% [markdown]
# How often do the captions use the concept's words, as α grows?

# %%
shift = caption_shift(model, expl.W_dec[k], expl.hook_name, expl[k].words[:5],
                      generate=lambda: model.generate(images, max_new_tokens=16).texts, alphas=(0.0, 2.0, 4.0, 8.0))
for a, rate, mention in zip(shift.alphas, shift.word_rate, shift.mention_rate, strict=True):
    print(f"alpha {a:>4}: {100 * rate:5.1f}% of words are concept words, {100 * mention:5.1f}% of captions use one")
# measured from alpha 0 to 8: 6.2% -> 14.7% of words, 62.5% -> 87.5% of captions in CI's small setting; 3.1% ->
# 9.3% and 37.5% -> 87.5% in the full one
assert shift.word_rate[-1] > 1.5 * shift.word_rate[0], shift.word_rate
assert shift.mention_rate[-1] > shift.mention_rate[0], shift.mention_rate
