"""Notebook 02's claims (hooks and ablation), checked on its stored outputs (see claims_common.py)."""

import re

import torch

from tests.notebooks.claims_common import (
    NUMBER,
    fr,
    heatmaps,
    markdown,
    printed,
    value,
    values,
)

ABLATION_CELL = "def zero_head_values(value, hook, head):"
ABLATED = r"Perte avec L\dH\d ablatée : {n}"
LOSS_MAPS = 'title="Hausse de la perte quand on éteint une tête"'


def _loss_maps() -> tuple[torch.Tensor, torch.Tensor]:
    """Section 5's maps [layer head]: the loss increase under zero ablation and under mean ablation."""
    _, (zero, mean) = heatmaps("02", LOSS_MAPS)
    return zero, mean


def test_02_ablating_L0H0_raises_the_loss_and_it_is_the_head_section_5_ranks_first():
    text = printed("02", ABLATION_CELL)
    assert re.search(r"Perte avec L0H0 ablatée", text)
    assert value(text, ABLATED) > value(text, r"Perte sans intervention : {n}")  # "La perte monte nettement"
    zero, _ = _loss_maps()
    assert divmod(zero.argmax().item(), zero.shape[1]) == (0, 0)  # "celle dont l'extinction coûte le plus"
    prose = markdown("02", "## 2. Ablater une tête avec `run_with_hooks`")
    assert "On éteint ici L0H0" in prose


def test_02_toy_model_outputs_and_the_zeroed_square():
    toy = printed("02", "out, toy_cache = toy.run_with_cache(torch.tensor(5.0))")
    assert value(toy, r"Sortie du modèle : {n}") == 780
    assert value(printed("02", "def zero_out(activation, hook):"), r"Sortie après intervention : {n}") == -4


def test_02_a_raw_pytorch_hook_survives_reset_hooks_until_its_handle_is_removed():
    text = printed("02", "def zero_out_torch_style(module, inputs, output):")
    assert value(text, r"Avec le hook PyTorch : {n}") == -4  # the same replacement as add_hook's
    assert value(text, r"Après toy.reset_hooks\(\) : {n}") == -4  # "reset_hooks ne connaît pas ce hook"
    assert value(text, r"Après handle.remove\(\) : {n}") == 780


def test_02_a_permanent_hook_stays_until_reset():
    text = printed("02", "model.add_hook(value_hook_name")
    ablated = printed("02", ABLATION_CELL)
    first, later = value(text, r"Premier passage : {n}"), value(text, r"Passage suivant, le hook est toujours là : {n}")
    assert first == later == value(ablated, ABLATED)
    assert value(text, r"Perte : {n}") == value(ablated, r"Perte sans intervention : {n}")
    assert "Après reset_hooks, hooks attachés : 0" in text


def test_02_a_reading_hook_changes_nothing():
    text = printed("02", "logits_with_reader = model.run_with_hooks(")
    assert "Logits identiques à ceux d'un passage sans hook : True" in text


def test_02_our_head_scores_agree_with_detect_head():
    text = printed("02", "classic_scores = torch.stack(")
    for ours, classic in re.findall(rf"notre score ({NUMBER}), detect_head ({NUMBER})", text):
        assert abs(float(ours) - float(classic)) <= 0.02  # "diffèrent un peu"
    for line in text.strip().splitlines():
        head = re.search(r"» (L\dH\d) :", line).group(1)
        assert line.endswith(f"meilleure tête selon detect_head : {head}")


def test_02_a_failing_hook_and_the_with_block_leave_no_hook_behind():
    assert "Hooks attachés après l'erreur : 0" in printed("02", "def broken_hook(activation, hook):")
    text = printed("02", "with model.hooks(fwd_hooks=")
    assert "Hooks attachés dans le bloc : 1" in text and "Hooks attachés après le bloc : 0" in text
    ablated = printed("02", ABLATION_CELL)
    assert value(text, r"Perte dans le bloc : {n}") == value(ablated, ABLATED)
    assert value(text, r"Perte après le bloc : {n}") == value(ablated, r"Perte sans intervention : {n}")


def test_02_the_permanent_hook_survives_reset_hooks_and_not_the_full_reset():
    text = printed("02", 'model.add_perma_hook("hook_embed", count_passes)')
    counted = value(text, r"Passages comptés avec le hook permanent : {n}")
    assert counted == 3  # three passes before reset_hooks(including_permanent=True), the one after reset_hooks too
    assert value(text, r"including_permanent=True\) : {n}") == counted  # "le dernier n'est pas compté"


def test_02_the_layer_summary_is_the_heatmap_and_the_mean_norm_grows_with_each_layer():
    _, (norms,) = heatmaps("02", "torch.stack([resid_norms[layer] for layer in range(model.cfg.n_layers)])")
    text = printed("02", "above = [position_labels[i] for i in (norms > 2 * median)")
    means = values(text, r"moyenne {n},")
    assert torch.allclose(torch.tensor(means, dtype=torch.float64), norms.mean(dim=-1), atol=0.051)
    medians = torch.tensor(values(text, r"médiane {n},"), dtype=torch.float64)
    assert torch.allclose(medians, norms.median(dim=-1).values, atol=0.051)
    assert all(a < b for a, b in zip(means, means[1:], strict=False))  # "la norme moyenne augmente"


def test_02_only_the_last_layer_has_a_dozen_norms_above_twice_the_median_with_the_bos_and_periods():
    _, (norms,) = heatmaps("02", "torch.stack([resid_norms[layer] for layer in range(model.cfg.n_layers)])")
    medians = norms.median(dim=-1).values
    for row, median in zip(norms[:-1], medians[:-1], strict=True):
        assert row.max() < 1.7 * median  # "aucune position n'atteint 1,7 fois la médiane de sa couche"
    last = norms[-1] > 2 * medians[-1]
    assert 10 <= last.sum() <= 14  # "une douzaine de positions"
    text = printed("02", "above = [position_labels[i] for i in (norms > 2 * median)")
    last_line = text.strip().splitlines()[-1]
    assert last_line.startswith(f"Couche {len(norms) - 1} :") and f"{last.sum().item()} positions" in last_line
    assert "'0 <|endoftext|>'" in last_line and last_line.count(" .'") >= 2  # "le token de début et plusieurs points"


def test_02_both_ablations_rank_L0H0_first_by_far_and_L0H7_in_their_top_three():
    zero, mean = _loss_maps()
    for loss_map in (zero, mean):
        second, first = loss_map.flatten().sort().values[-2:]
        assert loss_map[0, 0] == first and first > 1.5 * second  # "de loin la plus importante des deux côtés"
    ranking = printed("02", "best = flat.topk(3).indices.tolist()")
    by_zero, by_mean = (re.findall(r"(L\dH\d) \(", line) for line in ranking.strip().splitlines())
    assert by_zero[0] == by_mean[0] == "L0H0" and "L0H7" in set(by_zero) & set(by_mean)
    prose = markdown("02", "Les deux ablations s'accordent sur l'essentiel")
    assert f"(+{fr(zero[0, 0].item(), 3)} par zéro, +{fr(mean[0, 0].item(), 3)} par la moyenne)" in prose


def test_02_the_ablations_disagree_on_L0H4_and_L0H1_and_both_say_L0H6_hurts():
    zero, mean = _loss_maps()
    ranking = printed("02", "best = flat.topk(3).indices.tolist()")
    by_zero = re.findall(r"(L\dH\d) \(", ranking.strip().splitlines()[0])
    assert by_zero[1] == "L0H4" and mean[0, 4] < zero[0, 4] / 2  # "deuxième par zéro, compte bien moins"
    assert zero[0, 1] > 0 > mean[0, 1]  # "L0H1 change même de signe"
    assert zero[0, 6] < 0 and mean[0, 6] < 0  # "font baisser la perte quelle que soit l'ablation, comme L0H6"
    axis = heatmaps("02", LOSS_MAPS)[0]["coloraxis"]
    assert axis["cmid"] == 0 and axis["colorscale"][0][1] == "rgb(103,0,31)"  # "(en rouge sur les deux cartes)"


def test_02_zero_ablation_is_the_harsher_and_layers_2_and_3_barely_matter():
    zero, mean = _loss_maps()
    assert (zero > 0.05).sum() == 10 and (mean > 0.05).sum() == 5  # "plus de 0,05 pour 10 têtes, contre 5"
    assert zero[2:].abs().max() < 0.1 and mean[2:].abs().max() < 0.1  # "aucune tête des couches 2 et 3 ..."


def test_02_the_detector_maps_run_from_red_at_0_to_blue_at_1_and_most_cells_are_red():
    layout, maps = heatmaps("02", 'title="Scores des détecteurs de têtes"')
    axis = layout["coloraxis"]
    assert (axis["cmin"], axis["cmax"]) == (0, 1)  # cmid is ignored once cmin and cmax are set
    assert axis["colorscale"][0][1] == "rgb(103,0,31)" and axis["colorscale"][-1][1] == "rgb(5,48,97)"
    cells = torch.stack(maps)
    assert (cells < 0.5).sum() > cells.numel() / 2  # "la plupart des cases sont donc rouges"


def test_02_one_or_two_heads_per_detector_and_28_heads_match_none():
    text = printed("02", "THRESHOLD = 0.4")
    found = {label: re.findall(r"L(\d)H\d", line) for label, line in
             re.findall(r"Têtes « (.*?) » au-dessus de 0.4 : (.*)", text)}
    assert found == {"token précédent": ["0"], "token courant": ["0"], "premier token": ["1", "2"]}
    _, maps = heatmaps("02", 'title="Scores des détecteurs de têtes"')
    assert (torch.stack(maps) > 0.4).any(dim=0).logical_not().sum() == 28  # "Les 28 autres têtes"


def test_02_each_best_detector_head_puts_more_than_half_its_attention_where_expected():
    text = printed("02", "best_heads = [divmod(scores.argmax().item(), n_heads) for scores in head_scores]")
    scores = values(text, r"\(score {n}\)")
    assert len(scores) == 3 and min(scores) > 0.5
