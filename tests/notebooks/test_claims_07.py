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

CURVE = "curve = metric_along_patch(*locate(worst[0]), alphas)"
TO_LOGITS = "to_logits = path_patching(model, corrupted_tokens, clean_cache, ioi_metric)"
BY_INPUT = "upper = to_logits.values[n_layers // 2:]"
CIRCUIT = "edges = []  # (sender, receiver, effect)"


def _to_logits() -> dict[str, tuple[float, float, float]]:
    """Head -> (patch, path to the logits without another head, through other heads) as section 5 prints them."""
    rows = re.findall(rf"(L\dH\d) : patch ({NUMBER}), sans autre tête ({NUMBER}), par d'autres têtes ({NUMBER})",
                      printed("07", TO_LOGITS))
    return {head: tuple(map(float, rest)) for head, *rest in rows}


def test_07_small_entries_sit_on_the_diagonal_and_six_large_ones_are_all_overestimated():
    names, ((exact, approx), _diagonal) = scatter_traces("07", 'title="Attribution contre activation patching"')
    gap = approx - exact
    off = gap.abs() >= 0.05
    assert len(exact) == 212 and (~off).sum() == 206  # "206 des 212 cases"
    assert exact[off].abs().min() >= 0.20  # "les six autres ... au moins 0,20"
    assert (gap[off] > 0).all()  # "l'approximation les surestime toutes"
    at_the_end = [names[i].endswith("to_14") for i in off.nonzero().flatten().tolist()]
    assert sum(at_the_end) == 5  # "Cinq d'entre elles sont à la dernière position"


def test_07_the_worst_entry_is_resid_pre_1_at_the_last_position_and_the_tangent_overestimates_it():
    text = printed("07", "gaps = approx_all - exact_all")
    assert text.strip().splitlines()[0].strip().startswith("resid_pre L1  to_14 :")
    half, half_tangent, end, end_tangent = values(printed("07", CURVE), r": {n} \(tangente {n}\)")
    assert half_tangent > half and end_tangent > end  # "surestime"
    assert f"la tangente annonce {fr(end_tangent)} quand le patch complet ne donne que {fr(end)}" in markdown(
        "07", "la pire case est")
    _, ((_, curve), (_, tangent)) = scatter_traces("07", CURVE)
    steps = curve.diff()
    assert (steps < tangent.diff()).all()  # "passe sous elle dès le premier pas ... sans retrouver [sa pente]"
    assert 3 <= int(steps.argmin()) <= 6 and steps[-1] > steps.min()  # "baisse jusque vers mi-chemin, remonte un peu"


def test_07_along_the_worst_patch_attention_tips_over_and_the_final_layernorm_scale_moves():
    text = printed("07", "kind, patched_layer, j = locate(worst[0])")
    scales = values(text, r"position {n}")
    assert len(scales) == 3 and scales[1] > max(scales[0], scales[2])  # up at mid-path, then back
    shift = value(text, r"attention de la dernière position : {n} \(L3H7\)")
    assert shift > 0.5  # "l'attention bascule"
    prose = markdown("07", "les deux mécanismes sont à l'œuvre le long de ce patch")
    low, high, back = (fr(scale) for scale in scales)
    assert f"de {low} au départ, elle monte à {high} à mi-chemin, puis revient à {back}" in prose
    assert f"(tête L3H7) change de\n{fr(shift)} entre" in prose
    metrics = values(text, r"métrique {n}")
    assert metrics[0] == 0.0 and metrics[2] == value(printed("07", CURVE), r"au bout : {n}")


def test_07_attribution_patching_is_faster_and_the_sequence_counts_are_exact():
    text = printed("07", 'for label, fn in (("activation", activation_patching)')
    cells, sequences, batch = (value(text, pattern) for pattern in (
        r"Carte z_by_pos : {n} cases", r"Activation patching : {n} séquences", r"Attribution patching : {n} séquences"))
    assert cells == 4 * 15 * 8 and sequences == cells * batch and batch == 8  # layers x positions x heads
    activation, attribution = values(text, r"activation {n} s, attribution {n} s")
    assert activation > attribution  # the point of section 4: attribution patching is cheaper


def test_07_L0H5_acts_through_the_mlps_L0H4_through_other_heads_and_L3H1_alone():
    rows = _to_logits()
    assert list(rows)[:2] == ["L0H5", "L3H1"]
    patch, alone, others = rows["L0H5"]
    assert alone > patch > 0.5 and others < 0  # "plus que son patch entier"
    attribution = value(printed("03", HEAD_PATCH).splitlines()[0], r"L0H5 : .*attribution directe {n}")
    assert abs(attribution) < 0.02  # "une attribution directe nulle au notebook 03"
    l0h4 = rows["L0H4"]
    assert l0h4[1] == 0.0 and l0h4[2] == l0h4[0] > 0.1  # "aucun effet sans autre tête : tout son effet"
    assert rows["L3H1"][0] == rows["L3H1"][1]  # "son patch et son chemin sans autre tête coïncident"
    prose = markdown("07", "Le notebook 03 appelle **attribution directe**")
    assert f"sans autre tête vaut +{fr(alone)}" in prose and f"tout son effet (+{fr(l0h4[0])})" in prose
    assert f"coïncident (+{fr(rows['L3H1'][0])})" in prose
    mlp0 = value(printed("03", 'for kind in ["attn_out", "mlp_out"]:'),
                 r"mlp_out : meilleur patch à la couche 0, position ' to_14' \(score {n}\)")
    assert f"de `mlp_out` de la couche 0 à la dernière position restaure {fr(mlp0)}" in prose


def test_07_the_effect_goes_through_the_values_and_adds_up_only_for_L0H4_and_L1H0():
    text = printed("07", BY_INPUT)
    assert "Entrée qui porte le plus d'effet : v" in text
    pattern = r"{h} : par q {{n}}, par k {{n}}, par v {{n}}, somme {{n}} ; par d'autres têtes \(section 5\) {{n}}"
    prose = markdown("07", "l'effet passe par les **valeurs**")
    found = {}
    for head in ("L0H4", "L1H0"):
        q, k, v, total, others = values(text, pattern.format(h=head))
        assert abs(total - others) <= 0.02 and v > 0.9 * total  # "presque tout passe par la valeur"
        found[head] = total, others
    total, others = (fr(x) for x in found["L0H4"])
    assert f"q + k + v (+{total}) redonne à peu près son effet par d'autres têtes (+{others})" in prose
    assert f"pour L1H0 (+{fr(found['L1H0'][0])} contre +{fr(found['L1H0'][1])})" in prose
    sums, gaps = [], []
    for head in ("L0H5", "L0H0"):
        *_, total, others = values(text, pattern.format(h=head))
        assert others < -0.05 and abs(total) < abs(others)  # "n'apparaît presque pas à travers ces trois réceptrices"
        sums.append(total), gaps.append(others)
    assert f"(−{fr(-gaps[0])} et −{fr(-gaps[1])})" in prose
    assert f"(sommes {fr(sums[0]).replace('-', '−')} et +{fr(sums[1])})" in prose


def test_07_the_circuit_acts_through_the_value_of_L3H1():
    text = printed("07", CIRCUIT)
    assert "Réceptrices : L2H3, L2H4, L3H1" in printed("07", BY_INPUT)
    arrows = {(s, r): float(e) for s, r, e in re.findall(rf"(L\dH\d) -> (L\dH\d) \(v\) : ({NUMBER})", text)}
    direct = {head: float(effect) for head, effect in re.findall(rf"(L\dH\d) -> logits : ({NUMBER})", text)}
    assert max(direct, key=direct.get) == "L3H1"  # "la flèche la plus forte vers les logits part de L3H1"
    into_l3h1 = sorted(((e, s) for (s, r), e in arrows.items() if r == "L3H1"), reverse=True)
    assert [s for _, s in into_l3h1[:2]] == ["L0H4", "L1H0"]
    assert max(arrows, key=arrows.get) == ("L0H4", "L3H1")
    l0h5 = [(r, e) for (s, r), e in arrows.items() if s == "L0H5"]  # "n'y apparaît que par une flèche faible"
    assert [r for r, _ in l0h5] == ["L2H4"] and abs(l0h5[0][1]) < 0.1
    prose = markdown("07", "Comment lire le schéma")
    assert f"part de L3H1 (+{fr(direct['L3H1'])})" in prose
    assert f"L0H4 (+{fr(into_l3h1[0][0])}) et L1H0 (+{fr(into_l3h1[1][0])})" in prose
    assert f"vers la valeur de L2H4\n({fr(l0h5[0][1]).replace('-', '−')})" in prose
    by_input = printed("07", BY_INPUT)
    q_and_k = values(by_input, r"par q {n}, par k {n}")
    assert max(abs(x) for x in q_and_k) <= 0.01 and "(au plus 0,01 dans le tableau de la section 6)" in prose
