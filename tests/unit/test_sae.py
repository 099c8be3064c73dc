"""helpers.sae: the three architectures against hand-computed values, SAELens' on-disk format, splicing into a
model, training on course-gpt2, reading and steering."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load, load_file

from helpers import HookedTransformer
from helpers import sae as S
from tests.fake_hub import GPT2_SAES, GPT2_SHAPES, jbloom_sae_files

HOOK = "blocks.2.hook_resid_pre"  # notebook 10's hook on course-gpt2 (4 layers: blocks.{n_layers // 2})


def small_sae(architecture: str = "standard", **cfg) -> S.SAE:
    """d_in 2, d_sae 3, with weights small enough to compute by hand (see the tests)."""
    sae = S.SAE(S.SAEConfig(architecture, 2, 3, **cfg))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 1.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, -1.0, 0.5]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        sae.b_dec.copy_(torch.tensor([1.0, 1.0]))
    return sae


@pytest.fixture(scope="module")
def model():
    return HookedTransformer.from_pretrained("course-gpt2")


# ----- formulas ---------------------------------------------------------------------------------


def test_standard_encode_decode_by_hand():
    # x - b_dec = [2, 1]; pre = [2, 2, -1] + b_enc = [2, 1, -0.5]; relu -> [2, 1, 0]; decode [2, 1] + b_dec
    sae = small_sae()
    acts = sae.encode(torch.tensor([[3.0, 2.0]]))
    assert acts.tolist() == [[2.0, 1.0, 0.0]]
    assert sae.decode(acts).tolist() == [[3.0, 2.0]]
    assert sae(torch.tensor([[3.0, 2.0]])).tolist() == [[3.0, 2.0]]


def test_apply_b_dec_to_input_false_skips_the_subtraction():
    # pre = [3, 4, -1] + b_enc = [3, 3, -0.5] -> [3, 3, 0] -> [3, 3] + b_dec
    sae = small_sae(apply_b_dec_to_input=False)
    assert sae(torch.tensor([[3.0, 2.0]])).tolist() == [[4.0, 4.0]]


def test_topk_keeps_the_k_largest():
    sae = small_sae("topk", k=1)
    acts = sae.encode(torch.tensor([[3.0, 2.0]]))
    assert acts.tolist() == [[2.0, 0.0, 0.0]]
    assert sae.decode(acts).tolist() == [[3.0, 1.0]]


def test_topk_rescaled_by_decoder_norm_picks_by_scaled_preactivation():
    # x = [1, 3]: pre = [0, 3, 2.5]; times |W_dec rows| = [1, 1, sqrt 2] -> feature 2 (3.54) beats feature 1 (3)
    plain = small_sae("topk", k=1)
    assert plain(torch.tensor([[1.0, 3.0]])).tolist() == [[1.0, 4.0]]
    rescaled = small_sae("topk", k=1, rescale_acts_by_decoder_norm=True)
    acts = rescaled.encode(torch.tensor([[1.0, 3.0]]))
    assert acts[0, 2].item() == pytest.approx(2.5 * math.sqrt(2))
    assert rescaled.decode(acts)[0].tolist() == pytest.approx([3.5, 3.5])


def test_jumprelu_zeroes_what_is_not_above_its_threshold():
    sae = small_sae("jumprelu")
    with torch.no_grad():
        sae.threshold.copy_(torch.tensor([2.5, 0.5, 0.0]))
    acts = sae.encode(torch.tensor([[3.0, 2.0]]))  # pre = [2, 1, -0.5]: only feature 1 passes
    assert acts.tolist() == [[0.0, 1.0, 0.0]]
    assert sae.decode(acts).tolist() == [[1.0, 2.0]]


def test_constant_norm_rescale_scales_in_and_back_out():
    sae = S.SAE(S.SAEConfig("standard", 2, 2, normalize_activations="constant_norm_rescale"))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.W_dec.copy_(torch.eye(2))
    x = torch.tensor([[3.0, 4.0]])  # norm 5 -> scaled to norm sqrt(2)
    assert sae.encode(x)[0].tolist() == pytest.approx([0.6 * math.sqrt(2), 0.8 * math.sqrt(2)])
    assert sae(x)[0].tolist() == pytest.approx([3.0, 4.0])


def test_bad_config_says_what_to_do():
    with pytest.raises(ValueError, match="needs k"):
        S.SAEConfig("topk", 2, 3)
    with pytest.raises(ValueError, match="architecture"):
        S.SAEConfig("gated", 2, 3)


# ----- disk ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["v6", "flat"])
@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu"])
def test_save_load_round_trip(tmp_path, layout, architecture):
    sae = small_sae(architecture, k=2 if architecture == "topk" else None,
                    metadata={"hook_name": HOOK, "model_name": "course-gpt2"})
    if architecture == "jumprelu":
        with torch.no_grad():
            sae.threshold.copy_(torch.tensor([0.1, 0.2, 0.3]))
    sae.save(tmp_path, layout=layout)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    if layout == "v6":
        assert cfg["metadata"]["hook_name"] == HOOK and cfg["architecture"] == architecture
        assert cfg["metadata"]["sae_lens_version"].startswith("6.")
    else:
        assert cfg["hook_name"] == HOOK and "metadata" not in cfg
    loaded = S.SAE.load(tmp_path)
    assert loaded.cfg == sae.cfg
    assert loaded.cfg.hook_name == HOOK
    for name, value in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
    x = torch.tensor([[3.0, 2.0], [1.0, 3.0]])
    assert torch.equal(loaded(x), sae(x))


@pytest.mark.parametrize("layout", ["v6", "flat"])
def test_both_layouts_keep_the_topk_decoder_norm_rescaling(tmp_path, layout):
    sae = small_sae("topk", k=2, rescale_acts_by_decoder_norm=True, metadata={"hook_name": HOOK})
    sae.save(tmp_path, layout=layout)
    loaded = S.SAE.load(tmp_path)
    assert loaded.cfg.rescale_acts_by_decoder_norm and loaded.cfg == sae.cfg
    x = torch.tensor([[3.0, 2.0], [1.0, 3.0]])
    assert torch.equal(loaded(x), sae(x))


def jbloom_layout(folder, d_in: int = 4, d_sae: int = 8, seed: int = 0) -> dict:
    """A folder as jbloom/GPT2-Small-SAEs-Reformatted ships one (tests/fake_hub.py); its weights."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in jbloom_sae_files(d_in, d_sae // d_in, seed).items():
        (folder / name).write_bytes(data)
    return load_file(folder / "sae_weights.safetensors")


def test_load_reads_the_old_flat_layout_of_a_release(tmp_path):
    weights = jbloom_layout(tmp_path)
    sae = S.SAE.load(tmp_path)
    assert sae.cfg.architecture == "standard" and sae.cfg.apply_b_dec_to_input
    assert sae.cfg.hook_name == "blocks.8.hook_resid_pre" and sae.cfg.device == "cpu"
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    expected = ((x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]).relu()
    assert torch.allclose(sae.encode(x), expected)


def test_load_errors_name_the_missing_file_and_bad_shapes(tmp_path):
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        S.SAE.load(tmp_path)
    jbloom_layout(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "d_sae": 9}))
    with pytest.raises(ValueError, match="d_sae=9"):
        S.SAE.load(tmp_path)


def test_load_pretrained_sae_reads_a_hub_cache_in_the_real_layout(offline_cache):
    """The README's command for notebook 10's SAE fills a Hugging Face cache as `hf download` leaves it
    (tests/fake_hub.py: jbloom/GPT2-Small-SAEs-Reformatted at the fake GPT-2's width), read offline."""
    folder = "blocks.8.hook_resid_pre"
    offline_cache.hf_download(f'hf download {GPT2_SAES} --include "{folder}/*"')
    sae = S.load_pretrained_sae(GPT2_SAES, folder)
    files = jbloom_sae_files(GPT2_SHAPES["small"]["gpt2"][1])
    assert sae.cfg.hook_name == folder and sae.cfg.d_sae == 32 * sae.cfg.d_in
    assert torch.equal(sae.W_dec, load(files["sae_weights.safetensors"])["W_dec"])
    with pytest.raises(Exception, match=f"hf download {GPT2_SAES} blocks.9.hook_resid_pre/cfg.json"):
        S.load_pretrained_sae(GPT2_SAES, "blocks.9.hook_resid_pre")


def test_gemma_scope_params_npz_for_gemma_2(offline_cache):
    """A Gemma Scope folder (params.npz, no cfg.json) of google/gemma-scope-2b-pt-res as `hf download` leaves it, read
    for the fake gemma-2-2b (d_model 64): the hook from the repository's site and the folder's layer, the input used
    as it is (no b_dec subtracted), JumpReLU cutting below each feature's threshold."""
    offline_cache.hf_download('hf download google/gemma-2-2b --include "*.json" --include "model*.safetensors"')
    model = HookedTransformer.from_pretrained("gemma-2-2b")
    repo, folder = "google/gemma-scope-2b-pt-res", "layer_1/width_16k/average_l0_71"
    g = torch.Generator().manual_seed(0)
    params = {"W_enc": torch.randn(64, 96, generator=g) / 8, "W_dec": torch.randn(96, 64, generator=g) / 8,
              "b_enc": 0.1 * torch.randn(96, generator=g), "b_dec": torch.randn(64, generator=g),
              "threshold": 0.3 + 0.3 * torch.rand(96, generator=g)}
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v.numpy() for k, v in params.items()})
    offline_cache.add(repo, f"{folder}/params.npz", buffer.getvalue())
    offline_cache.cache(repo, f"{folder}/params.npz")
    sae = S.load_pretrained_sae(repo, folder, model=model)
    assert sae.cfg.hook_name == "blocks.1.hook_resid_post" and sae.cfg.architecture == "jumprelu"
    assert not sae.cfg.apply_b_dec_to_input
    _, cache = model.run_with_cache("The cat sat on the mat because it was warm", names_filter=sae.cfg.hook_name)
    x = cache[sae.cfg.hook_name]
    pre = x @ params["W_enc"] + params["b_enc"]
    assert ((pre > 0) & (pre <= params["threshold"])).any() and (pre > params["threshold"]).any()
    acts = sae.encode(x)
    assert torch.allclose(acts, pre.relu() * (pre > params["threshold"]), atol=1e-5)
    assert torch.allclose(sae.decode(acts), acts @ params["W_dec"] + params["b_dec"], atol=1e-5)
    spliced = model.run_with_hooks("The cat sat", fwd_hooks=[(sae.cfg.hook_name, S.splice_hook(sae))])
    assert torch.isfinite(spliced).all()
    with pytest.raises(ValueError, match="attention ones read hook_z"):
        S.load_pretrained_sae("google/gemma-scope-2b-pt-att", folder)
    with pytest.raises(ValueError, match="layer_<L>/width_<W>/average_l0_<N>"):
        S.load_pretrained_sae(repo, "width_16k/average_l0_71")
    with pytest.raises(Exception, match=f"hf download {repo} layer_2/width_16k/average_l0_71/params.npz"):
        S.load_pretrained_sae(repo, "layer_2/width_16k/average_l0_71")


# ----- splicing -----------------------------------------------------------------------------


def random_sae(d_in: int = 256, d_sae: int = 512, seed: int = 0) -> S.SAE:
    """A TopK SAE (k 8) with random weights, for course-gpt2's residual stream (d_model 256)."""
    sae = S.SAE(S.SAEConfig("topk", d_in, d_sae, k=8, metadata={"hook_name": HOOK}))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g))
    return sae


def test_splice_replaces_the_activation_by_the_reconstruction(model):
    sae = random_sae()
    tokens = model.to_tokens(["When John and Mary went to the park, Mary gave a ball to"])
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    expected = cache[HOOK].clone()
    expected[:, 1:] = sae(cache[HOOK][:, 1:])
    with model.hooks([(HOOK, S.splice_hook(sae))]):
        logits, spliced_cache = model.run_with_cache(tokens, names_filter=HOOK)
    assert torch.allclose(spliced_cache[HOOK], expected, atol=1e-5)
    manual = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda act, hook: expected)])
    assert torch.allclose(logits, manual, atol=1e-4)
    assert torch.allclose(model.run_with_hooks(tokens, fwd_hooks=[(HOOK, S.splice_hook(sae))]), manual, atol=1e-4)
    assert not torch.allclose(logits, model(tokens), atol=1e-2)


def test_an_sae_of_another_width_says_what_to_do(model, tmp_path):
    """The SAE of course-gpt2's former version (2 layers, d_model 128) on today's (d_model 256): loading it against
    the model, running it on the model's activations or splicing it names the model, the hook and both widths,
    instead of a raw matrix-shape error."""
    old = S.SAE(S.SAEConfig("topk", 128, 1024, k=16, metadata={"model_name": "course-gpt2", "hook_name": HOOK}))
    old.save(tmp_path)
    tokens = model.to_tokens(["When John and Mary went to the park, Mary gave a ball to"])
    what = r"trained on course-gpt2 at blocks\.2\.hook_resid_pre\) reads activations of width d_in=128, but "
    with pytest.raises(ValueError, match=what + r"the activation of course-gpt2 at blocks\.2\.hook_resid_pre has "
                       r"width 256.*train_sae"):
        S.SAE.load(tmp_path, model=model)
    loaded = S.SAE.load(tmp_path)  # without the model, the first use says it
    with pytest.raises(ValueError, match=what + "its input has width 256"):
        S.feature_acts(model, loaded, tokens)
    with pytest.raises(ValueError, match=what + r"the activation at blocks\.2\.hook_resid_pre has width 256"):
        model.run_with_hooks(tokens, fwd_hooks=[(HOOK, S.splice_hook(loaded))])
    fitting = random_sae()  # d_in 256, spliced at a hook of another width (the MLP's 1024 neurons)
    with pytest.raises(ValueError, match=r"width d_in=256, but the activation at blocks\.2\.mlp\.hook_post has "
                       "width 1024"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.2.mlp.hook_post", S.splice_hook(fitting))])
    with pytest.raises(ValueError, match=r"blocks\.2\.mlp\.hook_post has width 1024"):
        fitting.check_model(model, "blocks.2.mlp.hook_post")
    with pytest.raises(KeyError, match="not a hook point of course-gpt2"):
        fitting.check_model(model, "blocks.9.hook_resid_pre")
    fitting.check_model(model)  # its own hook fits: no error


def test_error_term_restores_the_model_until_a_feature_is_edited(model):
    sae = random_sae()
    tokens = model.to_tokens(["When John and Mary went to the park, Mary gave a ball to"])
    clean = model(tokens)
    with model.hooks([(HOOK, S.splice_hook(sae, use_error_term=True))]):
        assert torch.allclose(model(tokens), clean, atol=1e-4)
        _, sae_cache = sae.run_with_cache(torch.zeros(1, model.cfg.d_model))  # the SAE's own hook points
        assert {"hook_sae_acts_post", "hook_sae_recons"} <= set(sae_cache.keys())
        acts = sae.encode(model.run_with_cache(tokens, names_filter=HOOK)[1][HOOK][0, 1:])
        feature = int(acts.sum(0).argmax())

        def ablate(feature_acts, hook):
            feature_acts[..., feature] = 0
            return feature_acts

        with sae.hooks([("hook_sae_acts_post", ablate)]):
            edited = model(tokens)
    assert not torch.allclose(edited, clean, atol=1e-3)


def test_loss_recovered_is_one_for_a_perfect_sae_and_zero_for_a_zero_one(model):
    d = model.cfg.d_model
    tokens = S.story_tokens(model, 8, seed=3)
    perfect = S.SAE(S.SAEConfig("standard", d, 2 * d, metadata={"hook_name": HOOK}))
    with torch.no_grad():  # relu(x) - relu(-x) = x
        perfect.W_enc.copy_(torch.cat([torch.eye(d), -torch.eye(d)], dim=1))
        perfect.W_dec.copy_(torch.cat([torch.eye(d), -torch.eye(d)], dim=0))
    assert S.loss_recovered(model, perfect, tokens) == pytest.approx(1.0, abs=1e-4)
    zero = S.SAE(S.SAEConfig("standard", d, 4, metadata={"hook_name": HOOK}))
    assert S.loss_recovered(model, zero, tokens) == pytest.approx(0.0, abs=1e-4)


def test_token_mask_leaves_out_bos_and_padding(model):
    tokens = model.to_tokens(["Mary gave a ball to John", "Mary"])
    mask = S.token_mask(model, tokens)
    assert mask.sum(1).tolist() == [6, 1]
    assert not mask[:, 0].any()


def test_hook_acts_is_the_cached_activation_at_every_position_and_collect_keeps_those_that_count(model):
    tokens = model.to_tokens(["Mary gave a ball to John", "Mary"])
    full = model.run_with_cache(tokens)[1][HOOK]
    acts = S.hook_acts(model, HOOK, tokens)
    assert acts.shape == full.shape == (2, 7, model.cfg.d_model)
    torch.testing.assert_close(acts, full, rtol=0, atol=1e-6)
    torch.testing.assert_close(S.collect_activations(model, HOOK, tokens), acts[S.token_mask(model, tokens)])


# ----- metrics ------------------------------------------------------------------------------


def test_metrics_on_known_values():
    acts = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    assert S.l0(acts) == 1.5
    assert S.dead_features(acts).tolist() == [False, True, False]
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # sum of squared deviations 2
    assert S.explained_variance(x, torch.tensor([[0.5, 0.0], [-1.0, 0.0]])) == pytest.approx(1 - 0.25 / 2)


# ----- training (the notebook's settings) ----------------------------------------------------

NOTEBOOK_SETTINGS = dict(d_sae=1024, k=16, steps=300, batch_size=1024, seed=0)


@pytest.fixture(scope="module")
def trained(model):
    tokens = S.story_tokens(model, 400, seed=0)
    return S.train_sae(model, HOOK, tokens, verbose=False, **NOTEBOOK_SETTINGS)


@pytest.mark.slow
def test_training_reconstructs_and_recovers_the_loss(model, trained):
    held_out = S.story_tokens(model, 40, seed=1)  # 40 held-out stories: about 3,800 tokens
    acts = S.collect_activations(model, HOOK, held_out)
    features = trained.encode(acts)
    assert S.l0(features) == 16
    assert S.explained_variance(acts, trained(acts)) >= 0.9
    assert S.loss_recovered(model, trained, held_out) >= 0.9
    assert S.dead_features(features).float().mean() < 0.05
    assert trained.cfg.hook_name == HOOK and trained.cfg.architecture == "topk"


@pytest.mark.slow
def test_shipped_sae_is_notebook10s_training(model, trained):
    shipped = S.SAE.load(S.COURSE_SAE_DIR, model=model)  # it fits course-gpt2 at notebook 10's hook
    assert shipped.cfg == trained.cfg
    # The same training; the last bits depend on the threads and the CPU's instruction set, and a few latents drift
    # further: on an Intel Xeon (2026-12-06) one of the 1024 ended at cosine 0.90 with the shipped one (trained on an
    # AMD EPYC), the other 1023 above 0.95, mean 0.999. A different training would give cosines near 0.
    cosines = (shipped.W_dec * trained.W_dec).sum(-1)
    assert cosines.mean() > 0.99 and (cosines < 0.95).float().mean() <= 0.01
    assert S.loss_recovered(model, shipped, S.story_tokens(model, 40, seed=1)) >= 0.9


def test_training_is_deterministic_with_a_seed(model):
    tokens = S.story_tokens(model, 40, seed=0)
    runs = [S.train_sae(model, HOOK, tokens, d_sae=64, k=4, steps=5, batch_size=256, seed=s, verbose=False)
            for s in (7, 7, 8)]
    assert torch.equal(runs[0].W_dec, runs[1].W_dec)
    assert not torch.equal(runs[0].W_dec, runs[2].W_dec)


def test_training_asks_for_more_tokens_when_there_are_too_few(model):
    with pytest.raises(ValueError, match="pass more tokens"):
        S.train_sae(model, HOOK, S.story_tokens(model, 2), batch_size=4096, verbose=False)


# ----- reading and steering -----------------------------------------------------------------


def test_dashboard_highlights_the_strongest_activations(model, trained):
    tokens = S.story_tokens(model, 50, seed=2)
    acts = S.feature_acts(model, trained, tokens)
    feature = int(acts.sum((0, 1)).argmax())
    dash = S.feature_dashboard(model, trained, tokens, feature, acts=acts, n_contexts=5)
    strongest = acts[..., feature].flatten().topk(5).values.tolist()
    assert [values[i] for _, values, i in dash.contexts] == pytest.approx(strongest)
    assert dash.max_activation == pytest.approx(strongest[0])
    assert dash.html.count("font-weight: bold") == 5
    effects = trained.W_dec[feature] @ model.W_U
    assert dash.promoted[0][1] == pytest.approx(effects.max().item(), rel=1e-5)
    assert len(dash.histogram.data) == 1 and len(dash.logits.data) == 1


def test_steering_hook_adds_the_scaled_direction_but_not_at_bos(model):
    direction = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    tokens = model.to_tokens(["Mary gave a ball to John"])
    with model.hooks([(HOOK, S.steering_hook(direction, 3.0))]):
        _, cache = model.run_with_cache(tokens, names_filter=HOOK)
        generated = model.generate(tokens, max_new_tokens=3, do_sample=False, verbose=False)
        # With the key/value cache each new position is steered once, as the whole sequence is without it.
        assert torch.equal(generated, model.generate(tokens, max_new_tokens=3, do_sample=False, verbose=False,
                                                     use_past_kv_cache=False))
    _, clean = model.run_with_cache(tokens, names_filter=HOOK)
    delta = cache[HOOK] - clean[HOOK]
    assert torch.allclose(delta[0, 1:], 3.0 * direction.expand(delta.shape[1] - 1, -1), atol=1e-4)
    assert delta[0, 0].abs().max() == 0
    assert generated.shape == (1, tokens.shape[1] + 3)


def test_mean_difference_is_the_difference_of_token_means(model):
    a, b = ["Mary gave a ball to John"], ["The cat sat on the mat", "John went home"]  # 6 and 6 + 3 tokens
    resid_a = model.run_with_cache(model.to_tokens(a), names_filter=HOOK)[1][HOOK]
    resid_b = model.run_with_cache(model.to_tokens(b), names_filter=HOOK)[1][HOOK]  # [2 7 d]: BOS, padding
    expected = resid_a[0, 1:].mean(0) - torch.cat([resid_b[0, 1:7], resid_b[1, 1:4]]).mean(0)
    assert torch.allclose(S.mean_difference(model, HOOK, a, b), expected, atol=1e-5)
    last = resid_a[0, 6] - (resid_b[0, 6] + resid_b[1, 3]) / 2
    assert torch.allclose(S.mean_difference(model, HOOK, a, b, last_only=True), last, atol=1e-5)
