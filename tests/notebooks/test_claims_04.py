"""Notebook 04's claims (induction heads), checked on its stored outputs (see claims_common.py)."""

import base64
import json
import math
import re

import numpy as np
import torch

from helpers import HookedTransformer, loading
from helpers.evals import repeated_random_tokens
from tests.notebooks.claims_common import (
    NUMBER,
    _cells,
    heatmaps,
    markdown,
    printed,
    value,
    values,
)

LOSS_CELL = "losses = loss_by_position(model, repeated_tokens)"
SCORES_CELL = "scores = induction_scores(model, repeated_tokens)"
TOP_CELL = "best_heads = top_heads(scores)"
DLA_CELL = "_, repeated_cache = model.run_with_cache(repeated_tokens)"


def induction_heatmap() -> torch.Tensor:
    _, (scores,) = heatmaps("04", SCORES_CELL)
    return scores  # [layer head]


def loss_curve() -> torch.Tensor:
    """The y of the loss-by-position line drawn by LOSS_CELL: [pos - 1]."""
    (cell,) = [c for c in _cells("04") if c["cell_type"] == "code" and LOSS_CELL in "".join(c["source"])]
    (figure,) = [o["data"]["application/vnd.plotly.v1+json"] for o in cell["outputs"]
                 if "application/vnd.plotly.v1+json" in o.get("data", {})]
    y = figure["data"][0]["y"]
    return torch.tensor(np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).astype("float64"))


def test_04_repeated_half_is_predicted_and_the_first_half_is_above_uniform():
    text = printed("04", LOSS_CELL)
    first_half = value(text, r"Perte moyenne, première moitié : {n}")
    rest = value(text, r"Perte moyenne sur le reste de la répétition \(positions 51 à 99\) : {n}")
    assert first_half > math.log(9000) and rest < 0.1


def test_04_the_first_repeated_token_stays_unpredictable():
    text = printed("04", LOSS_CELL)
    first_repeated = value(text, r"Perte sur le premier token répété \(position 50\) : {n}")
    first_half = value(text, r"Perte moyenne, première moitié : {n}")
    assert math.log(9000) < first_repeated  # "bien au-dessus de ln(9000)"
    assert abs(first_repeated - first_half) < 2  # "du même ordre que celles de la première moitié"
    curve = loss_curve()
    assert len(curve) == 100 and round(curve[50].item(), 2) == first_repeated
    assert curve[51:].max() < 0.3  # "elle ne dépasse plus 0,3 sur tout le reste de la répétition"


def test_04_the_repeated_half_mean_holds_one_impossible_prediction_in_fifty():
    text = printed("04", LOSS_CELL)
    repeated = value(text, r"Perte moyenne, moitié répétée  : {n}")
    first_repeated = value(text, r"Perte sur le premier token répété \(position 50\) : {n}")
    rest = value(text, r"Perte moyenne sur le reste de la répétition \(positions 51 à 99\) : {n}")
    assert repeated > 5 * rest  # "plus de cinq fois plus haute que ce reste"
    assert abs(repeated - (first_repeated + 49 * rest) / 50) < 0.01


def test_04_library_induction_loss_leaves_out_the_two_impossible_predictions(embedded_gpt2):
    """The library's batch (BOS written over the first random token, as its text describes it, rebuilt here):
    the second half's first token and the one after it cannot be copied; its slice starts after them."""
    seq_len = 50
    random = torch.randint(1000, 10000, (8, seq_len), generator=torch.Generator().manual_seed(1))
    tokens = random.repeat(1, 2)
    tokens[:, 0] = embedded_gpt2.tokenizer.bos_token_id
    with torch.no_grad():
        loss = embedded_gpt2.loss_fn(embedded_gpt2(tokens), tokens, per_token=True).mean(0)  # [pos-1]
    assert loss[seq_len - 1] > math.log(9000) and loss[seq_len] > math.log(9000)  # "ni lui ni le token qui le suit"
    rest = value(printed("04", LOSS_CELL), r"reste de la répétition \(positions 51 à 99\) : {n}")
    text = printed("04", "library_loss = evals.induction_loss(")
    library, ours = values(text, r"evals.induction_loss : {n} \(notre moitié répétée : {n}\)")
    assert abs(library - rest) < 0.05  # "à peu près la perte du reste de la répétition"
    assert ours > 3 * library  # "bien plus basse que la nôtre"


def test_04_all_induction_heads_are_in_layer_1():
    scores = induction_heatmap()
    assert scores.shape == (4, 8)
    others = scores[[0, 2, 3]]
    assert others.max() < 0.05  # "aucune tête des couches 0, 2 et 3 ne dépasse 0,05"
    assert (scores[1] > 0.9).sum() == 7 and 0.8 < scores[1, 6] < 0.9  # "sept des huit", "L1H6, vers 0,85"
    per_layer = [float(x) for x in re.findall(rf"'({NUMBER})'", printed("04", TOP_CELL).splitlines()[-1])]
    assert per_layer == [round(float(s), 3) for s in scores.max(-1).values]


def test_04_the_best_induction_head_does_not_stand_out():
    text = printed("04", TOP_CELL)
    top5 = values(text, r"L\dH\d : score d'induction {n}")
    assert len(top5) == 5 and top5[0] - top5[-1] < 0.01  # "les cinq premières se tiennent en moins de 0,01"
    assert all(layer == "1" for layer in re.findall(r"L(\d)H\d : score d'induction", text))


def test_04_arena_head_numbers_belong_to_attn_only_2L_half():
    text = markdown("04", "## 7. Le circuit d'induction lu dans les poids")
    assert "`attn_only_2L_half`" in text and "12 têtes" in text and "8 têtes" in text
    assert "0.7" in text and "1.4 et 1.10" in text
    assert loading.MODELS["attn_only_2L_half"].config["n_heads"] == 12  # "aussi dans le registre du cours"
    assert loading.MODELS["attn-only-2l"].config["n_heads"] == 8


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


def test_04_the_best_direct_writers_are_induction_heads_that_share_the_work():
    text = printed("04", DLA_CELL)
    rows = re.findall(rf"L(\d)H(\d) : \+({NUMBER}) dans la répétition, ({NUMBER}) dans la première moitié", text)
    scores = induction_heatmap()
    assert len(rows) == 3
    for layer, head, in_repeat, in_first_half in rows:
        assert scores[int(layer), int(head)] > 0.9  # "toutes trois au-dessus de 0,9 en section 3"
        assert 0 < float(in_repeat) < 1 and abs(float(in_first_half)) < 0.05  # "moins d'un logit", "presque rien"
    together = value(text, r"Ensemble, les 8 têtes de la couche 1 : \+{n} dans la répétition")
    assert together > 4  # "en ajoutent plus de 4"


def test_04_the_best_direct_writer_is_not_the_best_induction_head():
    text = printed("04", DLA_CELL)
    dla, induction = re.search(r"attribution directe : (L\dH\d) \(meilleure tête par score d'induction : (L\dH\d)\)",
                               text).groups()
    assert dla != induction  # "n'est pas la meilleure par score d'induction"


def test_04_the_checkpoint_schedule_is_read_with_get_checkpoint_labels():
    text = printed("04", "labels, label_type = get_checkpoint_labels(checkpoint_name)")
    n = value(text, r"course-attn-only-2l : {n} checkpoints, étiquetés par pas")
    steps = json.loads(re.search(r"aux pas (\[[\d, ]+\])", text).group(1))
    assert n == len(steps) and steps == sorted(steps)


def test_04_the_trained_attention_only_model_bets_on_tokens_already_seen():
    """Section 6's explanation of the first half's rising loss: the trained model "apprend à parier sur des tokens
    déjà vus" (most of its probability, in the first half, goes to random tokens already in the context)."""
    assert "apprend à parier sur des tokens déjà vus" in markdown("04", "On trace les deux pertes")
    model = HookedTransformer.from_pretrained("course-attn-only-2l")
    tokens = repeated_random_tokens(model, seq_len=50, batch=8, seed=0)
    with torch.no_grad():
        probs = model(tokens).softmax(-1)  # [batch pos d_vocab]
    seen = torch.zeros_like(probs, dtype=torch.bool)
    for pos in range(1, 51):  # the random tokens of the first half seen up to each position
        seen[:, pos:, :].scatter_(-1, tokens[:, pos, None, None].expand(-1, 101 - pos, 1), True)
    mass = (probs * seen).sum(-1)[:, 5:50]  # [batch pos]: probability on tokens already seen, in the first half
    assert mass.mean() > 0.5
