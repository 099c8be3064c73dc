"""Notebook 05's claims (FactoredMatrix and OV circuits), checked on its stored outputs (see claims_common.py)."""

import re

import torch

from helpers import HookedTransformer, course_models
from tests.notebooks.claims_common import (
    NUMBER,
    fr,
    heatmaps,
    markdown,
    printed,
    scatter_traces,
    value,
    values,
)

EIGEN_CELL = "OV_copying_score = OV_eigenvalues.sum(-1).real / OV_eigenvalues.abs().sum(-1)"
TOP1_MAP_CELL = 'title="Circuit OV complet : fraction des tokens recopiés en tête"'
SCATTER_CELL = "for label, eigen_score in"
ANSWER = "La réponse, sur le modèle embarqué du cours"


def eigen_scores() -> torch.Tensor:
    _, (scores,) = heatmaps("05", 'title="Score de copie (valeurs propres du circuit OV)"')
    return scores  # [layer head]


def top1_rates() -> torch.Tensor:
    _, (rates,) = heatmaps("05", TOP1_MAP_CELL)
    return rates  # [layer head]


def test_05_trace_and_svd_are_computed_from_the_factors():
    text = printed("05", "U, S, V = AB_factor.svd()")
    traces = values(text, r"(?:Trace de la matrice dense \(5 × 5\)|Trace de B @ A \(2 × 2\)|"
                          r"Somme des valeurs propres)\s*: {n}")
    assert len(traces) == 3 and len(set(traces)) == 1
    assert "U @ diag(S) @ V.T == A @ B : True" in text and "orthonormées : True" in text


def test_05_refactoring_balances_the_factors_and_keeps_the_products():
    text = printed("05", 'refactored = pick_model("gpt2-small"')
    learned = values(text, r"poids appris : ‖W_V‖ =\s*{n}, ‖W_O‖ =\s*{n}")
    balanced = values(text, r"refactorisés : ‖W_V‖ =\s*{n}, ‖W_O‖ =\s*{n}")
    assert learned[0] != learned[1] and balanced[0] == balanced[1]  # "les facteurs changent"
    assert "W_V W_O True, W_Q W_Kᵀ True" in text  # "les produits non"
    top_learned = values(text, r"poids appris : .*plus grandes valeurs singulières {n} et {n}")
    top_balanced = values(text, r"refactorisés : .*plus grandes valeurs singulières {n} et {n}")
    assert top_learned[0] != top_learned[1] and top_balanced[0] == top_balanced[1]  # "les mêmes valeurs singulières"


def test_05_the_toy_factored_matrix_agrees_with_the_dense_one():
    norms = values(printed("05", "AB_factor = FactoredMatrix(A, B)"),
                   r"Norme de la (?:matrice dense|version factorisée)\s*: {n}")
    assert len(norms) == 2 and norms[0] == norms[1]  # "elle doit coïncider avec celle de la matrice dense"
    text = printed("05", "dense_eigenvalues = torch.linalg.eigvals(AB)")
    lists = [[float(x) for x in re.findall(rf"({NUMBER})(?:[-+][\d.]+j)?(?:, |\])", line.split(":", 1)[1])]
             for line in text.strip().splitlines()]
    dense_eigen, factored_eigen, dense_singular, factored_singular = lists
    for dense, factored in [(dense_eigen, factored_eigen), (dense_singular, factored_singular)]:
        assert len(dense) == 5 and dense[2:] == [0, 0, 0]  # "dont trois sont nulles"
        assert dense[:2] == factored and 0 not in factored  # "les valeurs non nulles sont les mêmes"
    text = printed("05", "ABC_factor = AB_factor @ C")
    assert "mdim=2" in text  # "reste de dimension cachée 2"
    assert value(text, r"Dimension cachée avant : {n}") == 10
    assert value(text, r"après le produit par une matrice 6 × 3 : {n}") == 6  # "6 au lieu de 10"


def test_05_layers_0_and_1_copy_and_layers_2_and_3_invert():
    scores = eigen_scores()
    assert scores.shape == (4, 8)
    assert (scores[:2] > 0).sum() == 14  # "dans les couches 0 et 1, 14 têtes sur 16 ont un score positif"
    assert (scores[2:] < -0.85).sum() == 13  # "dans les couches 2 et 3, 13 têtes sur 16 sont sous −0,85"
    means = values(printed("05", EIGEN_CELL), r"'{n}'")
    assert means == [round(float(m), 2) for m in scores.mean(-1)]


def test_05_the_most_copying_head_is_L1H6_at_0_93():
    scores = eigen_scores()
    assert "Tête la plus copieuse : L1H6" in printed("05", EIGEN_CELL)
    assert scores.argmax() == 8 + 6 and fr(scores[1, 6].item()) == "0,93"
    assert "la plus copieuse, L1H6, atteint 0,93" in markdown("05", "la carte se coupe en deux")


def test_05_the_most_copying_head_is_the_weakest_induction_head_of_notebook_04():
    _, (induction,) = heatmaps("04", "scores = induction_scores(model, repeated_tokens)")
    induction_heads = induction[1] > 0.5
    assert induction_heads.all() and induction[1].argmin() == 6  # "la plus faible des têtes d'induction"


def test_05_the_eigenvalues_of_L1H6_lie_to_the_right_near_the_real_axis():
    _, ((real, imag),) = scatter_traces("05", "top_eigenvalues = OV_eigenvalues[top_layer, top_head]")
    assert len(real) == 32 and (real > 0).sum() == 28  # "28 de ses 32 valeurs propres"
    assert real[real <= 0].min() > -0.05 and imag.abs().max() < 0.1  # "au-dessus de −0,05", "plus de 0,1"
    assert f"positive, jusqu'à {fr(real.max().item())}" in markdown("05", "C'est ce que montre L1H6")


def test_05_the_dense_full_ov_circuit_takes_about_ten_gigabytes_per_head_and_hundreds_for_the_model():
    text = printed("05", "dense_gb = cfg.d_vocab")
    dense = value(text, r"En dense : {n} Go")
    assert 9 <= dense <= 11  # "une dizaine de gigaoctets"
    config = course_models.model_config("course-gpt2")["config"]
    n_heads = config["n_layers"] * config["n_heads"]
    assert value(text, r"Pour les {n} têtes du modèle") == n_heads == 32
    whole = value(text, r"têtes du modèle : {n} Go en dense")
    assert whole == round(n_heads * config["d_vocab"] ** 2 * 4 / 1e9) and whole > 300  # "plus de 300 Go"


def test_05_the_two_eigenvalue_scores_tell_the_same_story():
    text = printed("05", "full_OV_eigen_score = torch.zeros")
    corr = value(text, r"deux scores de valeurs propres : {n}")
    ov_alone, full = values(text, r"Plus grand écart : L0H6, {n} pour W_OV seul, {n} pour le circuit complet")
    top_full = value(text, r"L1H6, la plus copieuse de la section 3 : {n}")
    answer = markdown("05", "les deux scores de valeurs propres racontent presque la même histoire")
    for number in (corr, ov_alone, full, top_full):
        assert fr(number) in answer
    assert corr > 0.95 and ov_alone > 0 and full > 0  # "ne change pas le signe"
    _, ((ov_scores, full_scores),) = scatter_traces("05", "full_OV_eigen_score = torch.zeros")
    inverting = ov_scores < -0.85
    assert inverting.sum() == 13 and (full_scores[inverting] < 0).all()  # "le circuit complet inverse aussi"
    labels, _ = scatter_traces("05", "full_OV_eigen_score = torch.zeros")
    flipped = (ov_scores.sign() != full_scores.sign()).nonzero().flatten().tolist()
    assert [labels[i] for i in flipped] == ["L3H7"]  # "seule L3H7 ... change de signe"
    assert ov_scores[flipped].abs().max() < 0.1 and full_scores[flipped].abs().max() < 0.1  # "proche de 0"
    assert "seule L3H7, proche de 0 dans les deux, change de\nsigne" in answer


def test_05_unknown_tokens_have_no_embedding_and_a_bias_far_below_the_known_ones(embedded_gpt2):
    text = printed("05", "known_tokens = (model.W_E != 0).any(dim=-1)")
    median, unknown_max = values(text, r"médiane {n} pour les tokens connus, {n} au plus pour les autres")
    assert 90 < median - unknown_max < 110  # "près de 100 logits sous le biais médian des tokens connus"
    unknown = (embedded_gpt2.W_E == 0).all(dim=-1)
    assert round(embedded_gpt2.b_U[~unknown].median().item(), 1) == median
    raw = HookedTransformer.from_pretrained_no_processing("course-gpt2")
    assert (raw.b_U[(raw.W_E == 0).all(dim=-1)] == -100).all()  # "un biais de sortie de −100 dans les poids livrés"


def test_05_no_head_copies_more_than_a_few_percent_on_the_top1_map():
    layout, (rates,) = heatmaps("05", TOP1_MAP_CELL)
    # "l'échelle des couleurs va de 0 à la plus grande valeur"
    assert layout["coloraxis"]["cmin"] == 0 and abs(layout["coloraxis"]["cmax"] - float(rates.max())) < 1e-6
    assert 0 <= rates.min() and rates.max() < 0.05  # "aucune tête ne dépasse quelques pour cent"


def test_05_eigenvalues_and_top1_agree_in_sign():
    scores, rates = eigen_scores(), top1_rates()
    assert (scores[rates >= 0.01] > 0).all()  # "au moins une fois sur cent ont toutes un score ... positif"
    assert rates[scores < 0].max() <= 1 / 200  # "au plus une fois sur 200 tokens"
    text = printed("05", SCATTER_CELL)
    positive = values(text, r"Têtes de score positif \(W_OV seul\) : {n}, fraction recopiée de {n}% en moyenne, "
                            r"{n}% au plus")
    negative = values(text, r"Têtes de score négatif \(W_OV seul\) : {n}, fraction recopiée de {n}% en moyenne, "
                            r"{n}% au plus")
    assert positive[0] + negative[0] == 32 and positive[1] > negative[1] and negative[2] == 0.5
    correlations = values(text, r"et la fraction recopiée : {n}")
    assert all(0.3 < c < 0.8 for c in correlations)  # "des corrélations positives, mais modérées"


def test_05_eigenvalues_and_top1_disagree_in_level_and_order():
    text = printed("05", SCATTER_CELL)
    best_rate = value(text, r"le bon token : L1H1 \({n}%\)")
    eigen_best_rate = value(text, r"L1H6, la plus copieuse par les valeurs propres, recopie le bon token dans {n}%")
    answer = markdown("05", ANSWER)
    assert best_rate < 5  # "aucune tête ne remet le bon token en tête plus de quelques fois sur cent"
    assert eigen_best_rate < best_rate  # "l'ordre n'est pas le même"
    assert f"L1H6, ne le fait que dans {fr(eigen_best_rate, 1)} %" in answer
    assert f"L1H1 le fait dans {fr(best_rate, 1)} %" in answer
    assert "s'accordent sur le **signe**, pas sur le\n**niveau**" in answer


def test_05_the_qk_reading_assumes_learned_positions_as_the_embedded_model_has():
    note = markdown("05", "Lire le circuit QK dans `W_Q W_Kᵀ` suppose")
    assert "des positions\napprises" in note and "le notebook 09 le montre" in note
    assert course_models.model_config("course-gpt2")["config"]["positional_embedding_type"] == "standard"
