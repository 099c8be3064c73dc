"""Notebook 01's claims (loading and caching), checked on its stored outputs (see claims_common.py)."""


import pytest

from tests.notebooks.claims_common import (
    markdown,
    printed,
    value,
    values,
)

BOS_CELL = "ioi_sentences = {"


def test_01_demo_sentence_prefers_the_wrong_name_with_and_without_bos():
    demo = values(printed("01", BOS_CELL), r"phrase de la démo prepend_bos=\w+\s*: .* = {n}")
    assert len(demo) == 2 and all(diff < 0 for diff in demo)


def test_01_other_phrasing_prefers_the_right_name_and_bos_changes_little():
    with_bos, without_bos = values(printed("01", BOS_CELL), r"autre tournure\s+prepend_bos=\w+\s*: .* = {n}")
    assert with_bos > 0 and without_bos > 0
    assert abs(with_bos - without_bos) < 1.0  # "le BOS n'y change presque rien"


def test_01_gpt2_figures_are_the_sources():
    text = markdown("01", "Un fait\nsur le vrai GPT-2 small")
    assert "6,75 avec BOS à 2,78 sans" in text  # TransformerLens' main demo: 6.754 and 2.782


def test_01_folding_keeps_the_log_probs():
    assert "Mêmes log-probabilités (écart < 1e-3) : True" in printed("01", "from_pretrained_no_processing")


def test_01_names_filter_cache_is_exact():
    text = printed("01", "names_filter=[pattern_name]")
    assert "Motifs identiques : True" in text and "Identique à resid_pre de la couche 1 : True" in text


def test_01_unembed_bias_is_a_narrow_band_with_common_words_at_the_bottom():
    text = printed("01", "has_embedding = model.W_E.abs().sum(dim=-1) > 0")
    top, bottom = text.split("Les 10 biais les plus petits :")
    biases = values(top, r"\n\s+{n}\s+'") + values(bottom, r"\n\s+{n}\s+'")
    assert max(biases) - min(biases) < 3  # "moins de 3 logits entre le premier et le dernier"
    for word in ["' over'", "' every'", "' where'"]:
        assert word in bottom


def test_01_john_and_mary_have_the_same_bias():
    ratio = value(printed("01", 'john_bias = model.b_U[model.to_single_token(" John")]'),
                  r"Rapport de probabilités dû au biais : {n}")
    assert ratio == pytest.approx(1.0, abs=5e-4)  # "vaut 1,000 ... au millième près"


def test_01_the_model_puts_john_before_mary():
    text = printed("01", "next_token_probs = logits[0, -1].softmax(dim=-1)")
    assert value(text, r"Probabilité de ' John' : {n}%") > value(text, r"Probabilité de ' Mary' : {n}%")


def test_01_same_seed_same_text():
    assert "Même graine, même texte : True" in printed("01", "first = model.generate(prompt")


def test_01_default_prepend_bos_false_drops_the_bos_unless_asked():
    text = printed("01", 'model_without_bos = pick_model("gpt2-small", default_prepend_bos=False)')
    assert "cfg.default_prepend_bos : False" in text
    assert "Par défaut : ['Hello', ' World']" in text  # "n'ajoutent alors plus de BOS"
    assert "prepend_bos=True : ['<|endoftext|>', 'Hello', ' World']" in text  # "sauf si on passe prepend_bos=True"


def test_01_the_module_tree_shows_the_hook_points_with_their_full_names():
    text = printed("01", "print(model.blocks[0])")
    first_level = text.split("\n")[0]
    for module in ("'embed'", "'pos_embed'", "'blocks'", "'ln_final'", "'unembed'"):
        assert module in first_level
    for part in ("(ln1): LayerNorm", "(attn): Attention", "(ln2): LayerNorm", "(mlp): MLP",
                 "HookPoint(name='blocks.0.attn.hook_pattern')"):
        assert part in text
