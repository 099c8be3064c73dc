"""Notebook 01's claims (loading and caching), checked on its stored outputs (see claims_common.py)."""

import ast
import json
import re
from pathlib import Path

import pytest
import torch

from tests.notebooks.claims_common import (
    NOTEBOOKS,
    fr,
    markdown,
    printed,
    value,
    values,
)
from training.corpus import FIRST_NAMES, build_token_corpus
from training.train import SPECS

REPO = Path(__file__).resolve().parents[2]
BOS_CELL = "demo_sentence = "
B_U_CELL = "has_embedding = model.W_E.abs().sum(dim=-1) > 0"
NAMES_CELL = "name_ranks = {"


def _flat(text: str) -> str:
    return " ".join(text.split())


def _source(code_line: str) -> str:
    """The source of the one code cell of notebook 01 that contains ``code_line``."""
    (path,) = NOTEBOOKS.glob("01_*.ipynb")
    cells = [c for c in json.loads(path.read_text())["cells"]
             if c["cell_type"] == "code" and code_line in "".join(c["source"])]
    assert len(cells) == 1
    return "".join(cells[0]["source"])


def test_01_the_embedded_model_is_4_layers_of_8_heads_of_width_256():
    text = printed("01", 'for key in ["n_layers", "n_heads", "d_model"')
    shown = dict(re.findall(r"^\s*(\w+) = (\w+)$", text, flags=re.M))
    expected = {"n_layers": "4", "n_heads": "8", "d_model": "256", "d_head": "32", "d_mlp": "1024",
                "d_vocab": "50257", "normalization_type": "LNPre"}
    assert {key: shown[key] for key in expected} == expected
    prose = _flat(markdown("01", "le modèle est bien plus petit que GPT-2 small"))
    assert "4 couches de 8 têtes, `d_model = 256`, `d_head = 32`, `d_mlp = 1024`" in prose
    assert "vocabulaire de 50 257 tokens" in prose and "`LNPre`" in prose


def test_01_the_model_puts_john_before_mary_by_far():
    text = printed("01", "next_token_probs = logits[0, -1].softmax(dim=-1)")
    john, mary = value(text, r"Probabilité de ' John' : {n}%"), value(text, r"Probabilité de ' Mary' : {n}%")
    assert john > 90 and mary < 1  # "C'est ce que fait le modèle chargé ici, et de loin"


def test_01_the_bos_makes_the_right_name_win_on_the_demo_sentence():
    with_bos, without_bos = values(printed("01", BOS_CELL), r"prepend_bos=\w+\s*: .* = {n}")
    assert with_bos > 5  # "nettement l'avantage à ' Claire'"
    assert -1 < without_bos < 0  # "devient même légèrement négative : il préfère alors ' Mary'"


def test_01_gpt2_figures_are_the_sources():
    text = markdown("01", "Un fait\nsur le vrai GPT-2 small")
    assert "6,75 avec BOS à 2,78 sans" in text  # TransformerLens' main demo: 6.754 and 2.782


def test_01_without_bos_the_eval_prompts_lose_on_average_and_in_count():
    text = printed("01", "eval_prompts = ioi_eval_prompts(100)")
    means = values(text, r"différence moyenne {n}")
    counts = values(text, r"bon nom devant dans {n} phrases sur 100")
    assert len(means) == len(counts) == 2
    assert means[0] > means[1] > 0 and counts[0] > counts[1]  # "la différence moyenne baisse ... se trompe plus"


def test_01_the_embedded_model_always_saw_a_bos_at_position_0():
    source = (REPO / "training" / "train.py").read_text()
    assert "x[:, 0] = END_OF_TEXT_ID" in source  # "chaque séquence d'entraînement ... commence par <|endoftext|>"


def test_01_folding_keeps_the_log_probs():
    assert "Mêmes log-probabilités (écart < 1e-3) : True" in printed("01", "from_pretrained_no_processing")


def test_01_names_filter_cache_is_exact():
    text = printed("01", "names_filter=[pattern_name]")
    assert "Motifs identiques : True" in text and "Identique à resid_pre de la couche 1 : True" in text


def _bias_lists() -> tuple[str, list[tuple[float, str]], list[tuple[float, str]]]:
    """The b_U cell's text, and its (bias, token) lines: the 10 largest, the 10 smallest."""
    text = printed("01", B_U_CELL)
    top, bottom = text.split("Les 10 biais les plus petits :")

    def parse(part: str) -> list[tuple[float, str]]:
        lines = re.findall(r"\n\s+([-+]?\d+\.\d+)\s+('.*?'|\".*?\")(?=\n|$)", part)
        return [(float(bias), ast.literal_eval(token)) for bias, token in lines]

    return text, parse(top), parse(bottom)


def test_01_the_largest_unembed_biases_are_the_corpus_most_frequent_words():
    _, top, _ = _bias_lists()
    tokens = [token for _, token in top]
    assert len(tokens) == 10
    for word in [" the", " was", " a", " to", " and", ",", ".", " John"]:  # the five words of data/corpus.md
        assert word in tokens
    assert "the most frequent words are \"the\", \"was\", \"a\", \"to\", \"and\"" in _flat(
        (REPO / "data" / "corpus.md").read_text())


def test_01_rare_words_and_name_pieces_sit_just_above_the_three_late_tokens():
    _, _, bottom = _bias_lists()
    tokens = [token for _, token in bottom]
    for word in [" cinema", " keeper", " butterfly", "thia", "Mor"]:
        assert word in tokens[:-3]


def test_01_thia_and_mor_are_pieces_of_cynthia_and_morris(embedded_gpt2):
    assert "Cynthia" in FIRST_NAMES and "Morris" in FIRST_NAMES
    assert "thia" in embedded_gpt2.to_str_tokens("Cynthia", prepend_bos=False)
    assert embedded_gpt2.to_str_tokens("Morris", prepend_bos=False)[0] == "Mor"


def test_01_who_him_and_semicolon_sit_near_100_logits_below_the_rest_and_a_few_above_unseen_tokens():
    text, top, bottom = _bias_lists()
    assert [token for _, token in bottom[-3:]] == [" who", " him", ";"]
    late = [bias for bias, _ in bottom[-3:]]
    rest = [bias for bias, _ in top + bottom[:-3]]
    assert 90 < min(rest) - max(late) < 100  # "près de 100 logits sous tous les autres"
    unseen = value(text, r"Biais des tokens sans embedding \(jamais vus\) : {n}")
    assert all(0 < bias - unseen < 3 for bias in late)  # "il n'en a remonté que de moins de 3 logits"
    prose = markdown("01", "Les trois derniers, ` who`, ` him` et `;`")
    assert f"{fr(unseen).replace('-', '−')} affiché plus haut" in prose


def test_01_who_him_and_semicolon_entered_the_corpus_with_stage_4():
    late = {508: " who", 683: " him", 26: ";"}  # GPT-2 ids
    before = build_token_corpus(150_000, seed=0, mix=SPECS["course-gpt2.stage3"].corpus_mix)
    after = build_token_corpus(150_000, seed=0, mix=SPECS["course-gpt2.stage4"].corpus_mix)
    assert not set(late) & set(before.tolist())
    assert set(late) <= set(after.tolist())
    assert SPECS["course-gpt2.stage4"].steps == 1600  # "les 1 600 derniers pas de l'entraînement (sur 5 800)"
    metrics = json.loads((REPO / "data" / "models" / "course-gpt2" / "metrics.json").read_text())
    assert metrics["final"]["step"] == 5800


def test_01_the_model_still_predicts_the_low_bias_tokens_in_context():
    text = printed("01", 'for context, word in [("Later that day, John sat near the kitchen", ";")')
    lines = text.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        word, top = re.search(r"p\((.*?)\) = [\d.]+, token le plus probable : (.*)$", line).groups()
        assert word == top  # "Chaque fois, le token au biais si bas est le plus probable"


def test_01_name_biases_follow_the_corpus_ranks():
    text = printed("01", NAMES_CELL)
    shown = re.findall(r"Biais de ' (\w+)'\s+\(rang\s+(\d+)\) : ([-+]?\d+\.\d+)", text)
    assert [name for name, _, _ in shown] == ["John", "Mary", "Judy", "Marty"]
    assert [int(rank) for _, rank, _ in shown] == [FIRST_NAMES.index(name) + 1 for name, _, _ in shown]
    assert len(FIRST_NAMES) == 376
    biases = [float(b) for _, _, b in shown]
    assert biases == sorted(biases, reverse=True)  # "plus un prénom est rare dans le corpus, plus son biais est bas"


def test_01_the_name_bias_ratios_are_smaller_than_the_frequency_ratios():
    text = printed("01", NAMES_CELL)
    to_mary = value(text, r"Rapport de probabilités ' John' / ' Mary' dû au biais : {n}")
    to_marty = value(text, r"Rapport de probabilités ' John' / ' Marty' dû au biais : {n}")
    assert to_mary == pytest.approx(1.2, abs=0.1)  # "environ 1,2 fois", against 3.3 times as frequent
    assert to_marty == pytest.approx(2.0, abs=0.3)  # "environ 2 fois", against about 100 times
    corpus = _flat((REPO / "data" / "corpus.md").read_text())
    assert "is about 3.3 times as frequent as \" Mary\" (rank 10); the first name is about 100 times" in corpus


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


def test_01_the_course_models_listed_are_shipped_in_data_models():
    text = printed("01", "for name, description in COURSE_MODELS.items():")
    names = [line.split()[0] for line in text.strip().splitlines()]
    assert names == ["course-attn-only-2l", "course-gpt2", "course-othello-gpt", "course-llama"]
    for name in names:  # "livrés avec le dépôt (dans data/models)"
        assert (REPO / "data" / "models" / name / "config.json").exists()


def test_01_layer_0_has_previous_and_current_token_heads_and_the_first_token_heads_come_later(embedded_gpt2):
    (story,) = re.findall(r'story = "(.*)"', _source("story_tokens = model.to_tokens(story)"))
    _, cache = embedded_gpt2.run_with_cache(story, remove_batch_dim=True)
    patterns = torch.stack([cache["pattern", layer] for layer in range(embedded_gpt2.cfg.n_layers)])
    previous = patterns.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)  # [layer head]
    current = patterns.diagonal(dim1=-2, dim2=-1)[..., 1:].mean(-1)
    first = patterns[..., 1:, 0].mean(-1)
    assert previous[0].max() > 0.4 and current[0].max() > 0.4  # "Cherchez des têtes qui regardent ..."
    assert first[0].max() < 0.4 < first[1:].max()  # "pas dans la couche 0 mais dans les suivantes"


def test_01_the_corpus_opens_paragraphs_on_names_without_a_leading_space():
    corpus = _flat((REPO / "data" / "corpus.md").read_text())
    assert "About half the paragraphs (separated by a blank line) and many documents begin with a name" in corpus
