"""Notebook 06's claims (Othello-GPT), checked on its stored outputs (see claims_common.py)."""

import json
import re

from tests.notebooks.claims_common import (
    markdown,
    printed,
    value,
    values,
)

PUSH_CELL = "def push_square(resid_stream, hook):"
SPLIT_CELL = "cases = flip_cases(probe_games, targets, first_game=n_train)"



def test_06_the_embedded_state_dict_has_no_layernorm_weights_as_lnpre_says():
    text = printed("06", "_, state_dict = course_models.load_course_model(model.cfg.model_name)")
    assert "Poids de LayerNorm : aucun" in text  # the exercise's LNPre case is the notebook's own
    blocks = json.loads(re.search(r"Blocs : (\[[\d, ]+\])", text).group(1))
    assert blocks == list(range(len(blocks)))
    assert "Exercice 06.2 : réussi" in printed("06", "check_model_from_state_dict(model_from_state_dict")


def test_06_the_edit_reaches_the_target_gap_on_the_mine_side():
    text = printed("06", PUSH_CELL)
    target = value(text, r"Écart cible sur \w+ : {n}")
    assert target > 0  # the gap of a square the probe reads "mine"
    before = values(text, r"avant : {n} {n} {n}")
    after = values(text, r"après : {n} {n} {n}")
    assert after[1] > after[2] and after[1] >= before[1]  # pushed toward "mine", never away from it


def test_06_before_the_edit_the_probe_misreads_and_after_it_reads_mine_clearly():
    """« sur cet exemple [...] la sonde se trompe. Elle donne plus de probabilité à « à moi » qu'à « à
    l'adversaire », la bonne réponse : l'écart lu est positif, mais reste bien en dessous de l'écart cible », then
    « la sonde lit alors nettement « à moi » »; 79: « la sonde penchait déjà, à tort, pour « à moi » »."""
    text = printed("06", PUSH_CELL)
    before = values(text, r"avant : {n} {n} {n}")  # empty, mine, theirs
    after = values(text, r"après : {n} {n} {n}")
    assert before[2] < before[1] and before[0] < 0.05
    gap, target = value(text, r"écart lu avant : {n}"), value(text, r"Écart cible sur \w+ : {n}")
    assert 0 < gap < target / 2
    assert after[1] > 2 * after[2]
    assert "Case modifiée : C6 (adversaire -> à moi)" in printed("06", "flip = best_flip(board_gt")
    assert "la sonde penchait déjà, à tort, pour « à moi »" in " ".join(markdown("06", "Un seul exemple").split())


def test_06_the_single_edit_barely_moves_the_preferred_moves():
    """« l'effet sur les coups préférés est petit (chaque coup présent dans les deux listes y garde sa probabilité
    à 0,02 près) »."""
    text = printed("06", 'show_top(probs_before, len(legal_before), "Avant l\'intervention :")')
    before_text, after_text = text.split("Après l'intervention :")
    before, after = ({m.group(1): float(m.group(2)) for m in re.finditer(r"(\w\d)  p = ([\d.]+)", part)}
                     for part in (before_text, after_text))
    common = before.keys() & after.keys()
    assert len(common) >= 5
    assert all(abs(after[move] - before[move]) < 0.02 for move in common)


def _split_rows(text: str) -> dict[str, tuple[float, float]]:
    """{group: (p gained without edit, p gained with the probe edit)} from the split table."""
    groups = {}
    for block in text.split("\n\n")[1:]:
        name = block.splitlines()[0].split(" :")[0]
        none = value(block, r"sans intervention\s+[\d.]+\s+{n}")
        probe = value(block, r"sonde, après \d couches\s+[\d.]+\s+{n}")
        groups[name] = (none, probe)
    return groups


def test_06_the_probe_edit_raises_p_gained_a_little_in_both_groups():
    """« elle fait monter un peu la probabilité des coups devenus légaux dans les deux groupes, que la sonde ait
    bien lu la case « à l'adversaire » avant l'intervention ou non, de quelques millièmes chaque fois. Les cas mal
    lus sont trop peu nombreux (17 sur 200) »."""
    text = printed("06", SPLIT_CELL)
    rows = _split_rows(text)
    for none, probe in (rows["mal lue avant"], rows["lue « adversaire » avant"]):
        assert 0 < probe - none < 0.01
    misread = int(value(text, r"mal lue avant : {n} cas sur 200"))
    prose = " ".join(markdown("06", "Le découpage dit où agit l'intervention").split())
    assert misread < 20 and f"trop peu nombreux ({misread} sur 200)" in prose


def test_06_mean_difference_acts_more_than_the_probe_and_stays_below_the_ceiling():
    text = printed("06", "one_hot = F.one_hot(y_train, 3).float()")
    probe, mean, ceiling = values(text, r"sonde ×{n}, moyennes ×{n}, plafond ×{n}")
    assert probe < mean < ceiling  # "La direction qui lit le mieux n'est pas forcément celle qui agit le mieux"
    lost_probe, lost_mean = value(text, r"illégaux\) : sonde ×{n}"), value(text, r"illégaux\) : .*moyennes ×{n}")
    assert lost_mean < lost_probe
    random_gained = value(text, r"aléatoire, mêmes normes\s+[\d.]+\s+{n}")
    none_gained = value(text, r"sans intervention\s+[\d.]+\s+{n}")
    assert abs(random_gained - none_gained) < 0.005  # the random control leaves it where it was


def test_06_the_model_plays_legal_moves_far_above_chance():
    text = printed("06", "rate = top1_legal_rate(eval_logits, masks)")
    assert value(text, r"Coup préféré légal \(top-1\) : {n}") > 0.95 > value(text, r"Case vide au hasard\s+: {n}")


def test_06_mine_theirs_reads_better_than_black_white():
    text = printed("06", "W_abs, b_abs = train_probes(")
    mine_theirs = value(text, r"« à moi / à l'adversaire » {n}")
    assert mine_theirs - value(text, r"« noir / blanc » {n}") > 0.1  # "nettement plus basse"
