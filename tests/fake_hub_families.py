"""The repositories of the families beyond GPT-2 for tests/fake_hub.py: their real file layout, small random weights.

Each repository holds what the Hub's holds, under the same names: ``config.json`` with the fields the published one
has (written by transformers 4.x: ``rope_theta``, ``rope_scaling``, Pythia's ``rotary_pct`` and
``rotary_emb_base``, Qwen's ``use_sliding_window``), the weights in bfloat16 as published (one
``model.safetensors``, or shards and their ``model.safetensors.index.json`` for Mistral 7B and Gemma 2 2B, with
transformers 4's tensor names: Pythia's ``embed_out``, no ``lm_head`` when the embeddings are tied), the tokenizer's
files, and the other files listed but never generated. Pythia's training checkpoints are the revisions
``step<N>`` (config.json and pytorch_model.bin each). ARENA's attn_only_2L_half is a classic state dict, with
GPT-NeoX-20B's tokenizer.

The shapes are small (2 layers, d_model 64, 512 tokens): the real ones go up to 7 billion parameters. One exception:
at ``scale="real"``, Qwen2.5-0.5B, the model of notebook 09, keeps its published sizes (494 million parameters, 1 GB
in bfloat16), so that ``make test-real`` runs that notebook at the real shapes. The tokenizers are byte-level BPEs
of 400 tokens with each family's special tokens (Llama's, Mistral's and Gemma's add their BOS themselves, as the
real ones do); they split real text differently from the real ones. Qwen 2.5's is GPT-2's BPE with Qwen's special
tokens after it (50,304 embedding rows; 151,936 at the real sizes, as published), so that notebook 09 finds what the
real one has: common words and first names as single tokens, ids 1000 to 9999 ordinary tokens.
"""

from __future__ import annotations

import io
import json
import math

import torch

VOCAB, TOKENIZER_SIZE = 512, 400
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=VOCAB)
PYTHIA_STEPS = (0, *(2 ** i for i in range(10)), *range(1000, 143001, 1000))

# repo -> (architecture, config.json fields as published (sizes shrunk), special tokens, tokenizer_config, shards)
_LLAMA_ROPE = dict(factor=32.0, high_freq_factor=4.0, low_freq_factor=1.0, original_max_position_embeddings=8192,
                   rope_type="llama3")
_GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
_GEMMA_TOKENS = dict(bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
REPOS = {
    "Qwen/Qwen2.5-0.5B": ("Qwen2ForCausalLM", dict(
        model_type="qwen2", num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False, sliding_window=32768,
        max_window_layers=2, hidden_act="silu", bos_token_id=50256, eos_token_id=50256, vocab_size=50304),
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], dict(bos_token=None, eos_token="<|endoftext|>",
                                                               pad_token="<|endoftext|>"), 1),
    "Qwen/Qwen3-0.6B": ("Qwen3ForCausalLM", dict(
        model_type="qwen3", num_key_value_heads=2, head_dim=32, max_position_embeddings=40960,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
        sliding_window=None, max_window_layers=2, attention_bias=False, hidden_act="silu", bos_token_id=0,
        eos_token_id=0), ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        dict(bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>"), 1),
    "meta-llama/Llama-3.2-1B": ("LlamaForCausalLM", dict(
        model_type="llama", num_key_value_heads=2, head_dim=16, max_position_embeddings=131072, rope_theta=500000.0,
        rope_scaling=_LLAMA_ROPE, rms_norm_eps=1e-5, tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
        hidden_act="silu", bos_token_id=0, eos_token_id=1), ["<|begin_of_text|>", "<|end_of_text|>"],
        dict(bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"), 1),
    "mistralai/Mistral-7B-v0.1": ("MistralForCausalLM", dict(
        model_type="mistral", num_key_value_heads=2, max_position_embeddings=32768, rope_theta=10000.0,
        sliding_window=4096, rms_norm_eps=1e-5, tie_word_embeddings=False, hidden_act="silu", bos_token_id=1,
        eos_token_id=2), ["<unk>", "<s>", "</s>"], dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"), 2),
    "google/gemma-2-2b": ("Gemma2ForCausalLM", dict(
        model_type="gemma2", num_key_value_heads=2, head_dim=32, max_position_embeddings=8192, rope_theta=10000.0,
        query_pre_attn_scalar=32, sliding_window=4096, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
        rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="gelu_pytorch_tanh",
        hidden_activation="gelu_pytorch_tanh", attention_bias=False, bos_token_id=2, eos_token_id=1,
        pad_token_id=0), _GEMMA_SPECIALS, _GEMMA_TOKENS, 3),
    # Gemma 3: six layers (the published pattern slides in five, the sixth is global). The 270M's config.json was
    # written by transformers 4.55 (layer_types listed), the 1B's by 4.50 (sliding_window_pattern); the 4B is
    # multimodal: its text_config gives only what differs from transformers' defaults, and its vision tower (two
    # layers here) sits beside the language model in the checkpoint.
    "google/gemma-3-270m": ("Gemma3ForCausalLM", dict(
        model_type="gemma3_text", num_hidden_layers=6, num_key_value_heads=1, head_dim=32,
        max_position_embeddings=32768, rope_theta=1000000.0, rope_local_base_freq=10000.0, rope_scaling=None,
        query_pre_attn_scalar=256, sliding_window=512, _sliding_window_pattern=6,
        layer_types=["sliding_attention"] * 5 + ["full_attention"], attn_logit_softcapping=None,
        final_logit_softcapping=None, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", attention_bias=False,
        use_bidirectional_attention=False, bos_token_id=2, eos_token_id=1, pad_token_id=0), _GEMMA_SPECIALS,
        _GEMMA_TOKENS, 1),
    "google/gemma-3-1b-pt": ("Gemma3ForCausalLM", dict(
        model_type="gemma3_text", num_hidden_layers=6, num_key_value_heads=1, head_dim=32,
        max_position_embeddings=32768, rope_theta=1000000.0, rope_local_base_freq=10000, rope_scaling=None,
        query_pre_attn_scalar=256, sliding_window=512, sliding_window_pattern=6, attn_logit_softcapping=None,
        final_logit_softcapping=None, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh", attention_bias=False,
        cache_implementation="hybrid", bos_token_id=2, eos_token_id=1, pad_token_id=0), _GEMMA_SPECIALS,
        _GEMMA_TOKENS, 1),
    "google/gemma-3-4b-pt": ("Gemma3ForConditionalGeneration", dict(
        model_type="gemma3", text_config=dict(model_type="gemma3_text", num_hidden_layers=6, num_attention_heads=4,
                                              num_key_value_heads=2, head_dim=32, sliding_window=1024,
                                              rope_scaling={"factor": 8.0, "rope_type": "linear"}),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14,
                           vision_use_head=False),
        mm_tokens_per_image=4, boi_token_index=255, eoi_token_index=256, image_token_index=257, eos_token_id=1),
        _GEMMA_SPECIALS, _GEMMA_TOKENS, 2),
    "allenai/OLMo-2-0425-1B": ("Olmo2ForCausalLM", dict(
        model_type="olmo2", num_key_value_heads=4, max_position_embeddings=4096, rope_theta=500000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False, hidden_act="silu", bos_token_id=None,
        eos_token_id=0, pad_token_id=1), ["<|endoftext|>", "<|pad|>"],
        dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|pad|>"), 1),
    **{f"EleutherAI/pythia-{size}": ("GPTNeoXForCausalLM", dict(
        model_type="gpt_neox", max_position_embeddings=2048, rotary_pct=0.25, rotary_emb_base=10000,
        use_parallel_residual=True, layer_norm_eps=1e-5, tie_word_embeddings=False, hidden_act="gelu",
        bos_token_id=0, eos_token_id=0), ["<|endoftext|>", "<|padding|>"],
        dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"), 1)
        for size in ("70m", "160m")},
}
GEMMA3 = ("google/gemma-3-270m", "google/gemma-3-1b-pt", "google/gemma-3-4b-pt")
ADDS_BOS = {"meta-llama/Llama-3.2-1B", "mistralai/Mistral-7B-v0.1", "google/gemma-2-2b", *GEMMA3}
ADDED = {repo: ("<image_soft_token>",) for repo in GEMMA3}  # added_tokens.json: tokens after the vocabulary
REAL_SIZES = {"Qwen/Qwen2.5-0.5B": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                                        intermediate_size=4864, max_window_layers=24, vocab_size=151936)}
GPT2_BPE = {"Qwen/Qwen2.5-0.5B"}  # GPT-2's vocabulary and merges, the family's special tokens after them
LISTED_ONLY = {
    "Qwen/Qwen2.5-0.5B": [".gitattributes", "LICENSE", "README.md", "merges.txt"],
    "Qwen/Qwen3-0.6B": [".gitattributes", "LICENSE", "README.md", "merges.txt"],
    "meta-llama/Llama-3.2-1B": [".gitattributes", "LICENSE.txt", "README.md", "USE_POLICY.md",
                                "original/consolidated.00.pth", "original/tokenizer.model"],
    "mistralai/Mistral-7B-v0.1": [".gitattributes", "README.md", "pytorch_model-00001-of-00002.bin",
                                  "pytorch_model-00002-of-00002.bin", "tokenizer.model"],
    "google/gemma-2-2b": [".gitattributes", "README.md", "tokenizer.model"],
    **{repo: [".gitattributes", "README.md", "tokenizer.model"] for repo in GEMMA3},
    "allenai/OLMo-2-0425-1B": [".gitattributes", "README.md"],
    "EleutherAI/pythia-70m": [".gitattributes", "README.md", "pytorch_model.bin"],
    "EleutherAI/pythia-160m": [".gitattributes", "README.md", "pytorch_model.bin"],
    "callummcdougall/attn_only_2L_half": [".gitattributes", "README.md"],
    "EleutherAI/gpt-neox-20b": [".gitattributes", "README.md", "config.json", "model.safetensors.index.json"],
}
ATTN_ONLY = "callummcdougall/attn_only_2L_half"
NEOX_TOKENIZER = "EleutherAI/gpt-neox-20b"


def tokenizer_files(specials: list[str], tokenizer_config: dict, adds_bos: bool,
                    gpt2_bpe: bool = False, added: tuple[str, ...] = ()) -> dict[str, bytes]:
    """tokenizer.json (a byte-level BPE of TOKENIZER_SIZE tokens, the special tokens first; or, with ``gpt2_bpe``,
    GPT-2's, the special tokens after it), tokenizer_config.json and special_tokens_map.json; with ``added``, tokens
    added after the vocabulary (Gemma 3's <image_soft_token>) and added_tokens.json, which lists them."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    from helpers.tokenizer import TOKENIZER_DIR

    if gpt2_bpe:
        tokenizer = Tokenizer(BPE.from_file(str(TOKENIZER_DIR / "encoder.json"), str(TOKENIZER_DIR / "vocab.bpe")))
    else:
        symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
        vocab = {s: i for i, s in enumerate(specials)}
        for s in symbols:
            vocab[s] = len(vocab)
        merges = []
        for a in " etaoinsrhl":
            for b in "etaoinsrhldcum":
                if len(vocab) < TOKENIZER_SIZE and (a + b).replace(" ", "Ġ") not in vocab:
                    vocab[(a + b).replace(" ", "Ġ")] = len(vocab)
                    merges.append((a.replace(" ", "Ġ"), b))
        tokenizer = Tokenizer(BPE(vocab, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(specials)
    tokenizer.add_special_tokens(list(added))
    if adds_bos:  # as Llama's, Mistral's and Gemma's tokenizers do
        bos = tokenizer_config["bos_token"]
        tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                                 special_tokens=[(bos, tokenizer.token_to_id(bos))])
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 131072, **tokenizer_config}
    special = {k: v for k, v in tokenizer_config.items() if v is not None}
    files = {"tokenizer.json": tokenizer.to_str().encode(), "tokenizer_config.json": json.dumps(config).encode(),
             "special_tokens_map.json": json.dumps(special).encode()}
    if added:
        files["added_tokens.json"] = json.dumps({t: tokenizer.token_to_id(t) for t in added}).encode()
    return files


def _random_weights(model, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim == 1 and "norm" in name:
                p.copy_((0.0 if "gemma" in type(model).__name__.lower() else 1.0) + 0.2 * noise)
            elif p.ndim == 1:
                p.copy_(0.2 * noise)
            else:
                p.copy_(noise / math.sqrt(p.shape[-1]))


def hf_config(repo: str, scale: str = "small") -> dict:
    """config.json of ``repo`` as published (transformers 4.x fields), sizes shrunk (in a multimodal model's
    text_config), except REAL_SIZES' at scale="real"."""
    architecture, fields, *_ = REPOS[repo]
    if "text_config" in fields:
        sizes = {k: v for k, v in SMALL.items() if k not in fields["text_config"]}
        fields = {**fields, "text_config": {**sizes, **fields["text_config"]}}
        return {"architectures": [architecture], **fields, "torch_dtype": "bfloat16", "transformers_version": "4.50.0"}
    real = REAL_SIZES.get(repo, {}) if scale == "real" else {}
    return {"architectures": [architecture], **SMALL, **fields, **real, "torch_dtype": "bfloat16",
            "transformers_version": "4.45.0"}


def _state_dict(repo: str, seed: int, config: dict) -> dict[str, torch.Tensor]:
    """Random weights in transformers 4.x's names (Pythia's embed_out; no lm_head when tied), in bfloat16."""
    import transformers

    from helpers.conversion import hf_decoder

    architecture = config["architectures"][0]
    config_class = transformers.AutoConfig.for_model(config["model_type"]).__class__
    if repo in GEMMA3:  # transformers 5 reads Gemma 3's 4.x fields (rotary per layer type) as they are
        return _saved_state_dict(getattr(transformers, architecture)(config_class(**config)), seed)
    raw = {k: v for k, v in config.items() if k not in ("rope_theta", "rope_scaling", "rotary_pct", "rotary_emb_base")}
    rope = hf_decoder.rope(config)  # 5.x reads 4.x's fields too; given as rope_parameters here to be safe
    parameters = {"rope_type": "llama3" if rope.get("use_NTK_by_parts_rope") else "default",
                  "rope_theta": rope["rotary_base"], **(config.get("rope_scaling") or {})}
    if architecture == "GPTNeoXForCausalLM":
        parameters["partial_rotary_factor"] = config["rotary_pct"]
    hf_cfg = config_class(**{**raw, "rope_parameters": parameters})
    torch.manual_seed(seed)
    model = getattr(transformers, architecture)(hf_cfg)
    _random_weights(model, seed)
    sd = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    if architecture == "GPTNeoXForCausalLM":
        sd["embed_out.weight"] = sd.pop("lm_head.weight")
    elif config.get("tie_word_embeddings"):
        sd.pop("lm_head.weight", None)
    return sd


def _saved_state_dict(model, seed: int) -> dict[str, torch.Tensor]:
    """Random weights under the names save_pretrained writes (a multimodal Gemma 3's language_model.model.*, as
    published), in bfloat16."""
    import tempfile

    from safetensors.torch import load_file

    _random_weights(model, seed)
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        sd = load_file(f"{directory}/model.safetensors")
    return {k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}


def _safetensors(sd: dict) -> bytes:
    from safetensors.torch import save

    return save(sd, metadata={"format": "pt"})


def repo_files(repo: str, seed: int = 0, scale: str = "small") -> dict[str, bytes]:
    """Every generated file of ``repo`` (main)."""
    architecture, _, specials, tokenizer_config, shards = REPOS[repo]
    config = hf_config(repo, scale)
    files = {"config.json": json.dumps(config, indent=2).encode(),
             "generation_config.json": json.dumps({"bos_token_id": config.get("bos_token_id"),
                                                   "eos_token_id": config.get("eos_token_id")}).encode(),
             **tokenizer_files(specials, tokenizer_config, repo in ADDS_BOS, repo in GPT2_BPE, ADDED.get(repo, ()))}
    sd = _state_dict(repo, seed, config)
    if shards == 1:
        files["model.safetensors"] = _safetensors(sd)
        return files
    names = sorted(sd)
    weight_map, size = {}, 0
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k] for k in names[i::shards]}
        weight_map.update(dict.fromkeys(part, shard))
        size += sum(t.numel() * t.element_size() for t in part.values())
        files[shard] = _safetensors(part)
    files["model.safetensors.index.json"] = json.dumps({"metadata": {"total_size": size},
                                                       "weight_map": weight_map}, indent=2).encode()
    return files


def pythia_checkpoint(repo: str, step: int) -> dict[str, bytes]:
    """The files of Pythia's revision step<N>: config.json and pytorch_model.bin (transformers 4's names)."""
    config = hf_config(repo)
    buffer = io.BytesIO()
    torch.save(_state_dict(repo, 10_000 + step, config), buffer)
    return {"config.json": json.dumps(config, indent=2).encode(), "pytorch_model.bin": buffer.getvalue()}


def attn_only_2l_half() -> bytes:
    """ARENA's attn_only_2L_half.pth: a classic state dict (12 heads, shortformer, no norms), width shrunk to 96."""
    from helpers import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=96, d_head=8, n_heads=12, n_ctx=2048, d_vocab=VOCAB,
                                  attn_only=True, normalization_type=None, positional_embedding_type="shortformer",
                                  seed=398, device="cpu")
    sd = HookedTransformer(cfg).state_dict()
    gen = torch.Generator().manual_seed(5)
    sd = {k: v + 0.1 * torch.randn(v.shape, generator=gen) if k.split(".")[-1].startswith("b_") else v
          for k, v in sd.items() if v.dtype.is_floating_point}
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    return buffer.getvalue()


def neox_tokenizer() -> dict[str, bytes]:
    return tokenizer_files(["<|endoftext|>", "<|padding|>"], dict(bos_token="<|endoftext|>",
                                                                  eos_token="<|endoftext|>"), False)
