"""Notebook 07's claims (attribution and path patching), checked on its stored outputs (see claims_common.py)."""

import re

from tests.notebooks.claims_common import (
    NUMBER,
    fr,
    markdown,
    printed,
    scatter_traces,
    value,
    values,
)
from tests.notebooks.test_claims_03 import HEAD_PATCH


def test_07_the_tangent_underestimates_the_patch_of_the_worst_entry():
    text = printed("07", "curve = metric_along_patch(*locate(worst[0]), alphas)")
    half, half_tangent = value(text, r"À mi-chemin : {n} \("), value(text, r"À mi-chemin : [-\d.]+ \(tangente {n}\)")
    end, end_tangent = value(text, r"au bout : {n} \("), value(text, r"au bout : [-\d.]+ \(tangente {n}\)")
    assert half_tangent < half and end_tangent < end


def test_07_the_worst_entry_is_the_repeated_name_and_its_curve_is_an_s():
    text = printed("07", "gaps = approx_all - exact_all")
    assert text.strip().splitlines()[0].strip().startswith("resid_pre L0  John_10 :")  # S2's embedding
    _, (curve, _tangent) = scatter_traces("07", "curve = metric_along_patch(*locate(worst[0]), alphas)")
    steps = curve[1].diff()
    assert steps[0] < steps[4] and steps[-1] < steps[5]  # "part lentement, monte plus vite au milieu, ralentit"
    printed_curve = printed("07", "curve = metric_along_patch(*locate(worst[0]), alphas)")
    end, end_tangent = values(printed_curve, r"au bout : {n} \(tangente {n}\)")
    assert 0.4 < end_tangent / end < 0.6  # "qu'environ la moitié de l'effet réel au bout"
    assert f"({fr(end_tangent)} contre {fr(end)})" in markdown("07", "La courbe est en S")


def test_07_small_entries_sit_on_the_diagonal_and_nine_large_ones_leave_it():
    names, ((exact, approx), _diagonal) = scatter_traces("07", 'title="Attribution contre activation patching"')
    gap = (approx - exact).abs()
    assert len(exact) == 98 and (gap < 0.05).sum() == 89  # "89 des 98 cases"
    assert exact[gap >= 0.05].abs().min() >= 0.15  # "les neuf autres ... au moins 0,15"
    wrong_side = {names[i] for i in range(len(names)) if exact[i] < -0.1 and approx[i] > -0.01}
    assert wrong_side == {"resid_pre L1  John_10", "attn_out L0  John_10", "mlp_out L0  John_10"}


def test_07_attribution_patching_is_faster_and_the_sequence_counts_are_exact():
    text = printed("07", 'for label, fn in (("activation", activation_patching)')
    cells, sequences, batch = (value(text, pattern) for pattern in (
        r"Carte z_by_pos : {n} cases", r"Activation patching : {n} séquences", r"Attribution patching : {n} séquences"))
    assert cells == 2 * 15 * 4 and sequences == cells * batch and batch == 8  # layers x positions x heads
    activation, attribution = values(text, r"activation {n} s, attribution {n} s")
    assert activation > attribution  # the point of section 4: attribution patching is cheaper


def test_07_the_circuit_acts_through_the_queries_most_on_L1H2():
    text = printed("07", "edges = []  # (sender, receiver, effect)")
    arrows = {receiver: float(effect) for receiver, effect in re.findall(rf"L0H0 -> (L1H\d) \(q\) : ({NUMBER})", text)}
    direct = {head: float(effect) for head, effect in re.findall(rf"(L1H\d) -> logits : ({NUMBER})", text)}
    assert set(arrows) == {"L1H0", "L1H1", "L1H2"}  # "par les requêtes des trois réceptrices"
    assert max(arrows, key=arrows.get) == "L1H2" and direct["L1H2"] < 0  # "surtout ... L1H2, ... négatif"
    assert max(direct, key=direct.get) == "L1H1"  # "le plus fort effet direct positif"
    prose = markdown("07", "Le schéma retrouve la forme de GPT-2 small en petit")
    assert f"L1H2 (+{fr(arrows['L1H2'])})" in prose and f"négatif (−{fr(-direct['L1H2'])})" in prose
    assert f"positif (+{fr(direct['L1H1'])})" in prose


def test_07_the_top_head_saturates_its_attention():
    text = printed("07", "scale_ratio = (clean_cache")
    p = values(text, r"attention maximale de la dernière position {n}")
    assert all(x > 0.85 for x in p)  # p (1 - p) is small: the tangent sees little of a large change
    slopes = values(text, r"p \(1 − p\) = {n}")
    assert len(slopes) == 2 and max(slopes) < 0.25 / 2  # "loin de son maximum de 0,25"
    prose = markdown("07", "est\nsaturée")
    assert f"en moyenne {p[0] * 100:.0f} % de son attention" in prose and f"ne vaut que {fr(slopes[0])}" in prose


def test_07_the_final_layernorm_scale_moves_both_ways_between_the_runs():
    text = printed("07", "scale_ratio = (clean_cache")
    low, high = values(text, r"dernière position : de {n} à {n} selon le prompt")
    assert low < 1 < high  # "plus petite ... ou plus grande"
    prose = markdown("07", "l'échelle de la LayerNorm finale à la dernière position")
    assert f"jusqu'à {fr(low)} fois" in prose and f"jusqu'à {fr(high)} fois" in prose


def test_07_L0H0_direct_path_is_strong_although_its_direct_attribution_is_weak():
    text = printed("07", "to_logits = path_patching(model, corrupted_tokens, clean_cache, ioi_metric)")
    direct = value(text, r"L0H0 : patch [-+\d.]+, chemin direct {n}")
    attribution = value(printed("03", HEAD_PATCH).splitlines()[0], r"attribution directe {n}")
    assert direct > 0.5 and abs(attribution) < 0.2
    assert f"directe de +{fr(attribution)} logit au notebook 03" in markdown("07", "« Direct » n'a pas ici le sens")


def test_07_paths_through_q_k_v_do_not_add_up_to_the_effect_through_other_heads():
    through_others = value(printed("07", "to_logits = path_patching(model, corrupted_tokens, clean_cache, ioi_metric)"),
                           r"L0H0 : .*par d'autres têtes {n}")
    text = printed("07", "upper = to_logits.values[n_layers // 2:]")
    by_input = {x: value(text, rf"par {x} : émettrice la plus forte L0H0 \({{n}}\)") for x in "qkv"}
    assert by_input["q"] > through_others  # "un chemin seul peut faire plus que tous ensemble"
    assert abs(sum(by_input.values()) - through_others) > 0.1
    assert "Entrée qui porte le plus d'effet : q" in text
