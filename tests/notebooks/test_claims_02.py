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


def test_02_ablating_L0H1_lowers_the_loss_on_the_text():
    text = printed("02", "def zero_head_values(value, hook, head):")
    clean = value(text, r"Perte sans intervention : {n}")
    ablated = value(text, r"Perte avec L0H1 ablatée : {n}")
    assert ablated < clean  # "la perte **baisse** quand on ablate L0H1"


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
    ablated = printed("02", "def zero_head_values(value, hook, head):")
    first, later = value(text, r"Premier passage : {n}"), value(text, r"Passage suivant, le hook est toujours là : {n}")
    assert first == later == value(ablated, r"Perte avec L0H1 ablatée : {n}")
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
    ablated = printed("02", "def zero_head_values(value, hook, head):")
    assert value(text, r"Perte dans le bloc : {n}") == value(ablated, r"Perte avec L0H1 ablatée : {n}")
    assert value(text, r"Perte après le bloc : {n}") == value(ablated, r"Perte sans intervention : {n}")


def test_02_the_permanent_hook_survives_reset_hooks_and_not_the_full_reset():
    text = printed("02", 'model.add_perma_hook("hook_embed", count_passes)')
    counted = value(text, r"Passages comptés avec le hook permanent : {n}")
    assert counted == 3  # three passes before reset_hooks(including_permanent=True), the one after reset_hooks too
    assert value(text, r"including_permanent=True\) : {n}") == counted  # "le dernier n'est pas compté"


def test_02_the_bos_norm_stands_out_at_layer_0_and_every_norm_grows_at_layer_1():
    _, (norms,) = heatmaps("02", "torch.stack([resid_norms[layer] for layer in range(model.cfg.n_layers)])")
    layer0, layer1 = norms
    assert layer0[0] > 2 * layer0[1:].max()  # "plus du double de celle de toute autre position"
    assert (layer1[1:] > layer1[0]).sum() >= 2  # "en couche 1, plusieurs positions le dépassent"
    assert (layer1 / layer0).min() >= 1.3  # "la norme augmente à chaque position, d'au moins 30 %"


def test_02_zero_and_mean_ablation_agree_only_partly():
    ranking = printed("02", "best = flat.topk(3).indices.tolist()")
    by_zero, by_mean = (re.findall(r"(L\dH\d) \(", line) for line in ranking.strip().splitlines())
    assert {"L0H3", "L1H3"} <= set(by_zero) & set(by_mean)
    assert by_zero[0] == "L0H2" and "L0H2" not in by_mean
    _, (zero, mean) = heatmaps("02", 'title="Hausse de la perte quand on éteint une tête"')
    assert mean[0, 2] < 0 < zero[0, 2]  # L0H2 lowers the loss when mean-ablated
    assert zero[0, 1] < 0 < mean[0, 1]  # L0H1: the other way round
    assert zero.max() > 2 * mean.max()  # "plus du double"
    prose = markdown("02", "Les deux ablations ne s'accordent qu'en partie")
    assert f"L0H2, de loin la plus importante par zéro (+{fr(zero[0, 2].item(), 3)})" in prose


def test_02_the_detector_maps_run_from_red_at_0_to_blue_at_1_and_most_cells_are_red():
    layout, maps = heatmaps("02", 'title="Scores des détecteurs de têtes"')
    axis = layout["coloraxis"]
    assert (axis["cmin"], axis["cmax"]) == (0, 1)  # cmid is ignored once cmin and cmax are set
    assert axis["colorscale"][0][1] == "rgb(103,0,31)" and axis["colorscale"][-1][1] == "rgb(5,48,97)"
    cells = torch.stack(maps)
    assert (cells < 0.5).sum() > cells.numel() / 2  # "la plupart des cases sont donc rouges"


def test_02_three_of_the_four_layer_1_heads_attend_to_the_first_token():
    text = printed("02", "THRESHOLD = 0.4")
    first_token = re.search(r"« premier token » au-dessus de 0.4 : (.*)", text).group(1)
    assert sorted(re.findall(r"L1H\d", first_token)) == ["L1H0", "L1H1", "L1H2"]


def test_02_each_best_detector_head_puts_more_than_half_its_attention_where_expected():
    text = printed("02", "best_heads = [divmod(scores.argmax().item(), n_heads) for scores in head_scores]")
    scores = values(text, r"\(score {n}\)")
    assert len(scores) == 3 and min(scores) > 0.5
