"""What the notebooks say is what they show: each quantitative claim of the prose, checked on the stored outputs.

nbval proves that the committed outputs reproduce on the embedded models; these tests prove that the prose
around them is true of them. Each test finds one code cell by a line of its source, reads the text that cell
printed, and asserts the claim the notebook's text makes about it (a sign, an order, "above 1", "the best
head"). A notebook re-recorded on a retrained model whose outputs contradict its text fails here.
One test per claim, named after the notebook and the claim.
"""

import base64
import json
import math
import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import HookedTransformer, evals

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NUMBER = r"[-+]?\d+(?:\.\d+)?"


@pytest.fixture(scope="module")
def embedded_gpt2():
    """course-gpt2 as the notebooks load it on the embedded path."""
    return HookedTransformer.from_pretrained("course-gpt2")


@cache
def _cells(prefix: str) -> list[dict]:
    (path,) = NOTEBOOKS.glob(f"{prefix}_*.ipynb")
    return json.loads(path.read_text())["cells"]


def printed(prefix: str, code_line: str) -> str:
    """The text printed by the one code cell of notebook ``prefix`` whose source contains ``code_line``."""
    cells = [c for c in _cells(prefix) if c["cell_type"] == "code" and code_line in "".join(c["source"])]
    assert len(cells) == 1, f"{len(cells)} code cells of notebook {prefix} contain {code_line!r}"
    texts = []
    for output in cells[0]["outputs"]:
        if "text" in output:
            texts.append("".join(output["text"]))
        elif "text/plain" in output.get("data", {}):
            texts.append("".join(output["data"]["text/plain"]))
    text = "".join(texts)
    assert text, f"the cell of notebook {prefix} containing {code_line!r} has no stored text output"
    return text


def values(text: str, pattern: str) -> list[float]:
    """Every number captured by ``pattern`` (each group written as {n}) in ``text``, in order."""
    matches = re.findall(pattern.replace("{n}", f"({NUMBER})"), text)
    found = [float(x) for m in matches for x in (m if isinstance(m, tuple) else (m,))]
    assert found, f"{pattern!r} not found in:\n{text}"
    return found


def value(text: str, pattern: str) -> float:
    (found,) = values(text, pattern)
    return found


def markdown(prefix: str, needle: str) -> str:
    cells = [c for c in _cells(prefix) if c["cell_type"] == "markdown" and needle in "".join(c["source"])]
    assert len(cells) == 1, f"{len(cells)} markdown cells of notebook {prefix} contain {needle!r}"
    return "".join(cells[0]["source"])


def fr(x: float, digits: int = 2) -> str:
    """A number as the French prose writes it: 0.89 -> '0,89'."""
    return f"{x:.{digits}f}".replace(".", ",")


# ------------------------------------------------------------------------------------------------------------
# 01 — loading and caching
# ------------------------------------------------------------------------------------------------------------

BOS_CELL = "ioi_sentences = {"


def test_01_demo_sentence_prefers_the_wrong_name_with_and_without_bos():
    demo = values(printed("01", BOS_CELL), r"phrase de la démo prepend_bos=\w+\s*: .* = {n}")
    assert len(demo) == 2 and all(diff < 0 for diff in demo)


def test_01_other_phrasing_prefers_the_right_name_and_bos_changes_little():
    with_bos, without_bos = values(printed("01", BOS_CELL), r"autre tournure\s+prepend_bos=\w+\s*: .* = {n}")
    assert with_bos > 0 and without_bos > 0
    assert abs(with_bos - without_bos) < 1.0  # "le BOS n'y change presque rien"


def test_01_gpt2_figures_are_the_sources():
    text = markdown("01", "Un fait\nsur le vrai GPT-2 small")
    assert "6,75 avec BOS à 2,78 sans" in text  # TransformerLens' main demo: 6.754 and 2.782


def test_01_folding_keeps_the_log_probs():
    assert "Mêmes log-probabilités (écart < 1e-3) : True" in printed("01", "from_pretrained_no_processing")


def test_01_names_filter_cache_is_exact():
    text = printed("01", "names_filter=[pattern_name]")
    assert "Motifs identiques : True" in text and "Identique à resid_pre de la couche 1 : True" in text


def test_01_unembed_bias_is_a_narrow_band_with_common_words_at_the_bottom():
    text = printed("01", "has_embedding = model.W_E.abs().sum(dim=-1) > 0")
    top, bottom = text.split("Les 10 biais les plus petits :")
    biases = values(top, r"\n\s+{n}\s+'") + values(bottom, r"\n\s+{n}\s+'")
    assert max(biases) - min(biases) < 3  # "moins de 3 logits entre le premier et le dernier"
    for word in ["' over'", "' every'", "' where'"]:
        assert word in bottom


def test_01_john_and_mary_have_the_same_bias():
    ratio = value(printed("01", 'john_bias = model.b_U[model.to_single_token(" John")]'),
                  r"Rapport de probabilités dû au biais : {n}")
    assert ratio == pytest.approx(1.0, abs=5e-4)  # "vaut 1,000 ... au millième près"


def test_01_the_model_puts_john_before_mary():
    text = printed("01", "next_token_probs = logits[0, -1].softmax(dim=-1)")
    assert value(text, r"Probabilité de ' John' : {n}%") > value(text, r"Probabilité de ' Mary' : {n}%")


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


# ------------------------------------------------------------------------------------------------------------
# 02 — hooks and ablation
# ------------------------------------------------------------------------------------------------------------


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


def heatmaps(prefix: str, code_line: str) -> tuple[dict, list[torch.Tensor]]:
    """The layout and the z arrays of the plotly figure drawn by the one code cell containing ``code_line``."""
    cells = [c for c in _cells(prefix) if c["cell_type"] == "code" and code_line in "".join(c["source"])]
    assert len(cells) == 1
    (figure,) = [o["data"]["application/vnd.plotly.v1+json"] for o in cells[0]["outputs"]
                 if "application/vnd.plotly.v1+json" in o.get("data", {})]
    arrays = []
    for trace in figure["data"]:
        z = trace["z"]
        array = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]) if isinstance(z, dict) else np.array(z)
        shape = [int(n) for n in z["shape"].split(",")] if isinstance(z, dict) and "shape" in z else array.shape
        arrays.append(torch.tensor(array.reshape(shape).astype("float64")))
    return figure["layout"], arrays


def scatter_traces(prefix: str, code_line: str) -> tuple[list[str], list[tuple]]:
    """The hover names of the first trace and the (x, y) of each trace (numbers as tensors, labels as lists) of
    the plotly figure drawn by the one code cell containing ``code_line``."""
    cells = [c for c in _cells(prefix) if c["cell_type"] == "code" and code_line in "".join(c["source"])]
    assert len(cells) == 1
    (figure,) = [o["data"]["application/vnd.plotly.v1+json"] for o in cells[0]["outputs"]
                 if "application/vnd.plotly.v1+json" in o.get("data", {})]

    def array(data) -> torch.Tensor | list[str]:
        if isinstance(data, dict):
            return torch.tensor(np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).astype("float64"))
        return data if isinstance(data[0], str) else torch.tensor(data, dtype=torch.float64)  # labels stay labels

    return figure["data"][0].get("hovertext"), [(array(t["x"]), array(t["y"])) for t in figure["data"]]


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


# ------------------------------------------------------------------------------------------------------------
# 03 — IOI and activation patching
# ------------------------------------------------------------------------------------------------------------

HEAD_PATCH = 'head_result = activation_patching(model, corrupted_tokens, clean_cache, ioi_metric, kind="z"'
RESID_MAP = 'token_labels = [f"{token}_{i}" for i, token in enumerate(model.to_str_tokens(clean_tokens[0]))]'


def test_03_resid_patch_restores_S2_at_layer_0_and_the_last_position_at_layer_1():
    text = printed("03", RESID_MAP)
    assert re.search(r"Couche 0 : position la plus restauratrice ' John_10'", text)  # S2, the only change
    assert re.search(r"Couche 1 : position la plus restauratrice ' to_14'", text)  # the last position


def test_03_a_normalised_score_exceeds_one_at_layer_1():
    assert value(printed("03", RESID_MAP), r"Couche 1 : .*\(score {n}\)") > 1


def test_03_attention_and_mlp_of_layer_0_matter_at_the_last_position():
    text = printed("03", 'for kind in ["attn_out", "mlp_out"]:')
    assert "attn_out : meilleur patch à la couche 0, position ' to_14'" in text
    assert "mlp_out : meilleur patch à la couche 0, position ' to_14'" in text
    attn, mlp = (value(text, rf"{kind} : meilleur patch .*\(score {{n}}\)") for kind in ("attn_out", "mlp_out"))
    assert f"({fr(attn)} pour `attn_out`, {fr(mlp)} pour `mlp_out`)" in markdown("03", "les deux cartes ont leur")


def test_03_layer_attribution_ranks_mlp1_then_mlp0_then_attn1():
    text = printed("03", "Somme des contributions")
    assert re.findall(r"\n\s+(\w+) : [-+]", text) == ["1_mlp_out", "0_mlp_out", "1_attn_out"]
    jump = printed("03", "jumps = logit_lens.diff()")
    assert "Plus forte hausse : de '1_mid' à 'final_post'" in jump  # "monte surtout au dernier pas"


def test_03_L1H1_leads_the_direct_attribution_and_L1H2_writes_against_the_answer():
    text = printed("03", 'print("Plus fortes attributions :"')
    assert text.startswith("Plus fortes attributions : L1H1") and "L1H0" in text
    assert value(text, r"Plus faible attribution  : L1H2 \({n}\)") < 0


def figure_text(prefix: str, code_line: str) -> list[list[str]]:
    """The text of the heatmap drawn by the one code cell of notebook ``prefix`` containing ``code_line``."""
    cells = [c for c in _cells(prefix) if c["cell_type"] == "code" and code_line in "".join(c["source"])]
    assert len(cells) == 1
    (figure,) = [o["data"]["application/vnd.plotly.v1+json"] for o in cells[0]["outputs"]
                 if "application/vnd.plotly.v1+json" in o.get("data", {})]
    return figure["data"][0]["text"]


def test_03_the_top_predictions_are_names_and_the_answer_leads_everywhere():
    cell = "top_tokens = [[model.to_string(token)"
    tokens = figure_text("03", cell)
    assert len(tokens) == 8 and all(re.fullmatch(r" [A-Z][a-z]+", t) for row in tokens for t in row)  # "des prénoms"
    first, second = values(printed("03", cell), r"Bonne réponse en tête : {n} prompts sur 8 ; le sujet répété juste "
                                                r"derrière : {n} d'entre eux")
    assert first == 8 and 0 < second < 8
    prose = markdown("03", "toutes les\ncandidates de la carte sont des prénoms")
    assert "en tête pour les 8 prompts" in prose and f"que pour {second:.0f} prompts sur 8" in prose


def test_03_L1H1_looks_at_the_indirect_object_and_L0H0_at_S2():
    text = printed("03", "for layer, head in top_heads:\n    print_attention_from_end(layer, head)")
    io, s1, s2 = map(float, re.search(rf"L1H1 : .*IO ({NUMBER}), S1 ({NUMBER}), S2 ({NUMBER})", text).groups())
    assert io > s1 > s2  # "regarde l'objet indirect plus que le sujet (et presque jamais S2)"
    l0h0_s2 = float(re.search(rf"L0H0 : .*S2 ({NUMBER})", text).group(1))
    assert l0h0_s2 > 0.9  # "presque uniquement S2"


def test_03_L0H0_is_the_strongest_patched_head_with_a_weak_direct_attribution():
    text = printed("03", HEAD_PATCH)
    first = text.splitlines()[0]
    assert first.startswith("L0H0 : patch")
    patch = value(first, r"patch {n},")
    direct = value(first, r"attribution directe {n}")
    assert patch > 1 and abs(direct) < 0.2


def test_03_L0H0_patch_effect_in_logits_exceeds_the_clean_corrupted_gap():
    text = printed("03", "patch_in_logits = head_result.values * (clean_diff - corrupted_diff)")
    effect = value(text, r"L0H0 : effet de patch {n} logits")
    patch = value(printed("03", HEAD_PATCH).splitlines()[0], r"L0H0 : patch {n},")
    gap = effect / patch  # effect = normalised patch x (clean - corrupted)
    assert gap > 0 and effect > gap  # the effect exceeds the clean-corrupted gap: the patch is above 1


def test_03_clean_is_positive_and_corrupted_negative():
    text = printed("03", "clean_logits, clean_cache = model.run_with_cache(clean_tokens)")
    assert value(text, r"prompts propres\s+: {n}") > 0 > value(text, r"prompts corrompus : {n}")


def test_03_the_logit_lens_final_reading_is_the_model_logit_difference():
    text = printed("03", "bias_diff = (model.b_U")
    final_reading = value(text, r"Lecture finale \(final_post\) \+ biais : {n}")
    assert final_reading == value(text, r"Différence de logits du modèle\s+: {n}")
    total = printed("03", "Somme des contributions")
    assert value(total, r"Somme des contributions : {n}") == value(total, r"lecture finale : {n}")


def test_03_the_hypothesis_test_favours_the_mlp_and_finds_no_duplicate_token_head():
    text = printed("03", "by_kind = {kind")
    mlp, attention = value(text, r"MLP {n},"), value(text, r"couches d'attention {n}")
    assert mlp > 2 * attention  # "ses MLP écrivent bien plus de la réponse que ses couches d'attention"
    assert "Hypothèse soutenue par ce test : 1, effacement par un MLP" in text
    assert max(values(text, r"de detect_head {n}")) < 0.05  # "des scores proches de zéro"
    assert value(text, r"la plus forte de toutes les têtes : {n}") < 0.1  # "pas plus que de quelques pour cent"


def test_03_the_famous_prompt_puts_john_first_and_mary_a_distant_second():
    text = printed("03", "utils.test_prompt(famous.prompt, famous.io, model, top_k=5)")
    assert "Rank: 0 " in text
    john = value(text, r"Top 0th token\. Logit: [\d.]+ Prob:\s*{n}% Token: \| John\|")
    mary = value(text, r"Top 1th token\. Logit: [\d.]+ Prob:\s*{n}% Token: \| Mary\|")
    others = values(text, r"Top [2-4]th token\. Logit: [\d.]+ Prob:\s*{n}%")
    assert john > 10 * mary and mary > 10 * max(others)  # "loin derrière", "les autres n'ont presque rien"
    prose = markdown("03", "Regardez où se place « John »")
    assert f"« John » est en tête ({john:.0f} %)" in prose and f"loin derrière ({mary:.0f} %)" in prose


def test_03_the_embedded_logit_difference_is_about_twice_gpt2s():
    text = printed("03", "clean_logits, clean_cache = model.run_with_cache(clean_tokens)")
    clean = value(text, r"prompts propres\s+: {n}")
    corrupted = value(text, r"prompts corrompus : {n}")
    prose = markdown("03", "Un modèle qui fait la tâche a une différence nettement positive")
    assert "mesure 3,55 en moyenne" in prose  # GPT-2 small on the same batch (the Exploratory Analysis demo)
    assert 1.75 < clean / 3.55 < 2.25  # "environ le double"
    assert f"+{fr(clean, 1)} et −{fr(-corrupted, 1)}" in prose
    from training.train import SPECS

    ioi_share = sum(share for source, share in SPECS["course-gpt2"].corpus_mix.items() if source.startswith("ioi"))
    assert f"{100 * ioi_share:.0f} % de son corpus sont des histoires IOI" in prose  # the reason the prose gives


def test_03_at_layer_1_patching_S2_restores_nothing():
    _, (resid_map,) = heatmaps("03", RESID_MAP)
    s2 = resid_map[1, 10]  # ' John_10', the position the resid map's layer 0 restores
    assert "' John_10'" in printed("03", RESID_MAP) and s2 < 0  # "le score y est même négatif"
    assert f"le score y est même négatif, −{fr(-s2.item())}" in markdown("03", "a donc déjà quitté S2")


def test_03_the_logit_lens_rises_mostly_at_the_last_step():
    jump = value(printed("03", "jumps = logit_lens.diff()"), r"Plus forte hausse : de '1_mid' à 'final_post' \({n}\)")
    final = value(printed("03", "bias_diff = (model.b_U"), r"Lecture finale \(final_post\) \+ biais : {n}")
    assert jump > final / 2  # "la logit lens monte surtout au dernier pas"
    _, ((_, lens),) = scatter_traces("03", "jumps = logit_lens.diff()")
    assert (lens.diff() > 0).all()  # "elle monte à chaque étape"


def test_03_L1H1_carries_most_of_the_heads_direct_attribution():
    _, (per_head,) = heatmaps("03", 'title="Attribution directe de chaque tête à la différence de logits"')
    assert per_head.flatten().argmax() == 5  # L1H1
    assert per_head[1, 1] > per_head.sum() / 2  # "porte l'essentiel de l'attribution directe des têtes"


def test_03_the_quoted_ioi_accuracy_is_the_shipped_models():
    metrics = json.loads((NOTEBOOKS.parent / "data/models/course-gpt2/metrics.json").read_text())["final"]
    prose = markdown("03", "Ce petit modèle n'est pas parfait")
    assert f"sur {metrics['ioi_n_prompts']} prompts" in prose
    assert f"dans {fr(100 * metrics['ioi_accuracy'], 1)} % des cas" in prose


@pytest.mark.slow
def test_03_the_failures_come_mostly_from_one_template_and_out_of_structure_three_in_four(embedded_gpt2):
    """Notebook 03's last paragraph, measured outside the notebook as it says: the test prompts' failures come
    mostly from "Friends A and B found O at the P. S gave it to", and out of structure three prompts in four pass."""
    from helpers.ioi import ioi_eval_prompts
    from training.metrics import ioi_logit_diffs

    prose = markdown("03", "Ce petit modèle n'est pas parfait")
    prompts = ioi_eval_prompts(200, seed=1, split="test")  # the reported test prompts (training.metrics)
    failed = [p.template for p, d in zip(prompts, ioi_logit_diffs(embedded_gpt2, prompts), strict=True) if d <= 0]
    worst = max(set(failed), key=failed.count)
    shown = worst.replace("{", "").replace("}", "")
    assert f"« {shown} »" in prose and failed.count(worst) > len(failed) / 2  # "surtout du gabarit"
    out = ioi_eval_prompts(240, seed=1, split="out_of_structure")
    accuracy = (ioi_logit_diffs(embedded_gpt2, out) > 0).mean()
    assert 0.7 <= accuracy < 0.8 and "trois fois sur quatre" in prose


# ------------------------------------------------------------------------------------------------------------
# 04 — induction heads
# ------------------------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------------------
# 05 — FactoredMatrix and OV circuits
# ------------------------------------------------------------------------------------------------------------


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
    norms = values(printed("05", "AB_factor = FactoredMatrix(A, B)"), r"Norme de la (?:matrice dense|version factorisée)\s*: {n}")
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


# ------------------------------------------------------------------------------------------------------------
# 07 — attribution and path patching
# ------------------------------------------------------------------------------------------------------------


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


def test_04_the_embedded_model_bets_that_the_sequence_restarts(embedded_gpt2):
    """Notebook 04's explanation of the predicted first repeated token: in the first half, the model puts
    most of its probability on the first random token ("il a appris à parier ... que la suite va reprendre")."""
    tokens = evals.repeated_random_tokens(embedded_gpt2, seq_len=50, batch=8)
    with torch.no_grad():
        probs = embedded_gpt2(tokens).softmax(-1)  # [batch pos d_vocab]
    first = tokens[:, 1]  # the first random token of each row
    p_first = probs[torch.arange(len(tokens))[:, None], torch.arange(5, 50)[None], first[:, None]]
    assert p_first.mean() > 0.5


# ------------------------------------------------------------------------------------------------------------
# 06 — Othello-GPT
# ------------------------------------------------------------------------------------------------------------

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


def _split_rows(text: str) -> dict[str, tuple[float, float]]:
    """{group: (p gained without edit, p gained with the probe edit)} from the split table."""
    groups = {}
    for block in text.split("\n\n")[1:]:
        name = block.splitlines()[0].split(" :")[0]
        none = value(block, r"sans intervention\s+[\d.]+\s+{n}")
        probe = value(block, r"sonde, après \d couches\s+[\d.]+\s+{n}")
        groups[name] = (none, probe)
    return groups


def test_06_the_probe_edit_raises_p_gained_where_the_probe_read_the_square():
    none, probe = _split_rows(printed("06", SPLIT_CELL))["lue « adversaire » avant"]
    assert probe > none + 0.003  # "elle fait monter la probabilité des coups devenus légaux"


def test_06_the_probe_edit_does_almost_nothing_where_the_probe_misread_the_square():
    none, probe = _split_rows(printed("06", SPLIT_CELL))["mal lue avant"]
    assert abs(probe - none) <= 0.002  # "l'effet est presque nul"


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
