"""Tests for helpers.utils: get_act_name, to_numpy, get_device, lm_cross_entropy_loss, sample_logits and
test_prompt."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import HookedTransformer, HookedTransformerConfig, utils

# ---------------------------------------------------------------- get_act_name

CLASSIC_EXAMPLES = [  # the examples of the classic get_act_name docstring
    (("k", 6, "a"), "blocks.6.attn.hook_k"),
    (("pre", 2), "blocks.2.mlp.hook_pre"),
    (("embed",), "hook_embed"),
    (("normalized", 27, "ln2"), "blocks.27.ln2.hook_normalized"),
    (("k6",), "blocks.6.attn.hook_k"),
    (("scale4ln1",), "blocks.4.ln1.hook_scale"),
    (("pre5",), "blocks.5.mlp.hook_pre"),
]
ALIASES = [
    (("pattern", 0), "blocks.0.attn.hook_pattern"),
    (("attn", 0), "blocks.0.attn.hook_pattern"),
    (("a", 0), "blocks.0.attn.hook_pattern"),
    (("pattern", 1, "attn"), "blocks.1.attn.hook_pattern"),
    (("attn_scores", 3), "blocks.3.attn.hook_attn_scores"),
    (("attn_logits", 3), "blocks.3.attn.hook_attn_scores"),
    (("key", 1), "blocks.1.attn.hook_k"),
    (("query", 1), "blocks.1.attn.hook_q"),
    (("value", 1), "blocks.1.attn.hook_v"),
    (("z", 0), "blocks.0.attn.hook_z"),
    (("result", 2), "blocks.2.attn.hook_result"),
    (("mlp_post", 1), "blocks.1.mlp.hook_post"),
    (("mid", 1), "blocks.1.mlp.hook_mid"),
    (("resid_pre", 10), "blocks.10.hook_resid_pre"),
    (("resid_mid", 0), "blocks.0.hook_resid_mid"),
    (("resid_post", 0), "blocks.0.hook_resid_post"),
    (("attn_out", 4), "blocks.4.hook_attn_out"),
    (("mlp_out", 4), "blocks.4.hook_mlp_out"),
    (("q_input", 0), "blocks.0.hook_q_input"),
    (("mlp_in", 0), "blocks.0.hook_mlp_in"),
    (("scale",), "ln_final.hook_scale"),
    (("normalized",), "ln_final.hook_normalized"),
    (("scale", 2), "blocks.2.ln1.hook_scale"),
    (("scale", 2, "ln2"), "blocks.2.ln2.hook_scale"),
    (("pos_embed",), "hook_pos_embed"),
    (("v12",), "blocks.12.attn.hook_v"),
    (("blocks.0.attn.hook_pattern",), "blocks.0.attn.hook_pattern"),
    (("hook_embed",), "hook_embed"),
]


@pytest.mark.parametrize("args, name", CLASSIC_EXAMPLES + ALIASES, ids=lambda x: repr(x))
def test_get_act_name(args, name):
    assert utils.get_act_name(*args) == name


def test_get_act_name_errors():
    with pytest.raises(ValueError, match="nonsense"):
        utils.get_act_name("nonsense", 0)
    with pytest.raises(ValueError, match="layer"):
        utils.get_act_name("pattern")


def test_get_act_name_gives_the_models_hook_names():
    cfg = HookedTransformerConfig(n_layers=2, d_model=8, n_heads=2, d_vocab=10, n_ctx=4, act_fn="solu_ln",
                                  use_attn_result=True, use_split_qkv_input=True, use_hook_mlp_in=True)
    model = HookedTransformer(cfg)
    names = {utils.get_act_name(short) for short in ("embed", "pos_embed", "scale", "normalized")}
    for short in set(utils.ACT_ALIASES) - {"embed", "pos_embed"}:
        names |= {utils.get_act_name(short, layer) for layer in range(2)}
    names |= {utils.get_act_name(short, layer, "ln2") for short in ("scale", "normalized")
              for layer in range(2)}
    # Every hook point can be named, except those of the LayerNorm inside the SoLU MLP.
    assert names == {name for name in model.hook_dict if ".mlp.ln." not in name}


# ---------------------------------------------------------------- small helpers


def test_to_numpy():
    t = torch.arange(6.0, requires_grad=True).reshape(2, 3)
    array = utils.to_numpy(t * 2)
    assert isinstance(array, np.ndarray) and array.shape == (2, 3)
    np.testing.assert_array_equal(array, np.arange(6.0).reshape(2, 3) * 2)
    np.testing.assert_array_equal(utils.to_numpy([1, 2, 3]), np.array([1, 2, 3]))
    assert utils.to_numpy(3.5) == np.array(3.5)
    existing = np.ones(3)
    assert utils.to_numpy(existing) is existing


def test_get_device_stays_on_cpu_unless_asked(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert utils.get_device() == "cpu"


def test_get_device_uses_a_requested_device_that_agrees_with_the_cpu(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DEVICE", "auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    computed = []
    real = utils._fixed_computation

    def fake_computation(device):  # stands in for a GPU that computes like the CPU
        computed.append(device)
        return real("cpu")

    monkeypatch.setattr(utils, "_fixed_computation", fake_computation)
    assert utils.get_device() == "cuda"
    assert "cuda" in computed and "cpu" in computed
    assert "Appareil : cuda" in capsys.readouterr().out


def test_get_device_falls_back_to_cpu_when_the_device_disagrees(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DEVICE", "mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    real = utils._fixed_computation

    def inverted_on_mps(device):  # a device that flips signs, as reported for MPS
        out = real("cpu")
        return -out if device == "mps" else out

    monkeypatch.setattr(utils, "_fixed_computation", inverted_on_mps)
    with pytest.warns(UserWarning, match="disagrees with the CPU"):
        assert utils.get_device() == "cpu"
    assert "Appareil : cpu" in capsys.readouterr().out


def test_get_device_unavailable_or_unknown(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="not available"):
        assert utils.get_device() == "cpu"
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="expected cpu, cuda, mps or auto"):
        utils.get_device()


def test_fixed_computation_is_deterministic_on_cpu():
    assert torch.equal(utils._fixed_computation("cpu"), utils._fixed_computation("cpu"))
    assert utils._agrees_with_cpu("cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lm_cross_entropy_loss(dtype):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=gen, dtype=dtype)
    tokens = torch.randint(0, 11, (3, 5), generator=gen)
    per_token = F.cross_entropy(logits[:, :-1].reshape(-1, 11), tokens[:, 1:].reshape(-1), reduction="none")
    loss = utils.lm_cross_entropy_loss(logits, tokens)
    assert loss.dtype == dtype
    torch.testing.assert_close(loss, per_token.mean())
    per_token_loss = utils.lm_cross_entropy_loss(logits, tokens, per_token=True)
    torch.testing.assert_close(per_token_loss, per_token.reshape(3, 4))


def test_lm_cross_entropy_loss_upcasts_half_precision():
    logits = torch.randn(1, 4, 7).to(torch.bfloat16)
    tokens = torch.tensor([[1, 2, 3, 4]])
    loss = utils.lm_cross_entropy_loss(logits, tokens)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits[0, :-1].float(), tokens[0, 1:]))


def test_sample_logits():
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 3.0, 2.9, 1.0, -1.0]]).expand(2000, -1)
    top2 = utils.sample_logits(logits, top_k=2, generator=gen)
    assert set(top2.tolist()) == {1, 2}
    # top_p: token 1 has p = 0.42, tokens 1 and 2 together 0.80 > 0.6: only they remain.
    nucleus = utils.sample_logits(logits, top_p=0.6, generator=gen)
    assert set(nucleus.tolist()) == {1, 2}
    cold = utils.sample_logits(logits, temperature=0.01, generator=gen)
    assert set(cold.tolist()) == {1}
    free = utils.sample_logits(logits, generator=gen)
    assert set(free.tolist()) == {0, 1, 2, 3, 4}
    freq = torch.bincount(free, minlength=5) / 2000
    torch.testing.assert_close(freq, logits[0].softmax(-1), rtol=0, atol=0.04)


# ---------------------------------------------------------------- test_prompt


@pytest.fixture(scope="module")
def gpt2_model():
    return HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=8, n_heads=2, n_ctx=32,
                                                     tokenizer_name="gpt2", seed=0, device="cpu"))


def test_test_prompt_prints_tokens_rank_and_top_k(gpt2_model, capsys):
    prompt, answer = "The capital of France is", "Paris"
    utils.test_prompt(prompt, answer, gpt2_model, top_k=5)
    out = capsys.readouterr().out

    tokens = gpt2_model.to_tokens(prompt + " " + answer)
    answer_token = gpt2_model.to_single_token(" Paris")
    assert tokens[0, -1].item() == answer_token
    with torch.no_grad():
        logits = gpt2_model(tokens)[0, -2]  # the position that predicts the answer
    rank = logits.argsort(descending=True).tolist().index(answer_token)

    assert f"Tokenized prompt: {gpt2_model.to_str_tokens(prompt)}" in out
    assert "Tokenized answer: [' Paris']" in out
    assert re.search(r"Rank: (\d+)", out).group(1) == str(rank)
    top = re.findall(r"Top (\d+)th token\. Logit: *(-?[\d.]+) .*Token: \|(.*)\|", out)
    assert [int(i) for i, _, _ in top] == list(range(5))
    assert top[0][2] == gpt2_model.to_single_str_token(logits.argmax().item())
    assert float(top[0][1]) == pytest.approx(logits.max().item(), abs=0.01)
    assert f"Ranks of the answer tokens: [(' Paris', {rank})]" in out


def test_test_prompt_with_several_answer_tokens(gpt2_model, capsys):
    prompt, answer = "Bonjour", " tout le monde"
    utils.test_prompt(prompt, answer, gpt2_model, prepend_bos=False, print_details=False)
    out = capsys.readouterr().out
    tokens = gpt2_model.to_tokens(prompt + answer, prepend_bos=False)
    n_prompt = len(gpt2_model.to_str_tokens(prompt, prepend_bos=False))
    with torch.no_grad():
        logits = gpt2_model(tokens)[0]
    ranks = [logits[pos - 1].argsort(descending=True).tolist().index(tokens[0, pos].item())
             for pos in range(n_prompt, tokens.shape[1])]
    assert [int(r) for r in re.findall(r"Rank: (\d+)", out)] == ranks
    assert "Top 0th token" not in out
    assert "<|endoftext|>" not in out.splitlines()[0]
