"""Notebook 04's claims (induction heads), checked on its stored outputs (see claims_common.py)."""

import json
import math
import re

import torch

from helpers import evals
from tests.notebooks.claims_common import (
    NUMBER,
    markdown,
    printed,
    value,
    values,
)

LOSS_CELL = "losses = loss_by_position(model, repeated_tokens)"


def test_04_repeated_half_is_predicted_and_the_first_half_is_above_uniform():
    text = printed("04", LOSS_CELL)
    first_half = value(text, r"Perte moyenne, première moitié : {n}")
    repeated = value(text, r"Perte moyenne, moitié répétée  : {n}")
    assert first_half > math.log(9000) and repeated < 0.5


def test_04_the_embedded_model_predicts_the_first_repeated_token():
    first_repeated = value(printed("04", LOSS_CELL), r"Perte sur le premier token répété \(position \d+\) : {n}")
    assert first_repeated < 1.0 < math.log(9000)  # "prédit lui aussi, avec une perte bien plus basse que ln(9000)"


def test_04_arena_head_numbers_are_not_attributed_to_attn_only_2l():
    text = markdown("04", "## 7. Le circuit d'induction lu dans les poids")
    assert "attn_only_2L_half" in text and "12 têtes" in text and "8 têtes" in text


def test_04_no_induction_head_in_layer_0():
    text = printed("04", "best_heads = top_heads(scores)")
    layer1 = values(text, r"L1H\d : score d'induction {n}")
    layer0 = values(text, r"L0H\d : score d'induction {n}")
    assert min(layer1) > 0.9 and max(layer0) < 0.05


def test_04_induction_loss_collapses_when_the_score_jumps():
    text = printed("04", "first_losses, repeated_losses, best_scores = [], [], []")
    rows = re.findall(rf"([\d,]+) tokens vus : perte ({NUMBER}) / ({NUMBER}) .* d'induction ({NUMBER})", text)
    first, repeated, best = ([float(r[i]) for r in rows] for i in (1, 2, 3))
    assert abs(first[0] - repeated[0]) < 0.05  # "au tout début, les deux courbes sont confondues"
    assert first[-1] > first[0]  # the first half's loss does not go down
    drops = [a - b for a, b in zip(repeated, repeated[1:], strict=False)]
    jumps = [b - a for a, b in zip(best, best[1:], strict=False)]
    collapse = drops.index(max(drops))
    assert jumps.index(max(jumps)) == collapse  # the score jumps in the interval where the loss collapses
    assert max(best[: collapse + 1]) < 0.1 < 0.5 < best[collapse + 1]  # low, then a jump


def test_04_previous_token_head_and_its_positional_circuit():
    text = printed("04", "previous_token_score = attn_cache")
    assert "Tête token précédent : L0H1" in text
    positional = printed("04", "positional_scores = (positions @ attn_only.QK[0]")
    scores = dict(re.findall(rf"'(L0H\d) ({NUMBER})'", positional))
    assert max(scores, key=lambda h: float(scores[h])) == "L0H1"


def test_04_the_strongest_composition_is_k_composition_from_the_previous_token_head():
    text = printed("04", "excess = (composition - baseline.mean()) / baseline.std()")
    assert text.startswith("1. K-composition L0H1 ->")
    assert value(text.splitlines()[0], r"\({n} écarts-types") > 10


def test_04_the_induction_qk_circuit_beats_chance():
    text = printed("04", "k_circuit = (embed[queries]")
    assert value(text, r"pour {n}% des requêtes") > 100 * value(text, r"hasard : {n}%")


def test_04_induction_loss_agrees_with_the_repeated_half():
    text = printed("04", "library_loss = evals.induction_loss(")
    library, ours = values(text, r"evals.induction_loss : {n} \(notre moitié répétée : {n}\)")
    assert library < 0.5 and ours < 0.5


def test_04_the_induction_heads_write_the_answer_and_the_best_is_the_same():
    text = printed("04", "_, repeated_cache = model.run_with_cache(repeated_tokens)")
    rows = re.findall(rf"L(\d)H(\d) : \+({NUMBER}) dans la répétition, ({NUMBER}) dans la première moitié", text)
    assert len(rows) == 3
    for layer, _, in_repeat, in_first_half in rows:
        # "plus de 2 logits", "un peu moins que rien dans la première moitié"
        assert layer == "1" and float(in_repeat) > 2 and -1 < float(in_first_half) < 0
    dla, induction = re.search(r"attribution directe : (L\dH\d) \(meilleure tête par score d'induction : (L\dH\d)\)",
                               text).groups()
    assert dla == induction  # "la même que par score d'induction"


def test_04_the_checkpoint_schedule_is_read_with_get_checkpoint_labels():
    text = printed("04", "labels, label_type = get_checkpoint_labels(checkpoint_name)")
    n = value(text, r"course-attn-only-2l : {n} checkpoints, étiquetés par pas")
    steps = json.loads(re.search(r"aux pas (\[[\d, ]+\])", text).group(1))
    assert n == len(steps) and steps == sorted(steps)


def test_04_the_embedded_model_bets_that_the_sequence_restarts(embedded_gpt2):
    """Notebook 04's explanation of the predicted first repeated token: in the first half, the model puts
    most of its probability on the first random token ("il a appris à parier ... que la suite va reprendre")."""
    tokens = evals.repeated_random_tokens(embedded_gpt2, seq_len=50, batch=8)
    with torch.no_grad():
        probs = embedded_gpt2(tokens).softmax(-1)  # [batch pos d_vocab]
    first = tokens[:, 1]  # the first random token of each row
    p_first = probs[torch.arange(len(tokens))[:, None], torch.arange(5, 50)[None], first[:, None]]
    assert p_first.mean() > 0.5
