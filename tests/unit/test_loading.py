"""Tests for helpers.loading, all offline.

The fake Hub of tests/fake_hub.py stands in for the Hub behind huggingface_hub's download and listing
functions and the connectivity probe: it serves files the tests write into a Hugging Face cache laid out as
huggingface_hub lays it out (read back by the real huggingface_hub), and fails the test if asked for a
download while it is "offline". Every family goes through it end to end: tiny random GPT-2 / DistilGPT-2
models saved by transformers, classic-format state dicts shaped like the toy models and Othello-GPT, and a
course model written to a temporary data/models.

The one test that meets the real network is ``test_real_offline_failure_is_quick``: the Hub is
unreachable from the machines the course is built on, and the test measures how fast loading gives up.
"""

import json
import time

import pytest
import torch
from huggingface_hub import constants
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from helpers import course_models, loading
from helpers import hub as hub_layer  # `hub` is the fake Hub fixture here
from helpers.model import HookedTransformer, HookedTransformerConfig
from helpers.pick import pick_model
from tests import fake_hub_families as families
from training import ship

SMALL = dict(d_model=32, d_head=8, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=50)  # shrinks classic configs
TOY_LABELS = [262144, 22282240, 1100480512, 21780496384]  # real first/middle/last labels of attn-only-2l


@pytest.fixture
def hub(offline_cache, monkeypatch):
    """The fake Hub of tests/fake_hub.py in the Hub's place: downloads are written into the (empty) cache as
    hf_hub_download writes them, and listed in ``hub.served``; ``hub.online = False`` makes the Hub unreachable."""
    offline_cache.serve(monkeypatch)
    return offline_cache


def tokens(d_vocab, n_ctx=12, batch=3, seed=0):
    return torch.randint(0, d_vocab, (batch, n_ctx), generator=torch.Generator().manual_seed(seed))


def close(a, b, atol=1e-4):
    return torch.allclose(a, b, atol=atol, rtol=0), (a - b).abs().max().item()


# ------------------------------------------------------------------------------------------------
# GPT-2 and DistilGPT-2, through transformers' own files
# ------------------------------------------------------------------------------------------------


def random_hf_gpt2(tmp_path, n_layer, seed=0, safetensors=True):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_embd=32, n_head=4, vocab_size=100, n_positions=32, bos_token_id=0,
                        eos_token_id=0)
    hf = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # large random weights, so that a wrong conversion shows
        for p in hf.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    out = tmp_path / f"hf_{n_layer}_{seed}"
    hf.save_pretrained(out)
    if not safetensors:  # an older repository: pytorch_model.bin only
        (out / "model.safetensors").unlink()
        torch.save(hf.state_dict(), out / "pytorch_model.bin")
    return hf, out


GPT2_CASES = [("gpt2-small", "gpt2", 2, True), ("distil-gpt2", "distilgpt2", 2, False)]


@pytest.mark.parametrize("name, repo, n_layer, safetensors", GPT2_CASES, ids=[c[0] for c in GPT2_CASES])
def test_gpt2_family_round_trip(hub, tmp_path, name, repo, n_layer, safetensors):
    hf, out = random_hf_gpt2(tmp_path, n_layer, safetensors=safetensors)
    hub.add_dir(repo, out)
    toks = tokens(100)
    with torch.no_grad():
        expected = hf(toks).logits

        model = HookedTransformer.from_pretrained_no_processing(name)
        ok, err = close(model(toks), expected)
        assert ok, f"logits differ from transformers' by {err}"
        assert model.cfg.model_name == repo and model.cfg.n_layers == n_layer
        assert f"{repo}/{'model.safetensors' if safetensors else 'pytorch_model.bin'}" in hub.served

        processed = HookedTransformer.from_pretrained(name, refactor_factored_attn_matrices=True)
        assert processed.cfg.normalization_type == "LNPre"
        ok, err = close(processed(toks).log_softmax(-1), expected.log_softmax(-1))
        assert ok, f"log-probs after processing differ by {err}"


def test_gpt2_overrides_and_options(hub, tmp_path):
    _, out = random_hf_gpt2(tmp_path, 2)
    hub.add_dir("gpt2", out)
    model = HookedTransformer.from_pretrained("gpt2", use_attn_result=True, default_prepend_bos=False,
                                              dtype=torch.float64)
    assert model.cfg.use_attn_result and not model.cfg.default_prepend_bos
    assert model.W_E.dtype == torch.float64
    with pytest.raises(TypeError, match="use_atn_result"):
        HookedTransformer.from_pretrained("gpt2", use_atn_result=True)


# ------------------------------------------------------------------------------------------------
# Classic-format state dicts: toy models and Othello-GPT
# ------------------------------------------------------------------------------------------------


def classic_model(official: str, seed: int, **overrides) -> HookedTransformer:
    """A random model with the registry's config for ``official``, shrunk by SMALL."""
    cfg = {**loading.MODELS[official].config, **SMALL, **overrides, "seed": seed, "tokenizer_name": None}
    model = HookedTransformer(HookedTransformerConfig.from_dict(cfg))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random biases and LayerNorm weights too
        for name, p in model.named_parameters():
            if not name.split(".")[-1].startswith("W_"):
                centre = 1.0 if name.endswith(".w") else 0.0
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3 + centre)
    return model.eval()


def classic_state_dict(model: HookedTransformer) -> dict:
    """The model's state dict as classic checkpoints store it, attention buffers included."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for layer in range(model.cfg.n_layers):
        sd[f"blocks.{layer}.attn.mask"] = model.blocks[layer].attn.mask.clone()
        sd[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(-1e5)
    return sd


def add_toy_repo(hub, official: str, labels=(), safetensors_for=()):
    """A toy-model repository: model_final.pth, checkpoints/<stem>_<label>.pth, and the tokenizer."""
    from safetensors.torch import save
    from tokenizers import Tokenizer, models, pre_tokenizers

    repo = loading.MODELS[official].repo
    stem = repo.split("/")[1]
    final = classic_model(official, seed=100)
    hub.add(repo, "config.json", {"d_model": 512})
    hub.add(repo, "model_final.pth", classic_state_dict(final))
    checkpoints = []
    for i, label in enumerate(labels):
        model = classic_model(official, seed=i)
        hub.add(repo, f"checkpoints/{stem}_{label}.pth", classic_state_dict(model))
        if label in safetensors_for:
            hub.add(repo, f"checkpoints/{stem}_{label}.safetensors",
                    save({k: v.contiguous() for k, v in model.state_dict().items()}))
        checkpoints.append(model)
    vocab = {"<|endoftext|>": 0, **{f"w{i}": i for i in range(1, SMALL["d_vocab"])}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hub.add(loading.NEEL_TOKENIZER, "tokenizer.json", tok.to_str())
    return final, checkpoints


@pytest.mark.parametrize("official", ["solu-1l", "gelu-2l", "attn-only-2l"])
def test_toy_model_loads(hub, official):
    final, _ = add_toy_repo(hub, official)
    toks = tokens(SMALL["d_vocab"])
    with torch.no_grad():
        expected = final(toks)
        model = HookedTransformer.from_pretrained_no_processing(official, **SMALL)
        for key, value in final.state_dict().items():  # all keys matched, same values
            assert torch.equal(model.state_dict()[key], value), key
        assert torch.equal(model(toks), expected)
        processed = HookedTransformer.from_pretrained(official, **SMALL)
        ok, err = close(processed(toks).log_softmax(-1), expected.log_softmax(-1))
        assert ok, err
    assert model.cfg.model_name == official and model.cfg.d_vocab == SMALL["d_vocab"]
    assert model.to_tokens("w1 w2").tolist() == [[0, 1, 2]]  # the repository's tokenizer, BOS first


def test_toy_model_by_repository_name(hub):
    add_toy_repo(hub, "gelu-1l")
    model = HookedTransformer.from_pretrained("NeelNanda/GELU_1L512W_C4_Code", **SMALL)
    assert model.cfg.model_name == "gelu-1l"


def test_othello_gpt_loads(hub):
    spec = loading.MODELS["othello-gpt"]
    overrides = {**SMALL, "n_layers": 2, "d_vocab": 61, "n_ctx": 59}
    reference = classic_model("othello-gpt", seed=3, **overrides)
    hub.add(spec.repo, "synthetic_model.pth", classic_state_dict(reference))
    moves = tokens(61, n_ctx=59)
    with torch.no_grad():
        model = HookedTransformer.from_pretrained_no_processing("othello-gpt", **overrides)
        assert model.cfg.normalization_type == "LNPre" and model.cfg.act_fn == "gelu"
        assert model.tokenizer is None
        assert torch.equal(model(moves), reference(moves))
        processed = HookedTransformer.from_pretrained("othello-gpt", **overrides)
        ok, err = close(processed(moves).log_softmax(-1), reference(moves).log_softmax(-1))
        assert ok, err


def test_download_file_from_hf(hub, tmp_path):
    from safetensors.torch import save_file

    repo = "NeelNanda/Othello-GPT-Transformer-Lens"
    hub.add(repo, "synthetic_model.pth", {"w": torch.ones(2)})
    hub.add(repo, "config.json", {"n_layers": 8})
    hub.add(repo, "notes.txt", "hello")
    hub.add(repo, "sub/x.pt", {"v": torch.zeros(3)})
    save_file({"t": torch.arange(3.0)}, str(tmp_path / "w.safetensors"))
    hub.add(repo, "w.safetensors", (tmp_path / "w.safetensors").read_bytes())

    assert torch.equal(loading.download_file_from_hf(repo, "synthetic_model.pth")["w"], torch.ones(2))
    assert loading.download_file_from_hf(repo, "config.json") == {"n_layers": 8}
    assert open(loading.download_file_from_hf(repo, "notes.txt")).read() == "hello"
    assert torch.equal(loading.download_file_from_hf(repo, "x.pt", subfolder="sub")["v"], torch.zeros(3))
    assert torch.equal(loading.download_file_from_hf(repo, "w.safetensors")["t"], torch.arange(3.0))
    with pytest.raises(FileNotFoundError, match="no file missing.pth"):
        loading.download_file_from_hf(repo, "missing.pth")


class Payload:
    """Stands for code an attacker pickles into a .pth file."""


def test_pickled_code_is_never_loaded(hub):
    hub.add("evil/repo", "model.pth", {"w": torch.ones(1), "payload": Payload()})  # saved with torch.save
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|unsupported"):
        loading.download_file_from_hf("evil/repo", "model.pth")


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


def test_toy_checkpoints(hub):
    _, checkpoints = add_toy_repo(hub, "solu-1l", TOY_LABELS, safetensors_for=(TOY_LABELS[2],))
    assert loading.get_checkpoint_labels("solu-1l") == (TOY_LABELS, "token")
    toks = tokens(SMALL["d_vocab"])

    def check(model, i):
        assert model.cfg.checkpoint_index == i and model.cfg.checkpoint_value == TOY_LABELS[i]
        with torch.no_grad():
            assert torch.equal(model(toks), checkpoints[i](toks))

    check(HookedTransformer.from_pretrained_no_processing("solu-1l", checkpoint_index=1, **SMALL), 1)
    check(HookedTransformer.from_pretrained_no_processing("solu-1l", checkpoint_index=-1, **SMALL), 3)
    check(HookedTransformer.from_pretrained_no_processing("solu-1l", checkpoint_value=TOY_LABELS[2], **SMALL), 2)
    assert hub.served[-1].endswith(f"_{TOY_LABELS[2]}.safetensors")  # safetensors preferred to .pth

    with pytest.raises(IndexError, match="checkpoint_index=4 is out of range: solu-1l has 4 checkpoints"):
        HookedTransformer.from_pretrained("solu-1l", checkpoint_index=4, **SMALL)
    with pytest.raises(ValueError, match="no checkpoint at token 123"):
        HookedTransformer.from_pretrained("solu-1l", checkpoint_value=123, **SMALL)
    with pytest.raises(ValueError, match="not both"):
        HookedTransformer.from_pretrained("solu-1l", checkpoint_index=0, checkpoint_value=TOY_LABELS[0], **SMALL)


def test_models_without_checkpoints(hub):
    with pytest.raises(ValueError, match="gpt2 has no training checkpoints.*solu-2l"):
        loading.get_checkpoint_labels("gpt2-small")
    with pytest.raises(ValueError, match="othello-gpt has no training checkpoints"):
        HookedTransformer.from_pretrained("othello-gpt", checkpoint_index=0)
    assert hub.served == []


COURSE_STEPS = [10, 20, 40]


@pytest.fixture
def course_dir(tmp_path, monkeypatch):
    """A tiny course-attn-only-2l in a temporary data/models, written as training/ship.py writes it."""
    monkeypatch.setattr(course_models, "MODELS_DIR", tmp_path / "models")
    out = tmp_path / "models" / "course-attn-only-2l"
    out.mkdir(parents=True)
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, n_ctx=8, d_vocab=20, attn_only=True,
                                  act_fn="gelu", normalization_type="LN", device="cpu")
    models = []
    for i, step in enumerate(COURSE_STEPS):
        model = HookedTransformer(HookedTransformerConfig.from_dict({**cfg.to_dict(), "seed": i})).eval()
        ship._save_weights(model, out / f"step_{step:06d}.safetensors", vocab_rows=None, tied=False)
        models.append(model)
    config = {"config": {**cfg.to_dict(), "device": None}, "checkpoints": COURSE_STEPS, "tied_unembed": False}
    (out / "config.json").write_text(json.dumps(config))
    ship.update_manifest()
    return models


def test_course_model_checkpoints_with_no_network(hub, course_dir):
    hub.online = False  # any Hub access fails the test
    assert loading.get_checkpoint_labels("course-attn-only-2l") == (COURSE_STEPS, "step")
    toks = tokens(20, n_ctx=8)
    for kwargs, i in [({}, 2), ({"checkpoint_index": 0}, 0), ({"checkpoint_value": 20}, 1)]:
        model = HookedTransformer.from_pretrained_no_processing("course-attn-only-2l", **kwargs)
        reference = course_dir[i]
        fp16 = {k: v.half().float() for k, v in reference.state_dict().items()}  # shipped in float16
        reference.load_state_dict(fp16)
        with torch.no_grad():
            assert torch.allclose(model(toks), reference(toks), atol=1e-5)
        assert model.cfg.checkpoint_value == COURSE_STEPS[i]
    processed = HookedTransformer.from_pretrained("course-attn-only-2l")  # compared to the float16-rounded final model
    with torch.no_grad():
        assert close(processed(toks).log_softmax(-1), course_dir[-1](toks).log_softmax(-1))[0]
    with pytest.raises(IndexError, match="out of range"):
        HookedTransformer.from_pretrained("course-attn-only-2l", checkpoint_index=3)
    with pytest.raises(ValueError, match="no checkpoint at step 15"):
        HookedTransformer.from_pretrained("course-attn-only-2l", checkpoint_value=15)
    assert hub.served == []


# ------------------------------------------------------------------------------------------------
# Hub repositories outside the registry
# ------------------------------------------------------------------------------------------------

SMOL = "HuggingFaceTB/SmolLM2-135M"  # a Llama of the Hub that the registry does not list


def smol_repo(tmp_path):
    """A small random Llama with tied embeddings (SmolLM2's layout) and its tokenizer, as save_pretrained writes
    them: (transformers model, directory)."""

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=families.TOKENIZER_SIZE + 2, tie_word_embeddings=True,
                         max_position_embeddings=64, bos_token_id=0, eos_token_id=0)
    hf = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    out = tmp_path / "smol"
    hf.save_pretrained(out)
    specials = ["<|endoftext|>", "<|im_start|>"]
    for name, data in families.tokenizer_files(specials, dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>"),
                                               adds_bos=False).items():
        (out / name).write_bytes(data)
    return hf, out


def test_hub_repository_outside_the_registry_loads_like_a_registered_one(hub, tmp_path):
    hf, out = smol_repo(tmp_path)
    hub.add_dir(SMOL, out)
    toks = tokens(families.TOKENIZER_SIZE)
    with torch.no_grad():
        expected = hf(toks).logits
        model = HookedTransformer.from_pretrained_no_processing(SMOL)
        ok, err = close(model(toks), expected)
        assert ok, f"logits differ from transformers' by {err}"
        assert model.cfg.model_name == SMOL and model.cfg.original_architecture == "LlamaForCausalLM"
        own = AutoTokenizer.from_pretrained(str(out))("the cat on a mat")["input_ids"]
        assert model.to_tokens("the cat on a mat", prepend_bos=False)[0].tolist() == own  # the repository's tokenizer
        assert {f"{SMOL}/config.json", f"{SMOL}/model.safetensors", f"{SMOL}/tokenizer.json"} <= set(hub.served)

        hub.online, served = False, len(hub.served)  # the cache is enough from now on
        processed = HookedTransformer.from_pretrained(SMOL)
        ok, err = close(processed(toks).log_softmax(-1), expected.log_softmax(-1))
        assert ok, f"log-probs after processing differ by {err}"
        assert len(hub.served) == served
    assert loading.get_pretrained_model_config(SMOL).n_layers == 2
    assert loading.is_available(SMOL) and not loading.is_available("HuggingFaceTB/SmolLM2-360M")
    with pytest.raises(ValueError, match=f"{SMOL} has no training checkpoints"):
        HookedTransformer.from_pretrained(SMOL, checkpoint_index=0)


def test_gpt2_outside_the_registry_without_a_tokenizer_says_so(hub, tmp_path):
    hf, out = random_hf_gpt2(tmp_path, 2)  # a vocabulary of 100 tokens: GPT-2's tokenizer does not fit it
    hub.add_dir("someone/tiny-gpt2", out)
    with pytest.warns(UserWarning, match="no tokenizer.json .* token tensors only"):
        model = HookedTransformer.from_pretrained_no_processing("someone/tiny-gpt2")
    assert model.tokenizer is None and model.cfg.model_name == "someone/tiny-gpt2"
    with torch.no_grad():
        ok, err = close(model(tokens(100)), hf(tokens(100)).logits)
    assert ok, f"logits differ from transformers' by {err}"


def test_hub_repository_errors_say_what_to_do(hub, tmp_path):
    with pytest.raises(ValueError) as error:  # the Hub has no such repository: a typo of a registered name
        HookedTransformer.from_pretrained("Qwen/Qwen2.5-05B")
    message = str(error.value)
    assert "Unknown model 'Qwen/Qwen2.5-05B'" in message and "has no repository of that name" in message
    assert "Did you mean 'qwen/qwen2.5-0.5b'" in message and hub.served == []

    hub.add("mistralai/Mixtral-8x7B-v0.1", "config.json", {"architectures": ["MixtralForCausalLM"],
                                                           "model_type": "mixtral"})
    with pytest.raises(ValueError, match="MixtralForCausalLM is not supported. Supported architectures: "
                                         "GPT2LMHeadModel, .*LlamaForCausalLM"):
        HookedTransformer.from_pretrained("mistralai/Mixtral-8x7B-v0.1")
    assert hub.served == ["mistralai/Mixtral-8x7B-v0.1/config.json"]  # refused before any weights

    _, out = smol_repo(tmp_path)
    hub.add_dir("someone/gated-llama", out)
    hub.gated.add("someone/gated-llama")
    with pytest.raises(PermissionError, match="gated repository: accept its licence .* `hf auth login`"):
        HookedTransformer.from_pretrained("someone/gated-llama")

    instruct = "Qwen/Qwen2.5-0.5B-Instruct"  # on the (fake) Hub, but not in this machine's cache
    for name, data in families.repo_files("Qwen/Qwen2.5-0.5B").items():
        hub.add(instruct, name, data)
    hub.online = False
    with pytest.raises(loading.HubUnavailableError) as error:
        HookedTransformer.from_pretrained(instruct)
    message = str(error.value)
    command = 'hf download Qwen/Qwen2.5-0.5B-Instruct --include "*.json" --include "merges.txt" --include'
    assert command in message and "not in the local cache" in message and "did you mean 'qwen/qwen2.5-0.5b'" in message
    with pytest.raises(ValueError, match="not in the registry, so no embedded model stands in for it"):
        pick_model(instruct)
    hub.hf_download(next(line.strip() for line in message.splitlines() if line.strip().startswith("hf download")))
    assert HookedTransformer.from_pretrained(instruct).cfg.model_name == instruct  # the command was enough


# ------------------------------------------------------------------------------------------------
# Names and errors
# ------------------------------------------------------------------------------------------------


def test_names_and_aliases():
    assert loading.resolve_name("GPT2-Small") == "gpt2"
    assert loading.resolve_name("distillgpt2") == "distilgpt2"
    assert loading.resolve_name("solu-2l-c4-code") == "solu-2l"
    assert loading.resolve_name("NeelNanda/Attn_Only_4L512W_C4_Code") == "attn-only-4l"
    for name in ["gpt2-medium", "gpt2-large", "gpt2-xl", "othello-gpt", *course_models.COURSE_MODELS]:
        assert loading.resolve_name(name) == name


def test_unknown_name_lists_suggestions_and_names():
    with pytest.raises(ValueError) as error:
        HookedTransformer.from_pretrained("gpt2-smal")
    message = str(error.value)
    assert "Unknown model 'gpt2-smal'" in message and "Did you mean 'gpt2-small'" in message
    for name in ("gpt2-xl", "solu-4l", "othello-gpt", "course-gpt2"):
        assert name in message


def test_registry_facts():
    toy = loading.MODELS["solu-2l"]
    assert toy.repo == "NeelNanda/SoLU_2L512W_C4_Code" and toy.config["d_vocab"] == 48262
    assert toy.config["act_fn"] == "solu_ln" and toy.config["n_ctx"] == 1024
    assert loading.MODELS["gelu-3l"].config["act_fn"] == "gelu"
    assert loading.MODELS["attn-only-1l"].config["attn_only"]
    othello = loading.MODELS["othello-gpt"].config
    assert (othello["n_layers"], othello["d_model"], othello["d_vocab"], othello["n_ctx"]) == (8, 512, 61, 59)
    for name, spec in loading.MODELS.items():  # every config is valid for HookedTransformerConfig
        if spec.config:
            HookedTransformerConfig.from_dict({**spec.config, "device": "cpu"})
        if spec.family != "course":
            assert spec.stand_in in course_models.COURSE_MODELS, name


# ------------------------------------------------------------------------------------------------
# Offline behaviour
# ------------------------------------------------------------------------------------------------

STAND_INS = [("gpt2-small", "course-gpt2", "hf download gpt2 config.json model.safetensors"),
             ("distilgpt2", "course-attn-only-2l", "hf download distilgpt2"),
             ("gelu-2l", "course-attn-only-2l", "hf download NeelNanda/GELU_2L512W_C4_Code"),
             ("attn-only-3l", "course-attn-only-2l", "hf download NeelNanda/Attn_Only_3L512W_C4_Code"),
             ("othello-gpt", "course-othello-gpt",
              "hf download NeelNanda/Othello-GPT-Transformer-Lens synthetic_model.pth"),
             ("Qwen/Qwen2.5-0.5B", "course-llama", 'hf download Qwen/Qwen2.5-0.5B --include "*.json"')]


@pytest.mark.parametrize("name, stand_in, command", STAND_INS, ids=[s[0] for s in STAND_INS])
def test_offline_without_cache_names_the_stand_in(hub, name, stand_in, command):
    hub.online = False
    with pytest.raises(loading.HubUnavailableError) as error:
        HookedTransformer.from_pretrained(name)
    message = str(error.value)
    assert name in message and "unreachable" in message and "not in the local cache" in message
    assert command in message and "HF_HOME" in message
    assert f"from_pretrained('{stand_in}')" in message


def test_choose_model_takes_the_real_model_when_it_can(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("COURSE_EMBEDDED_MODELS", raising=False)
    _, out = random_hf_gpt2(tmp_path, 1)
    hub.add_dir("gpt2", out)
    assert loading.choose_model("gpt2-small") == "gpt2-small"
    assert "le vrai modèle" in capsys.readouterr().out
    hub.online = False  # and nothing in the cache
    assert loading.choose_model("gpt2-small") == "course-gpt2"
    assert "injoignable" in capsys.readouterr().out
    monkeypatch.setenv("COURSE_EMBEDDED_MODELS", "1")
    hub.online = True
    assert loading.choose_model("solu-2l") == "course-attn-only-2l"
    assert loading.choose_model("qwen2.5-0.5b") == "course-llama"  # notebook 09's Llama-architecture stand-in
    assert "COURSE_EMBEDDED_MODELS" in capsys.readouterr().out
    with pytest.raises(KeyError, match="no embedded stand-in"):
        loading.choose_model("course-gpt2")


def test_pick_model_loads_the_stand_in_with_its_arguments(monkeypatch):
    monkeypatch.setenv("COURSE_EMBEDDED_MODELS", "1")
    model = pick_model("solu-2l", checkpoint_index=0, fold_ln=False, device="cpu")
    assert model.cfg.model_name == "course-attn-only-2l"
    assert model.cfg.checkpoint_value == course_models.checkpoint_steps("course-attn-only-2l")[0]
    assert model.cfg.normalization_type == "LN"  # fold_ln=False was passed on


def test_misspelt_processing_flag_is_named_with_its_correction(hub):
    with pytest.raises(TypeError, match="fold_lm.*Did you mean fold_ln"):
        HookedTransformer.from_pretrained("course-attn-only-2l", fold_lm=False)


def test_offline_checkpoint_labels_need_the_hub(hub):
    hub.online = False
    with pytest.raises(loading.HubUnavailableError, match="course-attn-only-2l"):
        loading.get_checkpoint_labels("solu-2l")


def test_warm_cache_works_offline(hub, tmp_path):
    hf, out = random_hf_gpt2(tmp_path, 2)
    hub.add_dir("gpt2", out)
    final, checkpoints = add_toy_repo(hub, "gelu-1l", TOY_LABELS[:2])
    for f in ("config.json", "model.safetensors"):
        hub.cache("gpt2", f)
    hub.cache("NeelNanda/GELU_1L512W_C4_Code", "model_final.pth")
    hub.cache("NeelNanda/GELU_1L512W_C4_Code", f"checkpoints/GELU_1L512W_C4_Code_{TOY_LABELS[1]}.pth")
    hub.cache(loading.NEEL_TOKENIZER, "tokenizer.json")
    hub.online = False

    toks = tokens(SMALL["d_vocab"])
    with torch.no_grad():
        assert close(HookedTransformer.from_pretrained_no_processing("gpt2")(toks), hf(toks).logits)[0]
        assert torch.equal(HookedTransformer.from_pretrained_no_processing("gelu-1l", **SMALL)(toks), final(toks))
        model = HookedTransformer.from_pretrained_no_processing("gelu-1l", checkpoint_value=TOY_LABELS[1], **SMALL)
        assert torch.equal(model(toks), checkpoints[1](toks))
    with pytest.warns(UserWarning, match="only the 1 checkpoints"):
        assert loading.get_checkpoint_labels("gelu-1l") == ([TOY_LABELS[1]], "step")
    assert hub.served == []


def test_hf_hub_offline_is_honoured(hub, tmp_path, monkeypatch):
    _, out = random_hf_gpt2(tmp_path, 2)
    hub.add_dir("gpt2", out)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_layer, "hub_reachable", lambda *a, **k: pytest.fail("probed in offline mode"))
    with pytest.raises(loading.HubUnavailableError, match="HF_HUB_OFFLINE=1 is set"):
        HookedTransformer.from_pretrained("gpt2")
    hub.cache("gpt2", "config.json")
    hub.cache("gpt2", "model.safetensors")
    assert HookedTransformer.from_pretrained("gpt2").cfg.n_layers == 2
    assert hub.served == []


def test_real_offline_failure_is_quick(tmp_path, monkeypatch):
    """The real Hub layer, on a machine without internet: a clear error in well under 10 seconds."""
    if hub_layer.hub_reachable(timeout=2):
        pytest.skip("the Hugging Face Hub is reachable from here: this test is about offline machines")
    monkeypatch.setattr(hub_layer, "_probe", {})  # measure the probe too
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name, stand_in in [("gpt2-small", "course-gpt2"), ("solu-2l", "course-attn-only-2l")]:
        start = time.monotonic()
        with pytest.raises(loading.HubUnavailableError) as error:
            HookedTransformer.from_pretrained(name)
        elapsed = time.monotonic() - start
        assert elapsed < 10, f"{name}: gave up after {elapsed:.1f} s"
        assert stand_in in str(error.value) and "unreachable" in str(error.value)
        print(f"{name}: offline failure in {elapsed:.2f} s")


def test_safetensors_reader_reads_every_dtype_as_safetensors_does(tmp_path):
    """hub.SafetensorsReader, which the loaders read weights files with one tensor at a time, gives what the
    safetensors library gives, for each dtype a checkpoint may hold (float8 and unsigned ones included); pop reads a
    tensor and forgets it."""
    from safetensors.torch import load_file, save_file

    gen = torch.Generator().manual_seed(0)
    floats = {str(d).removeprefix("torch."): (torch.randn(3, 5, generator=gen) * 4).to(d)
              for d in (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn,
                        torch.float8_e5m2)}
    ints = {str(d).removeprefix("torch."): torch.randint(0, 100, (4,), generator=gen).to(d)
            for d in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint64, torch.uint32, torch.uint16,
                      torch.uint8)}
    tensors = {**floats, **ints, "bool": torch.tensor([True, False, True]), "empty": torch.zeros(0, 4)}
    path = tmp_path / "all.safetensors"
    save_file(tensors, str(path))
    reader = hub_layer.SafetensorsReader(path, "download it again")
    expected = load_file(str(path))
    assert set(reader) == set(tensors) and len(reader) == len(tensors)
    for name, tensor in expected.items():
        got = reader[name]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape
        assert torch.equal(got.view(torch.uint8), tensor.view(torch.uint8)), name  # bit for bit
    assert torch.equal(reader.pop("float32"), expected["float32"]) and "float32" not in reader
