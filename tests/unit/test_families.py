"""The families beyond GPT-2, against transformers itself, with no download.

For each architecture, transformers builds a tiny random model from a config (2 layers, d_model 64), with weights,
biases and norm weights drawn large enough that a missing piece shows (transformers' own initialisation gives
near-uniform logits, and Gemma's norms start at 0, i.e. a weight of 1), and saves it; helpers loads it from the
directory (and from the model in memory). Its logits must be those of transformers within 1e-4 without processing,
its log-probabilities within 1e-4 with the default processing; the hooks have their shapes; run_with_cache,
run_with_hooks, patching and generate run. Each config exercises its family's pieces: Llama 3's rescaled rotary
frequencies and tied embeddings, Qwen 2's q/k/v biases, Qwen 3's per-head q/k norms and head_dim apart from
d_model / n_heads, Mistral's sliding window (5 positions, shorter than the 12-token prompts), Gemma's single
key/value head, Gemma 2's post norms, soft-caps, alternating windows and query_pre_attn_scalar, Gemma 3's q/k norms
and rotary theta per layer type with linear scaling of the global layers (also inside a multimodal model, whose
vision tower is left out), GPT-NeoX's partial rotary and parallel attention and MLP, OLMo 2's post norms and q/k norms
over all heads.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from helpers import HookedTransformer, loading, patching, weights
from helpers.hub import DamagedFileError
from helpers.past_key_value_caching import HookedTransformerKeyValueCache
from tests.unit.test_big_models import old_path

D_MODEL, N_HEADS, D_VOCAB = 64, 4, 96
COMMON = dict(hidden_size=D_MODEL, num_hidden_layers=2, num_attention_heads=N_HEADS, intermediate_size=128,
              vocab_size=D_VOCAB, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
LLAMA3_ROPE = dict(rope_type="llama3", rope_theta=500000.0, factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=16)
GEMMA3_ROPE = {"full_attention": dict(rope_type="linear", factor=4.0, rope_theta=1000.0),
               "sliding_attention": dict(rope_type="default", rope_theta=30.0)}
TINY_VISION = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                   num_attention_heads=2, image_size=28, patch_size=14, vision_use_head=False)
#: architecture -> (transformers config class, model class, config fields; a multimodal model's text_config)
CASES = {
    "Llama": ("LlamaConfig", "LlamaForCausalLM",
              dict(num_key_value_heads=2, rope_parameters=LLAMA3_ROPE, tie_word_embeddings=True)),
    "Qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "Qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(num_key_value_heads=2, head_dim=24)),
    "Mistral": ("MistralConfig", "MistralForCausalLM", dict(num_key_value_heads=2, sliding_window=5, head_dim=16)),
    "Gemma": ("GemmaConfig", "GemmaForCausalLM", dict(num_key_value_heads=1, head_dim=32)),
    "Gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               dict(num_key_value_heads=2, head_dim=32, sliding_window=5, query_pre_attn_scalar=20,
                    attn_logit_softcapping=5.0, final_logit_softcapping=4.0)),
    # Gemma 3: one local layer then one global, each with its own rotary theta, the global one scaled linearly.
    "Gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               dict(num_key_value_heads=2, head_dim=32, sliding_window=5, sliding_window_pattern=2,
                    query_pre_attn_scalar=20, rope_parameters=GEMMA3_ROPE)),
    # Gemma 3 4B and up: the language model inside a multimodal model (a vision tower of one layer beside it).
    "Gemma3Multimodal": ("Gemma3Config", "Gemma3ForConditionalGeneration",
                         dict(num_key_value_heads=2, head_dim=32, sliding_window=5, sliding_window_pattern=2,
                              rope_parameters=GEMMA3_ROPE)),
    "GPTNeoX": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(partial_rotary_factor=0.25)),
    "Olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict()),
}


def hf_model(arch: str, seed: int = 0, **fields):
    """A tiny random transformers model of ``arch``, its weights drawn large (see the module's doc)."""
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    config_class, model_class, extra = CASES[arch]
    config = {**COMMON, **extra, **fields}
    if config_class == "Gemma3Config":
        config = dict(text_config=config, vision_config=TINY_VISION, mm_tokens_per_image=4)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**config))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim == 1 and "norm" in name:  # Gemma's norms multiply by 1 + weight: centred on 0 there
                p.copy_((0.0 if arch.startswith("Gemma") else 1.0) + 0.3 * noise)
            elif p.ndim == 1:
                p.copy_(0.3 * noise)
            else:
                p.copy_(noise * 1.5 / math.sqrt(p.shape[-1]))
    return model.eval()


def tokens(batch: int = 2, n: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, D_VOCAB, (batch, n), generator=torch.Generator().manual_seed(seed))


def gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module", params=list(CASES))
def family(request, tmp_path_factory):
    """(architecture, transformers model, its save_pretrained directory)."""
    arch = request.param
    model = hf_model(arch)
    directory = tmp_path_factory.mktemp(arch)
    model.save_pretrained(directory)
    return arch, model, directory


def test_logits_and_log_probs_equal_transformers(family):
    arch, hf, directory = family
    toks = tokens()
    with torch.no_grad():
        expected = hf(toks).logits
        raw = HookedTransformer.from_pretrained_no_processing(str(directory), device="cpu")
        assert gap(raw(toks), expected) < 1e-4, f"{arch}: logits differ by {gap(raw(toks), expected):.2e}"
        in_memory = HookedTransformer.from_pretrained_no_processing("mine", hf_model=hf, device="cpu")
        assert gap(in_memory(toks), expected) < 1e-4
        processed = HookedTransformer.from_pretrained(str(directory), device="cpu")
        difference = gap(processed(toks).log_softmax(-1), expected.log_softmax(-1))
        assert difference < 1e-4, f"{arch}: log-probs after processing differ by {difference:.2e}"
    assert processed.cfg.normalization_type in ("LNPre", "RMSPre")
    assert expected.std() > 0.5, "the random weights should give logits far from uniform"
    assert raw.cfg.original_architecture == CASES[arch][1]


def test_hook_shapes(family):
    arch, hf, directory = family
    model = HookedTransformer.from_pretrained_no_processing(str(directory), device="cpu")
    cfg = model.cfg
    b, p, h, e, g = 2, 12, cfg.n_heads, cfg.d_head, cfg.n_key_value_heads or cfg.n_heads
    _, cache = model.run_with_cache(tokens(b, p))
    shapes = {"hook_embed": (b, p, cfg.d_model), "blocks.0.attn.hook_q": (b, p, h, e),
              "blocks.0.attn.hook_k": (b, p, g, e), "blocks.0.attn.hook_v": (b, p, g, e),
              "blocks.0.attn.hook_rot_q": (b, p, h, e), "blocks.0.attn.hook_rot_k": (b, p, g, e),
              "blocks.0.attn.hook_pattern": (b, h, p, p), "blocks.1.attn.hook_z": (b, p, h, e),
              "blocks.1.hook_mlp_out": (b, p, cfg.d_model), "blocks.1.mlp.hook_post": (b, p, cfg.d_mlp)}
    if cfg.gated_mlp:
        shapes["blocks.0.mlp.hook_pre_linear"] = (b, p, cfg.d_mlp)
    for name, shape in shapes.items():
        assert tuple(cache[name].shape) == shape, (arch, name)
    assert "hook_pos_embed" not in cache  # rotary: the positions are in the rotation
    assert ("blocks.0.hook_resid_mid" in cache) == (arch != "GPTNeoX")  # parallel attention and MLP: none
    q_normed = arch in ("Qwen3", "Olmo2", "Gemma3", "Gemma3Multimodal")
    assert ("blocks.0.ln1_post.hook_scale" in cache) == (arch in ("Gemma2", "Olmo2", "Gemma3", "Gemma3Multimodal"))
    assert ("blocks.0.ln1.hook_scale" in cache) == (arch != "Olmo2")  # OLMo 2: no norm before attention
    assert ("blocks.0.attn.q_norm.hook_scale" in cache) == q_normed
    # The rotation keeps the part it does not rotate: Pythia turns a quarter of each head.
    r = cfg.rotary_dim
    assert r == (e // 4 if arch == "GPTNeoX" else e)
    q, rot_q = cache["blocks.0.attn.hook_q"], cache["blocks.0.attn.hook_rot_q"]
    if not q_normed:  # without q norms, hook_rot_q is hook_q rotated
        assert torch.equal(rot_q[..., r:], q[..., r:]) and torch.allclose(rot_q[:, 0], q[:, 0], atol=1e-6)


def test_hooks_patching_and_generate_run(family):
    arch, hf, directory = family
    model = HookedTransformer.from_pretrained(str(directory), device="cpu")
    clean, corrupted = tokens(seed=1), tokens(seed=2)
    logits = model(clean)

    def ablate_head(z, hook):
        z[:, :, 0] = 0.0
        return z

    ablated = model.run_with_hooks(clean, fwd_hooks=[("blocks.0.attn.hook_z", ablate_head)])
    assert gap(ablated, logits) > 1e-3
    _, cache = model.run_with_cache(clean)
    assert gap(model(clean), logits) == 0

    def metric(out):
        return out[:, -1, 5].mean()

    resid = patching.get_act_patch_resid_pre(model, corrupted, cache, metric)
    assert resid.shape == (model.cfg.n_layers, clean.shape[1]) and torch.isfinite(resid).all()
    heads = patching.get_act_patch_attn_head_out_all_pos(model, corrupted, cache, metric)
    assert heads.shape == (model.cfg.n_layers, model.cfg.n_heads)
    out = model.generate(clean[:1, :4], max_new_tokens=5, do_sample=False, stop_at_eos=False, verbose=False)
    assert out.shape == (1, 9)
    with torch.no_grad():
        greedy = hf.generate(clean[:1, :4], max_new_tokens=5, do_sample=False, attention_mask=torch.ones(1, 4))
    # transformers stops at its EOS (helpers was told not to): the tokens up to there are the same.
    assert torch.equal(out[:, :greedy.shape[1]], greedy), f"{arch}: greedy {out.tolist()} vs {greedy.tolist()}"


def test_sharded_checkpoint_is_read_shard_by_shard(tmp_path, monkeypatch):
    hf = hf_model("Qwen2")
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 2 and (tmp_path / "model.safetensors.index.json").is_file()
    read = []
    original = loading.hub._open_tensors
    monkeypatch.setattr(loading.hub, "_open_tensors", lambda path, repair: read.append(path) or original(path, repair))
    model = HookedTransformer.from_pretrained_no_processing(str(tmp_path), device="cpu")
    assert sorted(p.split("/")[-1] for p in read) == shards
    with torch.no_grad():
        assert gap(model(tokens()), hf(tokens()).logits) < 1e-4


@pytest.mark.parametrize("processing", [{}, dict(fold_ln=False, fold_value_biases=False)], ids=["processed", "raw"])
def test_loading_block_by_block_from_the_files_gives_the_whole_state_dicts_weights(family, processing):
    """from_pretrained reads a directory's safetensors file piece by piece (the globals, then each block, converted
    when they are processed); the weights are those of the whole state dict processed in one go."""
    arch, hf, directory = family
    streamed, whole = HookedTransformer.from_pretrained(str(directory), **processing), old_path(directory, **processing)
    assert streamed.cfg.normalization_type == whole.cfg.normalization_type
    expected = whole.state_dict()
    assert streamed.state_dict().keys() == expected.keys()
    for name, value in streamed.state_dict().items():
        torch.testing.assert_close(value, expected[name], atol=1e-6, rtol=1e-6, msg=f"{arch}: {name}")


def test_a_sharded_checkpoint_is_taken_block_by_block_each_tensor_read_once(tmp_path, monkeypatch):
    """From the shards of an index, each tensor is read once, the globals' before any block's, and block i's before
    block i + 1's; the logits are transformers'."""
    hf = hf_model("Llama", num_hidden_layers=3)
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    read = []
    original = loading.hub.SafetensorsReader.__getitem__
    monkeypatch.setattr(loading.hub.SafetensorsReader, "__getitem__",
                        lambda self, name: read.append(name) or original(self, name))
    model = HookedTransformer.from_pretrained_no_processing(str(tmp_path), device="cpu")
    stored = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    assert sorted(read) == sorted(stored) and len(stored) > 20
    layers = [int(n.split(".")[2]) if n.startswith("model.layers.") else -1 for n in read]
    assert layers == sorted(layers), layers
    with torch.no_grad():
        assert gap(model(tokens()), hf(tokens()).logits) < 1e-4


@pytest.mark.parametrize("arch", ["Llama", "GPTNeoX"])
def test_transformers_4_config_fields(tmp_path, arch):
    """A config.json written by transformers 4.x (rope_theta, rope_scaling; rotary_pct, rotary_emb_base) gives the
    config a 5.x one gives."""
    hf = hf_model(arch)
    hf.save_pretrained(tmp_path)
    new = HookedTransformer.from_pretrained_no_processing(str(tmp_path), device="cpu").cfg
    raw = json.loads((tmp_path / "config.json").read_text())
    rope = raw.pop("rope_parameters")
    if arch == "Llama":
        raw["rope_theta"] = rope.pop("rope_theta")
        raw["rope_scaling"] = rope
    else:
        raw.update(rotary_pct=rope["partial_rotary_factor"], rotary_emb_base=rope["rope_theta"])
    (tmp_path / "config.json").write_text(json.dumps(raw))
    old = HookedTransformer.from_pretrained_no_processing(str(tmp_path), device="cpu").cfg
    assert old.to_dict() == new.to_dict()
    assert (new.use_NTK_by_parts_rope, new.rotary_base) == ((True, 500000.0) if arch == "Llama" else (False, 10000.0))


def test_gemma3_transformers_4_config_fields(tmp_path):
    """Gemma 3's config.json as transformers 4.x wrote it (rope_theta and rope_scaling for the global layers,
    rope_local_base_freq for the local ones, sliding_window_pattern instead of layer_types) gives the 5.x config."""
    hf = hf_model("Gemma3")
    hf.save_pretrained(tmp_path)
    new = HookedTransformer.from_pretrained_no_processing(str(tmp_path), device="cpu").cfg
    raw = json.loads((tmp_path / "config.json").read_text())
    rope = raw.pop("rope_parameters")
    del raw["layer_types"]
    raw.update(rope_theta=rope["full_attention"]["rope_theta"],
               rope_local_base_freq=rope["sliding_attention"]["rope_theta"],
               rope_scaling={"rope_type": "linear", "factor": rope["full_attention"]["factor"]})
    (tmp_path / "config.json").write_text(json.dumps(raw))
    old = HookedTransformer.from_pretrained_no_processing(str(tmp_path), device="cpu").cfg
    assert old.to_dict() == new.to_dict()
    assert (new.rotary_base, new.rotary_base_local, new.rotary_scaling_factor) == (1000.0, 30.0, 4.0)
    assert new.attn_types == ["local", "global"] and new.window_size == 5


def test_gemma3_defaults_are_transformers_defaults():
    """A multimodal Gemma 3's text_config lists only what differs from transformers' defaults: the ones helpers
    fills in are transformers' own."""
    from transformers import Gemma3TextConfig

    from helpers.conversion.gemma import GEMMA3_DEFAULTS

    defaults = Gemma3TextConfig()
    rope, types = defaults.rope_parameters, defaults.layer_types
    derived = ("rope_theta", "rope_local_base_freq", "sliding_window_pattern")
    expected = {k: getattr(defaults, k) for k in GEMMA3_DEFAULTS if k not in derived}
    expected.update(rope_theta=rope["full_attention"]["rope_theta"],
                    rope_local_base_freq=rope["sliding_attention"]["rope_theta"],
                    sliding_window_pattern=types.index("full_attention") + 1)
    assert types == ["sliding_attention" if (i + 1) % expected["sliding_window_pattern"] else "full_attention"
                     for i in range(len(types))]
    assert GEMMA3_DEFAULTS == expected


@pytest.mark.parametrize("fields, message", [
    (dict(use_bidirectional_attention=True), "EmbeddingGemma"),
    (dict(rope_parameters={"full_attention": dict(rope_type="default", rope_theta=1e6),
                           "sliding_attention": dict(rope_type="linear", factor=2.0, rope_theta=1e4)}),
     "'linear' in the sliding-window layers"),
    (dict(rope_parameters=dict(rope_type="yarn", factor=2.0, rope_theta=1e4)), "'yarn' is not supported")])
def test_gemma3_configs_it_cannot_run_are_refused(fields, message):
    from helpers.conversion import gemma

    raw = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", **COMMON, **fields}
    with pytest.raises(ValueError, match=message):
        gemma.config_from_hf(raw, "mine")


def test_processing_is_valid_per_family(tmp_path):
    """No centring around an RMSNorm, no center_unembed under a final soft-cap (a warning when asked), and no
    refactoring with rotary positions."""
    hf_model("Gemma2").save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the defaults: left off silently
        HookedTransformer.from_pretrained(str(tmp_path), device="cpu")
    with pytest.warns(UserWarning, match="center_unembed is left off.*soft-capped"):
        HookedTransformer.from_pretrained(str(tmp_path), device="cpu", center_unembed=True)
    with pytest.warns(UserWarning, match="center_writing_weights is left off.*RMSNorm"):
        HookedTransformer.from_pretrained(str(tmp_path), device="cpu", center_writing_weights=True)
    with pytest.raises(ValueError, match="rotary"):
        HookedTransformer.from_pretrained(str(tmp_path), device="cpu", refactor_factored_attn_matrices=True)


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                               vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="BertForMaskedLM is not supported.*LlamaForCausalLM.*GPTNeoXForCausalLM"):
        HookedTransformer.from_pretrained(str(tmp_path))


def test_missing_tensor_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    hf_model("Olmo2").save_pretrained(tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    del sd["model.layers.1.self_attn.k_norm.weight"]
    save_file(sd, tmp_path / "model.safetensors", metadata={"format": "pt"})
    read = []
    original = loading.hub.SafetensorsReader.__getitem__
    with pytest.MonkeyPatch.context() as patch:  # named from the file's header, before any tensor is read
        patch.setattr(loading.hub.SafetensorsReader, "__getitem__", lambda self, n: read.append(n) or original(self, n))
        with pytest.raises(DamagedFileError, match="layers.1.self_attn.k_norm.weight"):
            HookedTransformer.from_pretrained(str(tmp_path))
    assert read == []
    with pytest.raises(DamagedFileError, match="layers.1.self_attn.k_norm.weight"):
        loading.load_pretrained(str(tmp_path))


VARIANTS = [("Llama", dict(attention_bias=True)),  # biases on q, k, v and o
            ("Olmo2", dict(num_key_value_heads=2)),  # grouped keys: k_norm over the key/value heads only
            ("GPTNeoX", dict(use_parallel_residual=False)),  # sequential attention then MLP
            ("Qwen2", dict(use_sliding_window=True, sliding_window=4, max_window_layers=1)),  # layer 1 slides
            ("Qwen3", dict(num_key_value_heads=4))]  # plain multi-head attention: no grouping


@pytest.mark.parametrize("arch, fields", VARIANTS, ids=[f"{a}-{next(iter(f))}" for a, f in VARIANTS])
def test_config_variants_equal_transformers(tmp_path, arch, fields):
    hf = hf_model(arch, **fields)
    hf.save_pretrained(tmp_path)
    model = HookedTransformer.from_pretrained_no_processing(str(tmp_path), device="cpu")
    with torch.no_grad():
        assert gap(model(tokens()), hf(tokens()).logits) < 1e-4
    if arch == "Qwen2":
        assert model.cfg.attn_types == ["global", "local"] and model.blocks[1].attn.window == 4


def test_rotary_layouts_are_the_same_rotation_on_permuted_dimensions():
    """GPT-J's adjacent pairs (2i, 2i+1) rotate as NeoX's / Llama's (i, i + r/2) once the dimensions are interleaved;
    the part past rotary_dim is left as it is."""
    from helpers.config import HookedTransformerConfig
    from helpers.model import Attention

    common = dict(n_layers=1, d_model=32, n_heads=2, n_ctx=16, positional_embedding_type="rotary", rotary_dim=8,
                  device="cpu")
    halves = Attention(HookedTransformerConfig(**common))
    pairs = Attention(HookedTransformerConfig(**common, rotary_adjacent_pairs=True))
    x = torch.randn(2, 10, 2, 16)
    interleave = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7, *range(8, 16)])  # halves layout -> adjacent pairs layout
    assert torch.allclose(pairs.apply_rotary(x[..., interleave]), halves.apply_rotary(x)[..., interleave], atol=1e-6)
    assert torch.equal(halves.apply_rotary(x)[..., 8:], x[..., 8:])
    assert torch.allclose(halves.apply_rotary(x)[:, 0], x[:, 0])  # position 0: no rotation
    later = halves.apply_rotary(x[:, 4:], offset=4)  # positions 4..9 given apart (a cache's offset)
    assert torch.allclose(later, halves.apply_rotary(x)[:, 4:], atol=1e-6)


def test_logit_lens_and_decomposition_on_a_rotary_rms_model(family):
    """The ActivationCache's stacks work without learned positions, without resid_mid (GPT-NeoX) and with RMSNorm
    (no centring): with fold_ln, the direct logit attributions of a full decomposition add up to the logits."""
    arch, hf, directory = family
    model = HookedTransformer.from_pretrained(str(directory), device="cpu")
    toks = tokens()
    logits, cache = model.run_with_cache(toks)
    stack, labels = cache.decompose_resid(return_labels=True)
    assert labels[0] == "embed" and "pos_embed" not in labels
    assert torch.allclose(stack.sum(0), cache["resid_post", -1], atol=1e-4)
    accumulated = cache.accumulated_resid(incl_mid=True)
    assert accumulated.shape[0] == (2 * model.cfg.n_layers if arch != "GPTNeoX" else model.cfg.n_layers) + 1
    if arch in ("Gemma2",):  # soft-capped logits are not a sum of contributions
        return
    target = toks[:, -1]
    attrs = cache.logit_attrs(stack[:, :, -1], target, pos_slice=-1)
    expected = logits[torch.arange(toks.shape[0]), -1, target] - model.b_U[target]
    assert torch.allclose(attrs.sum(0), expected, atol=1e-3)


def test_pretrained_config_without_weights(family):
    arch, hf, directory = family
    from helpers.loading import get_pretrained_model_config

    cfg = get_pretrained_model_config(str(directory), fold_ln=True)
    loaded = HookedTransformer.from_pretrained(str(directory), device="cpu").cfg
    assert cfg.normalization_type == loaded.normalization_type == ("LNPre" if arch == "GPTNeoX" else "RMSPre")
    assert (cfg.n_layers, cfg.d_head, cfg.rotary_dim, cfg.n_key_value_heads) == (
        loaded.n_layers, loaded.d_head, loaded.rotary_dim, loaded.n_key_value_heads)
    from_dict = get_pretrained_model_config(str(directory), hf_cfg=hf.config.to_dict())
    assert from_dict.original_architecture == CASES[arch][1]


def test_key_value_cache_and_patching_from_the_corrupted_prefix(family):
    """Rotary positions after the cached ones, grouped keys, the sliding window and soft-capped scores: a sequence
    run in pieces through the cache gives the full logits, generate gives the same tokens with or without it, and
    patching from the corrupted run's prefix gives the map of a full recomputation."""
    arch, _, directory = family
    model = HookedTransformer.from_pretrained(str(directory), device="cpu")
    toks = tokens()
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.cfg.device, batch_size=2)
    pieces = [model(toks[:, a:b], past_kv_cache=cache) for a, b in ((0, 4), (4, 7), (7, 8), (8, 12))]
    assert gap(torch.cat(pieces, dim=1), model(toks)) < 1e-4, arch
    kwargs = dict(max_new_tokens=6, do_sample=False, stop_at_eos=False, verbose=False)
    assert torch.equal(model.generate(toks[:, :7], **kwargs),
                       model.generate(toks[:, :7], use_past_kv_cache=False, **kwargs)), arch
    clean, corrupted = tokens(seed=1), tokens(seed=1).clone()
    corrupted[:, 6] = (corrupted[:, 6] + 1) % D_VOCAB  # the prompts differ from position 6 on
    _, clean_cache = model.run_with_cache(clean)

    def metric(out):
        return out[:, -1, 5].mean()

    reused = patching.activation_patching(model, corrupted, clean_cache, metric, "resid_pre")
    full = patching.activation_patching(model, corrupted, clean_cache, metric, "resid_pre", reuse_prefix=False)
    assert gap(reused.values, full.values) < 1e-4, arch


def test_a_16_bit_load_converts_the_weights_into_that_precision(family):
    """load_pretrained(weights_dtype=torch.bfloat16) keeps each converted tensor in bfloat16 (a 2-billion-parameter
    Gemma never sits in float32 in memory); from_pretrained(dtype=torch.bfloat16) gives, bit for bit, those weights
    processed in float32 and cast back, and the float32 model's predictions."""
    arch, _, directory = family
    cfg, sd, _ = loading.load_pretrained(str(directory), weights_dtype=torch.bfloat16)
    assert {v.dtype for v in sd.values() if v.is_floating_point()} == {torch.bfloat16}, arch
    full = HookedTransformer.from_pretrained(str(directory), device="cpu")
    half = HookedTransformer.from_pretrained(str(directory), device="cpu", dtype=torch.bfloat16)
    assert half.W_Q.dtype == torch.bfloat16
    # the 16-bit weights processed in float32, then cast
    expected = weights.process_state_dict({k: v.float() for k, v in sd.items()}, cfg)[0]
    assert half.state_dict().keys() == expected.keys(), arch
    for name, value in half.state_dict().items():
        assert torch.equal(value, expected[name].to(torch.bfloat16)), (arch, name)
    toks = tokens()
    agree = (half(toks).argmax(-1) == full(toks).argmax(-1)).float().mean().item()
    assert agree > 0.8, (arch, agree)
