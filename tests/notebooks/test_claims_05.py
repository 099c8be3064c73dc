"""Notebook 05's claims (FactoredMatrix and OV circuits), checked on its stored outputs (see claims_common.py)."""

import re

from helpers import HookedTransformer
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


def test_05_eigenvalue_and_top1_copying_disagree():
    eigen = value(printed("05", "OV_copying_score = OV_eigenvalues.sum(-1)"), r"L1H0 : score de copie {n}")
    assert eigen > 0.9
    best = value(printed("05", "Tête qui recopie le plus souvent le bon token"), r"le bon token : L\dH\d \({n}%\)")
    assert best < 5  # "aucune tête ne remet le bon token en tête plus de quelques fois sur cent"
    answer = markdown("05", "La réponse, sur le modèle embarqué du cours")
    assert "0,917" in answer and f"{eigen:.3f}".replace(".", ",") in answer


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


def test_05_five_heads_copy_by_eigenvalues_and_L0H3_inverts():
    _, (scores,) = heatmaps("05", 'title="Score de copie (valeurs propres du circuit OV)"')
    above = {f"L{layer}H{head}" for layer, head in (scores > 0.85).nonzero().tolist()}
    assert above == {"L1H0", "L1H1", "L1H2", "L1H3", "L0H0"}  # "cinq têtes sur huit dépassent 0,85"
    assert scores.argmin() == 3 and scores[0, 3] < -0.5  # L0H3 "nettement rouge"
    assert f"L0H3 est nettement rouge (−{fr(-scores[0, 3].item())})" in markdown("05", "cinq\ntêtes sur huit")


def test_05_the_eigenvalues_of_L1H0_lie_to_the_right_near_the_real_axis():
    assert "Tête la plus copieuse : L1H0" in printed("05", "OV_copying_score = OV_eigenvalues.sum(-1)")
    _, ((real, imag),) = scatter_traces("05", "top_eigenvalues = OV_eigenvalues[top_layer, top_head]")
    assert len(real) == 32 and (real > 0).sum() == 28  # "28 de ses 32 valeurs propres"
    assert real.min() > -0.25 and imag.abs().max() < 0.25  # "au-dessus de −0,25", "plus de 0,25"
    assert f"positive, jusqu'à {fr(real.max().item())}" in markdown("05", "C'est ce que montre L1H0")


def test_05_unknown_tokens_have_no_embedding_and_a_bias_far_below_the_known_ones(embedded_gpt2):
    unknown = (embedded_gpt2.W_E == 0).all(dim=-1)
    assert unknown.any() and (~unknown).any()
    gap = embedded_gpt2.b_U[~unknown].min() - embedded_gpt2.b_U[unknown].max()
    assert gap > 90  # "il reste près de 100 logits sous celui de tout token connu"
    raw = HookedTransformer.from_pretrained_no_processing("course-gpt2")
    assert (raw.b_U[(raw.W_E == 0).all(dim=-1)] == -100).all()  # "un biais de sortie de −100 dans les poids livrés"


def test_05_the_top1_map_is_almost_white():
    layout, (rates,) = heatmaps("05", 'title="Circuit OV complet : fraction des tokens recopiés en tête"')
    assert (layout["coloraxis"]["cmin"], layout["coloraxis"]["cmax"]) == (-1, 1)  # "son échelle va de −1 à 1"
    assert 0 <= rates.min() and rates.max() < 0.05  # "aucune tête ne dépasse quelques pour cent"


def test_05_the_two_eigenvalue_scores_correlate_but_L0H0_is_the_outlier():
    text = printed("05", "full_OV_eigen_score = torch.zeros")
    corr = value(text, r"deux scores de valeurs propres : {n}")
    assert corr > 0.8  # "fortement corrélés"
    ov_alone, full = values(text, r"Plus grand écart : L0H0, {n} pour W_OV seul, {n} pour le circuit complet")
    top_full = value(text, r"L1H0, la plus copieuse de la section 3 : {n}")
    answer = markdown("05", "les deux scores de valeurs propres sont fortement corrélés")
    for number in (corr, ov_alone, full, top_full):
        assert fr(number) in answer
    assert full < 0.1 < 0.8 < ov_alone  # "nettement exception"


def test_05_top1_copying_agrees_only_partly_with_the_eigenvalue_scores():
    text = printed("05", "for label, eigen_score in")
    alone, full = values(text, r"et la fraction recopiée : {n}")
    best_rate, best_ov, best_full = values(text, r"le bon token : L0H0 \({n}%\) ; ses scores de valeurs propres : "
                                                 r"{n} \(W_OV seul\), {n} \(circuit complet\)")
    answer = markdown("05", "La réponse, sur le modèle embarqué du cours")
    assert fr(alone) in answer and fr(full) in answer and full < alone < 0.7  # "qu'en partie", "seulement"
    assert f"L0H0 ({fr(best_rate, 1)} %)" in answer and best_full < 0.1  # "un score presque nul"


def test_05_the_dense_full_ov_circuit_takes_about_ten_gigabytes():
    dense = value(printed("05", "dense_gb = cfg.d_vocab"), r"En dense : {n} Go")
    assert 9 <= dense <= 11  # "une dizaine de gigaoctets"
