"""Tests for helpers.weights (the weight processing steps) and helpers.conversion.gpt2 (transformers' GPT-2).

Every processing step must keep the model's function: the log-probs stay within 1e-4, on random
models whose LayerNorm weights and biases, and all biases, are random too (with the defaults, 1 and 0,
folding and centring would be trivially exact).
"""

import copy

import pytest
import torch
from conftest import randomise_

from helpers import HookedTransformer, HookedTransformerConfig, weights
from helpers.conversion.gpt2 import config_from_hf_gpt2

TINY = dict(n_layers=2, d_model=16, n_heads=2, d_mlp=32, d_vocab=40, n_ctx=10, seed=0, device="cpu")
STEPS = ["fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases",
         "refactor_factored_attn_matrices"]
NONE = dict.fromkeys(STEPS, False)
ALL = dict.fromkeys(STEPS, True)



def make_model(**overrides) -> HookedTransformer:
    model = HookedTransformer(HookedTransformerConfig(**{**TINY, **overrides}))
    randomise_(model)
    return model


def tokens_for(d_vocab: int, batch=2, pos=8) -> torch.Tensor:
    return torch.randint(0, d_vocab, (batch, pos), generator=torch.Generator().manual_seed(0))


def assert_same_log_probs(a: torch.Tensor, b: torch.Tensor, atol=1e-4):
    torch.testing.assert_close(a.log_softmax(-1), b.log_softmax(-1), rtol=0, atol=atol)


ARCHITECTURES = [dict(act_fn="gelu_new"), dict(act_fn="solu_ln"), dict(attn_only=True),
                 dict(normalization_type="LNPre"), dict(normalization_type=None, act_fn="relu")]


@pytest.mark.parametrize("step", ["none", *STEPS, "all"])
@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_each_processing_step_keeps_the_log_probs(overrides, step):
    model = make_model(**overrides)
    tokens = tokens_for(model.cfg.d_vocab)
    expected = model(tokens)
    flags = {"none": NONE, "all": ALL}.get(step, {**NONE, step: True})
    processed = copy.deepcopy(model).process_weights_(**flags)
    logits = processed(tokens)
    assert_same_log_probs(logits, expected)
    if step == "none":
        torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    if step in ("fold_ln", "all") and overrides.get("normalization_type", "LN") == "LN":
        assert processed.cfg.normalization_type == "LNPre"
        assert not any(name.endswith((".w", ".b")) for name in processed.state_dict())
        assert "blocks.0.ln1.hook_scale" in processed.hook_dict  # still a hook point, now of an LNPre


# ---------------------------------------------------------------- what each step does


def test_fold_ln_centres_the_reading_weights():
    model = make_model().process_weights_(**{**NONE, "fold_ln": True})
    zero = dict(rtol=0, atol=1e-6)
    torch.testing.assert_close(model.W_Q.mean(-2), torch.zeros(2, 2, 8), **zero)
    torch.testing.assert_close(model.W_in.mean(-2), torch.zeros(2, 32), **zero)
    torch.testing.assert_close(model.W_U.mean(0), torch.zeros(40), **zero)


def test_fold_ln_moves_the_weights_into_the_readers():
    model = make_model()
    ln1, attn = model.blocks[0].ln1, model.blocks[0].attn
    W_Q = attn.W_Q * ln1.w[:, None]
    W_Q = W_Q - W_Q.mean(1, keepdim=True)
    b_Q = attn.b_Q + torch.einsum("d,hde->he", ln1.b, attn.W_Q)
    model.process_weights_(**{**NONE, "fold_ln": True})
    torch.testing.assert_close(model.blocks[0].attn.W_Q, W_Q)
    torch.testing.assert_close(model.blocks[0].attn.b_Q, b_Q)


def test_center_writing_weights():
    model = make_model().process_weights_(**{**NONE, "center_writing_weights": True})
    for name in ["W_E", "W_pos", "W_O", "b_O", "W_out", "b_out"]:
        written = getattr(model, name)
        torch.testing.assert_close(written.mean(-1), torch.zeros_like(written.mean(-1)), rtol=0, atol=1e-6)


def test_center_unembed():
    model = make_model().process_weights_(**{**NONE, "center_unembed": True})
    torch.testing.assert_close(model.W_U.mean(-1), torch.zeros(16), rtol=0, atol=1e-6)
    assert abs(model.b_U.mean().item()) < 1e-6


def test_fold_value_biases():
    model = make_model()
    b_O = model.b_O + torch.einsum("lhe,lhed->ld", model.b_V, model.W_O)
    model.process_weights_(**{**NONE, "fold_value_biases": True})
    assert (model.b_V == 0).all()
    torch.testing.assert_close(model.b_O, b_O)


def test_refactor_factored_attn_matrices_balances_the_factors():
    model = make_model()
    QK, OV = model.QK.AB, model.OV.AB
    model.process_weights_(**{**NONE, "refactor_factored_attn_matrices": True})
    torch.testing.assert_close(model.QK.AB, QK, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.OV.AB, OV, rtol=1e-4, atol=1e-4)
    # With the bias as an extra input row, W_Q and W_K are U sqrt(S) and V sqrt(S): equal, diagonal Gram
    # matrices.
    W_Q = torch.cat([model.W_Q, model.b_Q[:, :, None]], dim=2)
    W_K = torch.cat([model.W_K, model.b_K[:, :, None]], dim=2)
    gram_Q, gram_K = W_Q.transpose(-1, -2) @ W_Q, W_K.transpose(-1, -2) @ W_K
    torch.testing.assert_close(gram_Q, gram_K, rtol=1e-4, atol=1e-4)
    diagonal = torch.diag_embed(gram_Q.diagonal(dim1=-2, dim2=-1))
    torch.testing.assert_close(gram_Q, diagonal, rtol=1e-4, atol=1e-4)
    gram_V, gram_O = model.W_V.transpose(-1, -2) @ model.W_V, model.W_O @ model.W_O.transpose(-1, -2)
    torch.testing.assert_close(gram_V, gram_O, rtol=1e-4, atol=1e-4)
    assert (model.b_V == 0).all()


def test_load_and_process_state_dict_into_a_fresh_model():
    source = make_model(act_fn="solu_ln")
    tokens = tokens_for(40)
    target = HookedTransformer(HookedTransformerConfig(**{**TINY, "act_fn": "solu_ln", "seed": 7}))
    target.load_and_process_state_dict(source.state_dict(), **ALL)
    assert target.cfg.normalization_type == "LNPre"
    assert_same_log_probs(target(tokens), source(tokens))
    unprocessed = HookedTransformer(HookedTransformerConfig(**{**TINY, "act_fn": "solu_ln", "seed": 7}))
    unprocessed.load_and_process_state_dict(source.state_dict(), **NONE)
    torch.testing.assert_close(unprocessed(tokens), source(tokens), rtol=0, atol=0)


@pytest.mark.parametrize("overrides", [{}, dict(normalization_type="RMS", gated_mlp=True, n_key_value_heads=1)],
                         ids=["LN", "RMS grouped gated"])
def test_processing_in_place_gives_the_same_bits_and_otherwise_leaves_the_tensors_given(overrides):
    """The default steps (from_pretrained's) leave the caller's tensors as they were; in_place (the caller's own
    copies) changes the large matrices where they lie, with the same result bit for bit."""
    model = make_model(**overrides)
    given = model.state_dict()
    before = {k: v.clone() for k, v in given.items()}
    expected, normalization = weights.process_state_dict(given, model.cfg)
    assert all(torch.equal(v, before[k]) for k, v in given.items())
    own = {k: v.clone() for k, v in before.items()}
    W_U = own["unembed.W_U"]
    processed, same = weights.process_state_dict(own, model.cfg, in_place=True)
    assert same == normalization and processed.keys() == expected.keys()
    for name, value in processed.items():
        assert torch.equal(value, expected[name]), name
    assert processed["unembed.W_U"] is W_U and not torch.equal(W_U, before["unembed.W_U"])


def test_load_and_process_state_dict_rejects_mismatched_weights():
    model = make_model()
    state_dict = model.state_dict()
    state_dict["blocks.0.attn.W_Z"] = state_dict.pop("blocks.0.attn.W_Q")
    with pytest.raises(KeyError, match="W_Z"):
        make_model().load_and_process_state_dict(state_dict, **NONE)


# ---------------------------------------------------------------- GPT-2 from transformers

HF_CONFIGS = [
    dict(n_layer=1, n_embd=16, n_head=2, activation_function="gelu_new"),
    dict(n_layer=2, n_embd=24, n_head=3, n_inner=40, activation_function="gelu"),
    dict(n_layer=3, n_embd=16, n_head=4, n_inner=24, activation_function="relu"),
    dict(n_layer=2, n_embd=16, n_head=2, activation_function="gelu_pytorch_tanh",
         scale_attn_weights=False),
]


def make_hf_gpt2(**kwargs):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=50, n_positions=12, **kwargs)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if ".ln_" in name and name.endswith("weight"):
                param.copy_(1 + 0.3 * noise)
            elif name.endswith("bias"):
                param.copy_(0.3 * noise)
            else:  # weights: much larger than GPT-2's init (std 0.02), so that every part matters
                param.copy_(0.3 * noise)
    return model


@pytest.fixture(scope="module", params=HF_CONFIGS, ids=lambda c: f"{c['activation_function']}{c['n_layer']}L")
def hf_gpt2(request):
    hf = make_hf_gpt2(**request.param)
    tokens = tokens_for(50, batch=2, pos=12)
    with torch.no_grad():
        logits = hf(tokens).logits
    return hf, tokens, logits


def test_gpt2_config(hf_gpt2):
    hf, _, _ = hf_gpt2
    cfg = config_from_hf_gpt2(hf.config)
    c = hf.config
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads) == (c.n_layer, c.n_embd, c.n_head)
    assert (cfg.d_head, cfg.d_mlp) == (c.n_embd // c.n_head, c.n_inner or 4 * c.n_embd)
    assert (cfg.n_ctx, cfg.d_vocab, cfg.eps) == (12, 50, c.layer_norm_epsilon)
    assert cfg.use_attn_scale == c.scale_attn_weights
    assert cfg.act_fn == {"gelu_pytorch_tanh": "gelu_new"}.get(c.activation_function, c.activation_function)


def test_from_pretrained_with_hf_model(hf_gpt2):
    """The classic signature: a user's transformers GPT-2 (fine-tuned...) in place of the Hub's weights."""
    hf, tokens, expected = hf_gpt2
    with torch.no_grad():
        raw = HookedTransformer.from_pretrained("gpt2", hf_model=hf, **NONE, device="cpu")
        assert raw.cfg.normalization_type == "LN" and raw.cfg.model_name == "gpt2"
        torch.testing.assert_close(raw(tokens), expected, rtol=0, atol=1e-4)
        processed = HookedTransformer.from_pretrained("my-fine-tuned-gpt2", hf_model=hf, **ALL, device="cpu")
        assert processed.cfg.normalization_type == "LNPre" and processed.cfg.model_name == "my-fine-tuned-gpt2"
        assert_same_log_probs(processed(tokens), expected)
        assert_same_log_probs(HookedTransformer.from_pretrained("gpt2", hf_model=hf, device="cpu")(tokens), expected)


def test_gpt2_from_a_save_pretrained_directory(hf_gpt2, tmp_path):
    hf, tokens, expected = hf_gpt2
    hf.save_pretrained(tmp_path / "my-gpt2")
    with torch.no_grad():
        raw = HookedTransformer.from_pretrained_no_processing(str(tmp_path / "my-gpt2"))
        torch.testing.assert_close(raw(tokens), expected, rtol=0, atol=1e-4)
        processed = HookedTransformer.from_pretrained(str(tmp_path / "my-gpt2"))  # default processing
        assert_same_log_probs(processed(tokens), expected)
    assert raw.cfg.model_name == "my-gpt2" and raw.tokenizer is None  # no tokenizer saved, d_vocab is not GPT-2's


def test_gpt2_directory_with_its_tokenizer(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from helpers.tokenizer import gpt2_tokenizer

    hf = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16)).eval()
    hf.save_pretrained(tmp_path / "d")
    gpt2_tokenizer().save_pretrained(tmp_path / "d")
    model = HookedTransformer.from_pretrained(str(tmp_path / "d"))
    assert model.to_tokens("Hello world").tolist() == [[50256, 15496, 995]]
    with torch.no_grad():
        assert_same_log_probs(model(model.to_tokens("Hello world")), hf(model.to_tokens("Hello world")).logits)


def test_gpt2_user_model_errors(tmp_path):
    from transformers import BertConfig, BertModel

    with pytest.raises(FileNotFoundError, match="config.json and model.safetensors"):
        HookedTransformer.from_pretrained(str(tmp_path))
    bert = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ValueError, match="type 'bert' is not supported.*GPT2LMHeadModel.*LlamaForCausalLM"):
        HookedTransformer.from_pretrained("bert", hf_model=bert)
    with pytest.raises(ValueError, match="do not apply to hf_model"):
        HookedTransformer.from_pretrained("gpt2", hf_model=bert, checkpoint_index=0)
    with pytest.raises(TypeError, match="hf_model= takes a transformers GPT-2.*got dict"):
        HookedTransformer.from_pretrained("gpt2", hf_model=dict(bert.state_dict()))


def test_gpt2_unsupported_options_are_refused():
    from transformers import GPT2Config

    with pytest.raises(ValueError, match="swish"):
        config_from_hf_gpt2(GPT2Config(activation_function="swish"))
    with pytest.raises(ValueError, match="inverse_layer_idx"):
        config_from_hf_gpt2(GPT2Config(scale_attn_by_inverse_layer_idx=True))
