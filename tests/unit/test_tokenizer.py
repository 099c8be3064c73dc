"""The shipped GPT-2 tokenizer reproduces the tokenization facts printed in the TransformerLens main demo."""

import pytest
import torch

from helpers import HookedTransformer, HookedTransformerConfig

PARAGRAPH = (
    "The first thing you need to figure out is *how* things are tokenized. `model.to_str_tokens` splits a "
    "string into the tokens *as a list of substrings*, and so lets you explore what the text looks like. "
    "To demonstrate this, let's use it on this paragraph."
)
# Token ids printed by the demo for PARAGRAPH with a BOS token in front.
PARAGRAPH_IDS = [
    50256, 464, 717, 1517, 345, 761, 284, 3785, 503, 318, 1635, 4919, 9, 1243, 389, 11241, 1143, 13, 4600, 19849,
    13, 1462, 62, 2536, 62, 83, 482, 641, 63, 30778, 257, 4731, 656, 262, 16326, 1635, 292, 257, 1351, 286,
    850, 37336, 25666, 290, 523, 8781, 345, 7301, 644, 262, 2420, 3073, 588, 13, 1675, 10176, 428, 11, 1309, 338,
    779, 340, 319, 428, 7322, 13,
]


@pytest.fixture(scope="module")
def model():
    cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_heads=2, n_ctx=128, attn_only=True,
                                  tokenizer_name="gpt2", seed=0, device="cpu")
    return HookedTransformer(cfg)


def test_vocabulary_size(model):
    assert model.cfg.d_vocab == 50257
    assert model.tokenizer.bos_token_id == model.tokenizer.eos_token_id == model.tokenizer.pad_token_id == 50256


def test_paragraph_ids_and_round_trip(model):
    tokens = model.to_tokens(PARAGRAPH)
    assert tokens.tolist() == [PARAGRAPH_IDS]
    assert model.to_string(tokens[0]) == "<|endoftext|>" + PARAGRAPH
    str_tokens = model.to_str_tokens(PARAGRAPH)
    assert str_tokens[:6] == ["<|endoftext|>", "The", " first", " thing", " you", " need"]
    assert str_tokens[24:29] == ["_", "t", "ok", "ens", "`"]


def test_padded_batch(model):
    tokens = model.to_tokens(["The cat sat on the mat.", "The cat sat on the mat really hard."])
    assert tokens.tolist() == [
        [50256, 464, 3797, 3332, 319, 262, 2603, 13, 50256, 50256],
        [50256, 464, 3797, 3332, 319, 262, 2603, 1107, 1327, 13],
    ]


def test_token_256_and_single_tokens(model):
    assert model.to_string(256) == " t"
    assert model.to_single_str_token(256) == " t"
    assert model.to_single_token(" The") == 383
    assert model.to_str_tokens(" Claire", prepend_bos=False) == [" Claire"]
    assert model.to_str_tokens("Claire", prepend_bos=False) == ["Cl", "aire"]
    with pytest.raises(ValueError, match="not a single token"):
        model.to_single_token("Claire")


def test_arithmetic(model):
    assert model.to_str_tokens("2342+2017=21445") == ["<|endoftext|>", "23", "42", "+", "2017", "=", "214", "45"]
    assert model.to_str_tokens("1000+1000000=999999") == [
        "<|endoftext|>", "1000", "+", "1", "000000", "=", "9999", "99"]


def test_get_token_position(model):
    assert model.get_token_position(" cat", "The cat sat on the mat") == 2
    assert model.get_token_position(" cat", "The cat sat on the mat", prepend_bos=False) == 1
    text = "The cat sat on the mat. The mat sat on the cat."
    assert model.get_token_position(" cat", text, mode="first") == 2
    assert model.get_token_position(" cat", text, mode="last") == 13


def test_prepend_bos_changes_length(model):
    assert model("Hello World", prepend_bos=True).shape[1] == 3
    assert model("Hello World", prepend_bos=False).shape[1] == 2
    assert torch.equal(model.to_tokens("Hello World", prepend_bos=False)[0], torch.tensor([15496, 2159]))
