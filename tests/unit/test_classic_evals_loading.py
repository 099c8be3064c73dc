"""The classic names of evals, head_detector and loading that item 3 of issue 31 adds: evals.IOIDataset (and
ioi_eval on it), head_detector.ErrorMeasure / HeadName, loading.get_pretrained_model_config and
fill_missing_keys (also under TransformerLens' module name, helpers.loading_from_pretrained)."""

import typing

import pytest
import torch

from helpers import HookedTransformer, evals, head_detector, hub, loading, loading_from_pretrained
from helpers.ioi import EVAL_TEMPLATES, NAMES

TEMPLATES = ["[A] met [B] at the [PLACE]. [B] gave the [THING] to [A]"]
NOUNS = {"PLACE": ["park", "zoo"], "THING": ["ball", "kite"]}


@pytest.fixture(scope="module")
def gpt2():
    return HookedTransformer.from_pretrained("course-gpt2")


def test_ioi_dataset_samples_follow_its_templates(gpt2):
    names = ["John", "Mary", "Tom"]
    data = evals.IOIDataset(gpt2.tokenizer, templates=TEMPLATES, names=names, nouns=NOUNS, num_samples=12, seed=4)
    assert len(data) == len(data.samples) == 12
    for sample in data.samples:
        io, subject = sample["IO"].strip(), sample["S"].strip()
        assert io != subject and {io, subject} <= set(names)
        assert sample["text"].startswith(f"{io} met {subject} at the ") and sample["text"].endswith(f"to {io}")
        place, thing = sample["text"].split("the ")[1].split(".")[0], sample["text"].split("the ")[2].split(" ")[0]
        assert place in NOUNS["PLACE"] and thing in NOUNS["THING"]
    item = data[0]
    assert item["prompt"][0] == gpt2.tokenizer.bos_token_id
    assert item["prompt"][1:].tolist() == gpt2.tokenizer.encode(data.samples[0]["text"])
    assert item["IO"].tolist() == gpt2.tokenizer.encode(data.samples[0]["IO"])
    no_bos = evals.IOIDataset(gpt2.tokenizer, templates=TEMPLATES, names=names, nouns=NOUNS, num_samples=12, seed=4,
                              prepend_bos=False)
    assert torch.equal(no_bos[0]["prompt"], item["prompt"][1:])


def test_ioi_dataset_seed_and_symmetry(gpt2):
    def texts(**kwargs):
        return [s["text"] for s in evals.IOIDataset(gpt2.tokenizer, num_samples=20, **kwargs).samples]

    state = torch.random.get_rng_state()
    assert texts(seed=1) == texts(seed=1) != texts(seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert len(set(texts())) > 1
    pairs = evals.IOIDataset(gpt2.tokenizer, num_samples=10, symmetric=True, seed=0).samples
    assert len(pairs) == 10
    for first, second in zip(pairs[::2], pairs[1::2], strict=True):
        assert (first["IO"], first["S"]) == (second["S"], second["IO"])
    with pytest.raises(ValueError, match="two different names"):
        evals.IOIDataset(gpt2.tokenizer, names=["John"], num_samples=1)


def test_ioi_dataset_defaults_are_the_held_out_set(gpt2):
    data = evals.IOIDataset(gpt2.tokenizer, num_samples=50, seed=0)
    assert data.names == NAMES and len(data.templates) == 2 * len(EVAL_TEMPLATES)
    assert set(data.nouns) == {"LOCATION", "OBJECT"}
    assert all(len(gpt2.tokenizer.encode(s["IO"])) == 1 for s in data.samples)  # one token per name


def test_ioi_eval_on_an_ioi_dataset_is_the_logit_difference_before_the_answer(gpt2):
    data = evals.IOIDataset(gpt2.tokenizer, num_samples=16, seed=5)
    diffs = []
    for i in range(len(data)):
        item = data[i]
        logits = gpt2(item["prompt"][None, :-1])[0, -1]  # the IO name is one token, the prompt's last
        diffs.append((logits[item["IO"][0]] - logits[item["S"][0]]).item())
    result = evals.ioi_eval(gpt2, dataset=data, batch_size=5)
    assert result["Logit Difference"] == pytest.approx(sum(diffs) / len(diffs), abs=1e-4)
    assert result["Accuracy"] == sum(d > 0 for d in diffs) / len(diffs)


def test_head_detector_type_aliases():
    assert set(typing.get_args(head_detector.ErrorMeasure)) == {"mul", "abs"} == set(head_detector.ERROR_MEASURES)
    assert typing.get_args(head_detector.HeadName) == head_detector.HEAD_NAMES


def test_pretrained_config_without_weights_is_from_pretrained_s():
    get = loading_from_pretrained.get_pretrained_model_config
    assert get is loading.get_pretrained_model_config
    for name, kwargs in [("course-attn-only-2l", {}), ("course-attn-only-2l", dict(checkpoint_index=2))]:
        plain = HookedTransformer.from_pretrained_no_processing(name, **kwargs).cfg
        assert get(name, **kwargs).to_dict() == plain.to_dict()
        folded = HookedTransformer.from_pretrained(name, **kwargs).cfg
        assert get(name, fold_ln=True, **kwargs).to_dict() == folded.to_dict()
    cfg = get("othello-gpt", n_ctx=30, first_n_layers=2, default_prepend_bos=False, use_attn_result=True)
    assert (cfg.n_layers, cfg.n_ctx, cfg.d_model, cfg.default_prepend_bos, cfg.use_attn_result) == (2, 30, 512, False,
                                                                                                    True)
    with pytest.raises(ValueError, match="one device"):
        get("othello-gpt", n_devices=2)
    with pytest.raises(TypeError, match="unknown arguments"):
        get("othello-gpt", n_head=4)


def test_a_gpt2_config_needs_only_its_config_json(offline_cache):
    with pytest.raises(hub.HubUnavailableError, match="hf download gpt2 config.json"):
        loading.get_pretrained_model_config("gpt2-small")
    offline_cache.hf_download("hf download gpt2 config.json")  # no weights in the cache
    cfg = loading.get_pretrained_model_config("gpt2-small", device="cpu")
    assert (cfg.model_name, cfg.n_layers, cfg.d_model, cfg.act_fn) == ("gpt2", 2, 64, "gelu_new")
    given = loading.get_pretrained_model_config("gpt2", hf_cfg=dict(n_layer=3, n_embd=48, n_head=4, vocab_size=100,
                                                                    n_positions=32, model_type="gpt2"))
    assert (given.n_layers, given.d_model, given.n_ctx) == (3, 48, 32)


def test_fill_missing_keys_takes_the_model_s_own_tensors():
    model = HookedTransformer(dict(n_layers=1, d_model=16, n_ctx=8, n_heads=2, d_vocab=20, attn_only=True, seed=0))
    full = model.state_dict()
    partial = {k: v for k, v in full.items() if not k.endswith("W_Q") and not k.endswith("b_O")}
    with pytest.warns(UserWarning, match=r"no blocks\.0\.attn\.W_Q;"):
        filled = loading.fill_missing_keys(model, partial)
    assert filled is partial and filled.keys() == full.keys()
    assert all(torch.equal(filled[k], full[k]) for k in full)
    assert loading.fill_missing_keys(model, dict(full)).keys() == full.keys()
