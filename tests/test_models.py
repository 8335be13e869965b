"""HookedLMM (DePALM layout): parity with the HF forward, generation, hooks, SAEs, connector IO, bad input."""

from __future__ import annotations

import pytest
import torch
from _model_fixtures import save_llm, tiny_open_clip_visual
from transformers import AutoModelForCausalLM

import lmm_concepts as lc
from lmm_concepts.models import PoolingResampler

FAMILIES = ["gpt2", "opt", "llama"]
PROMPTS = ["w1 w2 w3 w4", "w5", "w6 w7"]  # different lengths -> left padding


@pytest.fixture(scope="module")
def llm_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("llms")
    # "tiny-llama" in the path: TransformerLens would guess the architecture from the name; we must not.
    return {f: save_llm(f, root / f"tiny-{f}") for f in FAMILIES}


@pytest.fixture(scope="module")
def models(llm_dirs):
    torch.manual_seed(0)
    return {f: lc.HookedLMM.depalm(llm_dirs[f], vision=tiny_open_clip_visual(), n_visual_tokens=4, device="cpu",
                                   prompt="w9 w10")
            for f in FAMILIES}


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def hf_reference_logits(hf, model, inputs):
    """The HF LLM on [visual tokens ; text embeddings] with positions from the attention mask."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    is_ph = ids == model.lmm_cfg.image_token_id
    embeds = hf.get_input_embeddings()(ids.masked_fill(is_ph, 0))
    embeds[is_ph] = model.encode_images(inputs["pixel_values"]).reshape(-1, embeds.shape[-1])
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return hf(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_depalm_logits_match_hf_on_left_padded_batch(family, models, llm_dirs, pixels):
    model = models[family]
    hf = AutoModelForCausalLM.from_pretrained(llm_dirs[family], local_files_only=True).eval()
    inputs = model.build_inputs(pixels, PROMPTS)
    assert (inputs["attention_mask"] == 0).any(), "the batch must be left-padded for this test to mean anything"
    with torch.no_grad():
        ours = model(**inputs)
        ref = hf_reference_logits(hf, model, inputs)
    real = inputs["attention_mask"].bool()
    assert ours.shape == (3, inputs["input_ids"].shape[1], model.cfg.d_vocab)
    assert (ours - ref)[real].abs().max() <= 1e-4
    # no weight processing: W_U is the checkpoint's lm_head, ln_final keeps its gain
    torch.testing.assert_close(model.W_U, hf.get_output_embeddings().weight.T)


def _agree_where_decisive(model, out, other_ids, rows=None):
    """Tokens of `out` equal `other_ids` up to the first step whose top-2 logit gap is <= 1e-3 (a near-tie
    may flip in float arithmetic, after which continuations legitimately differ)."""
    with torch.no_grad():
        logits = model(out.sequences, pixel_values=out.pixel_values, attention_mask=out.attention_mask)
    start = out.prompt_length - 1
    compared = 0
    for b in rows if rows is not None else range(out.sequences.shape[0]):
        for t in range(out.generated_ids.shape[1]):
            if not out.attention_mask[b, out.prompt_length + t]:
                break
            top2 = logits[b, start + t].topk(2).values
            if top2[0] - top2[1] <= 1e-3:
                break
            assert out.generated_ids[b, t] == other_ids[b, t], f"row {b} step {t}"
            assert logits[b, start + t].argmax() == out.generated_ids[b, t]  # forward == generation
            compared += 1
    return compared


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_batched_equals_one_by_one_and_cached_equals_uncached(family, models, pixels):
    model = models[family]
    out = model.generate(pixels, PROMPTS, max_new_tokens=6)
    assert out.generated_ids.shape[0] == 3 and len(out.texts) == 3
    uncached = model.generate(pixels, PROMPTS, max_new_tokens=6, use_kv_cache=False)
    assert _agree_where_decisive(model, out, uncached.generated_ids) > 0
    singles = [model.generate(pixels[i:i + 1], PROMPTS[i], max_new_tokens=6) for i in range(3)]
    width = out.generated_ids.shape[1]
    single_ids = torch.stack([torch.nn.functional.pad(s.generated_ids[0], (0, width - s.generated_ids.shape[1]),
                                                      value=-1) for s in singles])
    assert _agree_where_decisive(model, out, single_ids) > 0


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_output_layout(models, pixels, num_beams):
    model = models["opt"]
    free = model.generate(pixels, PROMPTS, max_new_tokens=5, eos_token_id=None)
    # a token the model does produce serves as EOS. Beam search without length normalisation must end row 0
    # at once on its greedy first token: no longer hypothesis can have a higher summed log-prob.
    stop = int(free.generated_ids[0, 1 if num_beams == 1 else 0])
    out = model.generate(pixels, PROMPTS, max_new_tokens=5, num_beams=num_beams, eos_token_id=stop,
                         length_penalty=0.0)
    n = out.generated_ids.shape[1]
    assert n == 5  # always max_new_tokens columns, even when decoding stopped early
    assert out.sequences.shape == (3, out.prompt_length + n) == out.attention_mask.shape
    torch.testing.assert_close(out.sequences[:, out.prompt_length:], out.generated_ids)
    pad = model.tokenizer.pad_token_id
    ended = 0
    for b in range(3):
        row = out.generated_ids[b].tolist()
        if stop in row:  # EOS itself is real; everything after it is pad and masked out
            k = row.index(stop)
            assert out.attention_mask[b, out.prompt_length + k] == 1
            assert out.attention_mask[b, out.prompt_length + k + 1:].sum() == 0
            assert all(t == pad for t in row[k + 1:])
            ended += 1
        else:
            assert out.attention_mask[b, out.prompt_length:].all()
    assert ended >= 1
    if num_beams == 1:  # greedy with EOS = greedy without it, cut at the first EOS
        k = free.generated_ids[0].tolist().index(stop)
        torch.testing.assert_close(out.generated_ids[0, :k + 1], free.generated_ids[0, :k + 1])
    else:
        assert out.generated_ids[0, 0] == stop and out.attention_mask[0, out.prompt_length + 1:].sum() == 0
    strs = model.to_str_tokens(out.sequences[0])
    assert strs[:6] == ["<image>"] * 4 + ["<s>", "w1"]  # row 0 is the longest: [visual tokens ; BOS prompt]
    # texts decode the real generated ids
    real = out.attention_mask[0, out.prompt_length:].bool()
    assert out.texts[0] == model.tokenizer.decode(out.generated_ids[0][real], skip_special_tokens=True)


def test_beam_search_is_exact_when_the_beam_holds_the_whole_vocabulary(models, pixels):
    model = models["gpt2"]
    vocab = model.cfg.d_vocab
    out = model.generate(pixels[:1], "w1", max_new_tokens=2, num_beams=vocab, eos_token_id=None, length_penalty=0.0)
    inputs = model.build_inputs(pixels[:1], "w1")
    with torch.no_grad():
        first = model(**inputs)[0, -1].log_softmax(-1)  # [vocab]
        ids = torch.cat([inputs["input_ids"].repeat(vocab, 1), torch.arange(vocab)[:, None]], dim=1)
        mask = torch.ones_like(ids)
        second = model(ids, pixel_values=inputs["pixel_values"].repeat(vocab, 1, 1, 1), attention_mask=mask)
        total = first[:, None] + second[:, -1].log_softmax(-1)  # [first token, second token]
    best = divmod(int(total.argmax()), vocab)
    assert tuple(out.generated_ids[0].tolist()) == best
    greedy = model.generate(pixels[:1], "w1", max_new_tokens=2, num_beams=1, eos_token_id=None)
    one_beam = model.generate(pixels[:1], "w1", max_new_tokens=2, num_beams=2, eos_token_id=None)
    assert total[tuple(one_beam.generated_ids[0].tolist())] >= total[tuple(greedy.generated_ids[0].tolist())] - 1e-6


def test_run_with_cache_holds_visual_tokens_and_every_residual(models, pixels):
    model = models["llama"]
    inputs = model.build_inputs(pixels, PROMPTS)
    logits, cache = model.run_with_cache(**inputs)
    assert cache["hook_visual_tokens"].shape == (3, 4, model.cfg.d_model)
    assert cache["hook_vision_features"].shape == (3, 17, 32)
    for layer in range(model.cfg.n_layers):
        assert cache[f"blocks.{layer}.hook_resid_post"].shape == (3, inputs["input_ids"].shape[1], model.cfg.d_model)
    assert "ln_final.hook_normalized" in cache
    # the logit lens as on any HookedTransformer: ln_final then unembed of the last residual gives the logits
    last = cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
    torch.testing.assert_close(model.unembed(model.ln_final(last)), logits)
    assert model.b_U.shape == (model.cfg.d_vocab,)
    # the visual tokens are what the residual stream starts from at the placeholders
    is_ph = inputs["input_ids"] == model.lmm_cfg.image_token_id
    torch.testing.assert_close(cache["hook_embed"][is_ph], cache["hook_visual_tokens"].reshape(-1, model.cfg.d_model))
    # patching by name works like any TransformerLens hook
    patched = model.run_with_hooks(**inputs, fwd_hooks=[("hook_visual_tokens", lambda t, hook: torch.zeros_like(t))])
    assert not torch.allclose(patched, logits)
    with model.hooks(fwd_hooks=[("hook_visual_tokens", lambda t, hook: torch.zeros_like(t))]):
        torch.testing.assert_close(model(**inputs), patched)
    model.reset_hooks()
    torch.testing.assert_close(model(**inputs), logits)
    # TransformerLens's own entry points keep working: resume from a cached residual stream
    resumed = model(cache["blocks.0.hook_resid_post"], start_at_layer=1, attention_mask=inputs["attention_mask"])
    torch.testing.assert_close(resumed, logits)


@pytest.mark.parametrize("connector", [
    PoolingResampler(32, 32, 4, pool="max", proj="mlp"),
    lc.AttentionResampler(32, 32, 4, d_hidden=32, n_heads=4, n_layers=1),
])
def test_every_connector_plugs_in_and_round_trips(models, pixels, connector, tmp_path):
    model = lc.HookedLMM.from_parts(models["gpt2"], models["gpt2"].vision, connector, models["gpt2"].lmm_cfg)
    visual = model.encode_images(pixels)
    assert visual.shape == (3, 4, 32)
    path = model.save_connector(tmp_path / "c")
    other = lc.HookedLMM.from_parts(models["gpt2"], models["gpt2"].vision, PoolingResampler(32, 32, 4),
                                    models["gpt2"].lmm_cfg).load_connector(path)
    assert type(other.connector) is type(connector)
    torch.testing.assert_close(other.encode_images(pixels), visual)
    out = other.generate(pixels, max_new_tokens=2)
    assert out.generated_ids.shape[0] == 3


def test_sae_with_error_term_leaves_logits_unchanged(models, pixels):
    from sae_lens import SAE, StandardSAEConfig

    model = models["gpt2"]
    inputs = model.build_inputs(pixels, PROMPTS)
    with torch.no_grad():
        before = model(**inputs)
    cfg = StandardSAEConfig(d_in=model.cfg.d_model, d_sae=64, dtype="float32", device="cpu")
    cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    sae = SAE.from_dict(cfg.to_dict())
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.3)
    model.add_sae(sae, use_error_term=True)
    try:
        assert "blocks.1.hook_resid_post" in model.acts_to_saes
        with torch.no_grad():
            after = model(**inputs)
        _, cache = model.run_with_cache(**inputs, names_filter=lambda n: "hook_sae_acts_post" in n)
        assert any("hook_sae_acts_post" in k for k in cache.keys())
    finally:
        model.reset_saes()
    assert (after - before).abs().max() <= 1e-5


def test_connector_save_and_load_round_trip(models, pixels, tmp_path):
    model = models["gpt2"]
    path = model.save_connector(tmp_path / "connector.safetensors")
    assert path.with_suffix(".json").is_file()
    before = model.encode_images(pixels)
    fresh = lc.HookedLMM.from_parts(model, model.vision, PoolingResampler(32, model.cfg.d_model, 4), model.lmm_cfg)
    assert not torch.allclose(fresh.encode_images(pixels), before)
    fresh.load_connector(path)
    torch.testing.assert_close(fresh.encode_images(pixels), before)
    assert fresh.lmm_cfg == model.lmm_cfg


def test_preprocess_takes_pil_images_and_paths(models, tmp_path):
    from PIL import Image

    model = models["gpt2"]
    img = Image.new("RGB", (48, 40), (200, 30, 30))
    img.save(tmp_path / "red.png")
    pix = model.preprocess([img, tmp_path / "red.png", str(tmp_path / "red.png")])
    assert pix.shape == (3, 3, 32, 32)
    torch.testing.assert_close(pix[0], pix[1])
    out = model.generate([img, tmp_path / "red.png"], max_new_tokens=2)
    assert out.generated_ids.shape[0] == 2


# ---------------------------------------------------------------- bad input
def test_errors_name_the_problem(models, pixels, tmp_path, llm_dirs):
    model = models["gpt2"]
    inputs = model.build_inputs(pixels, PROMPTS)
    with pytest.raises(ValueError, match="2 images .* 12 placeholders"):
        model(inputs["input_ids"], pixel_values=pixels[:2], attention_mask=inputs["attention_mask"])
    with pytest.raises(ValueError, match="no pixel_values"):
        model(inputs["input_ids"])
    with pytest.raises(ValueError, match="must be 32x32"):
        model.generate(torch.randn(1, 3, 40, 40))
    with pytest.raises(ValueError, match=r"\[batch, 3, H, W\]"):
        model.generate(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="exceeds the context"):
        model.generate(pixels[:1], " ".join(["w1"] * 200))
    with pytest.raises(ValueError, match="3 images but 2 prompts"):
        model.build_inputs(pixels, PROMPTS[:2])
    with pytest.raises(FileNotFoundError, match="image file not found"):
        model.preprocess([tmp_path / "nope.png"])
    with pytest.raises(FileNotFoundError, match="folder not found"):
        lc.HookedLMM.depalm(tmp_path / "missing", vision=tiny_open_clip_visual(), device="cpu")
    with pytest.raises(FileNotFoundError, match="connector weights not found"):
        model.load_connector(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="vision weights not found"):
        lc.HookedLMM.depalm(llm_dirs["gpt2"], vision="ViT-B-32", vision_weights=tmp_path / "clip.bin", device="cpu")
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        lc.HookedLMM.depalm(llm_dirs["gpt2"], vision="ViT-Nope", device="cpu")


def test_checkpoint_errors(models, tmp_path, llm_dirs):
    import json
    import shutil

    from safetensors.torch import save_file

    # a connector whose tensors do not fit its config
    model = models["gpt2"]
    path = model.save_connector(tmp_path / "c.safetensors")
    cfg = json.loads(path.with_suffix(".json").read_text())
    cfg["connector"]["d_vision"] = 48
    path.with_suffix(".json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="shape mismatches"):
        model.load_connector(path)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(FileNotFoundError, match="connector config not found"):
        model.load_connector(tmp_path / "odd.safetensors")
    # an LLM folder whose weights do not fit config.json
    bad = tmp_path / "bad"
    shutil.copytree(llm_dirs["opt"], bad)
    conf = json.loads((bad / "config.json").read_text())
    conf["ffn_dim"] = 48
    (bad / "config.json").write_text(json.dumps(conf))
    with pytest.raises(ValueError, match="do not fit its config"):
        lc.HookedLMM.depalm(bad, vision=tiny_open_clip_visual(), device="cpu")
    # an architecture we do not convert
    conf["architectures"] = ["BertForMaskedLM"]
    (bad / "config.json").write_text(json.dumps(conf))
    with pytest.raises(ValueError, match="unsupported language model architecture"):
        lc.HookedLMM.depalm(bad, vision=tiny_open_clip_visual(), device="cpu")
    # no weights at all
    for f in bad.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        lc.HookedLMM.depalm(bad, vision=tiny_open_clip_visual(), device="cpu")


def test_from_parts_adopts_a_plain_hooked_transformer(models, pixels):
    """How the toy model is built: any HookedTransformer (cfg, tokenizer, weights shared, not copied)."""
    from _model_fixtures import make_tokenizer
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tok = make_tokenizer(with_bos=False)
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, d_head=8, n_heads=4, d_mlp=64, n_ctx=64, d_vocab=len(tok),
                                  act_fn="gelu", normalization_type="LN", positional_embedding_type="standard")
    llm = HookedTransformer(cfg)
    lmm_cfg = lc.LMMConfig(family="toy", n_visual_tokens=4, image_token_id=len(tok), prompt="w3", image_size=32)
    model = lc.HookedLMM.from_parts(llm, models["gpt2"].vision, PoolingResampler(32, 32, 4), lmm_cfg, tokenizer=tok)
    assert model.W_E.data_ptr() == llm.W_E.data_ptr()  # shared, not copied
    text = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(model(text), llm(text))  # no placeholders: exactly the LLM
    out = model.generate(pixels, max_new_tokens=3)
    assert out.sequences.shape[1] == out.prompt_length + out.generated_ids.shape[1]
    assert set(llm.hook_dict) <= set(model.hook_dict)


def test_half_precision_loading(llm_dirs, pixels):
    model = lc.HookedLMM.depalm(llm_dirs["llama"], vision=tiny_open_clip_visual(), n_visual_tokens=4,
                                dtype=torch.bfloat16, device="cpu")
    assert model.W_E.dtype == torch.bfloat16 and next(model.connector.parameters()).dtype == torch.bfloat16
    out = model.generate(pixels, max_new_tokens=3)
    assert out.generated_ids.shape[0] == 3 and len(out.texts) == 3


def test_gradients_reach_the_connector_through_the_visual_tokens(models, pixels):
    """Training a connector against a frozen LLM (how the toy model is trained) needs this path."""
    model = lc.HookedLMM.from_parts(models["gpt2"], models["gpt2"].vision, PoolingResampler(32, 32, 4),
                                    models["gpt2"].lmm_cfg)
    inputs = model.build_inputs(pixels, PROMPTS)
    logits = model(**inputs)
    logits[:, -1].logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.connector.parameters())
    model.zero_grad(set_to_none=True)
