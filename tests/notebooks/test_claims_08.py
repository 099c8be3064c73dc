"""What notebook 08 says is what it shows: each quantitative claim of its prose, checked on the stored outputs
(the pattern of the other test_claims_NN.py files, whose readers are in claims_common.py)."""

import re

from helpers.othello import square_label
from tests.notebooks.claims_common import heatmaps, markdown, printed, value, values

PROBES = "mlp_rel = fit_mlp_probes("
FEATURES = "features = torch.cat("
SWEEP = 'sweep["seule", depth] = scores('
COMPONENTS = "heads_before, mlps_before, scale = component_outputs("
DIRECT = "logits_direct = model.run_with_hooks("
DLA = "head_dla, neuron_dla = "
PARITY = "mine_sign = torch.where("
SHARE = "share = one_move_share(move_weights)"
GROUPS = "groups = {"
NEIGHBOURS = "neighbour_effect = torch.zeros(64)"
ABLATION = "control = int(torch.randint("
LAYERS = "layer_ablations = {}"
HEADS = "head_ablations = {}"
NEURONS = "top10 = neuron_attr.topk(10).indices"
AMPLITUDES = "amplitudes = (1, 2, 4, 8, 16)"
TOTAL = "by_estimate = estimate.argsort()"


def table(code_line: str) -> tuple[list[str], list[list[float]]]:
    """The column names and the rows (one per depth) of a table printed as 'profondeur  name  name ...'."""
    lines = printed("08", code_line).splitlines()
    header = next(line for line in lines if line.startswith("profondeur"))
    names = re.split(r"\s{2,}", header.strip())[1:]
    rows = [[float(x) for x in line.split()[1:]] for line in lines if re.fullmatch(r"\s*\d+(\s+[-\d.]+)+", line)]
    assert rows and all(len(row) == len(names) for row in rows), lines
    return names, rows


def column(code_line: str, name: str) -> list[float]:
    names, rows = table(code_line)
    return [row[names.index(name)] for row in rows]


def best_row() -> dict[str, float]:
    line = printed("08", PROBES).split("Meilleure profondeur")[1].splitlines()[1]
    return {name.strip(): float(x) for name, x in re.findall(r"([^|]+?) (\d\.\d+)", line)}


# --- 2. linear and MLP probes ----------------------------------------------------------------------------


def test_08_black_white_linear_probe_never_exceeds_055():
    assert max(column(PROBES, "N/B lin")) <= 0.55


def test_08_the_probe_by_player_reads_colours_almost_as_well_as_mine_theirs():
    best = best_row()
    assert best["N/B lin/joueur"] >= best["N/B lin"] + 0.15
    assert best["moi/adv lin"] - 0.08 <= best["N/B lin/joueur"] <= best["moi/adv lin"]  # "à peine moins"


def test_08_the_mlp_probe_beats_the_linear_one_in_neither_encoding_nor_on_empty():
    best = best_row()
    assert best["N/B MLP"] <= best["N/B lin"] + 0.01  # "ne fait pas mieux"
    assert best["moi/adv MLP"] < best["moi/adv lin"]
    assert best["vide MLP"] < best["vide lin"]


def test_08_empty_is_read_almost_perfectly_from_the_first_layer():
    assert column(PROBES, "vide lin")[1] >= 0.95
    assert column(FEATURES, "vide")[1] >= 0.95


def test_08_the_mlp_budget_in_the_text_is_the_code_s():
    source = "".join(next(c["source"] for c in _code_cells() if PROBES in "".join(c["source"])))
    assert "n_fit = 40 * N_CTX" in source and "hidden=64, steps=100" in source
    text = markdown("08", "premières parties d'entraînement")
    assert "40 premières parties" in text and "64 neurones cachés" in text and "100 pas d'Adam" in text


def _code_cells():
    from tests.notebooks.claims_common import _cells
    return [c for c in _cells("08") if c["cell_type"] == "code"]


# --- 3. simpler features -----------------------------------------------------------------------------------


def test_08_who_plays_is_read_at_every_depth():
    """« « Qui joue » se lit à toutes les profondeurs (0,90 au moins partout ; 0,99 avant la dernière couche) »."""
    who = column(FEATURES, "noirs à jouer")
    assert min(who) >= 0.9 and min(who[:-1]) >= 0.99
    prose = " ".join(markdown("08", "Lecture du tableau").split())
    assert "(0,90 au moins partout ; 0,99 avant la dernière couche)" in prose


def test_08_flipped_is_above_chance_from_the_embedding_and_levels_off_after_two_layers():
    flipped = column(FEATURES, "retournée")
    assert flipped[0] >= 0.6
    assert max(flipped[2:]) <= flipped[2] + 0.01


def test_08_legal_moves_are_read_best_in_the_last_layers():
    legal = column(FEATURES, "coup légal")
    n_layers = len(legal) - 1
    assert max(range(len(legal)), key=legal.__getitem__) >= n_layers - 2
    assert legal[-1] > legal[1] + 0.05  # "monte jusqu'aux dernières couches"


def test_08_my_disc_count_beats_the_position_baseline():
    baseline = value(printed("08", FEATURES), r"R² = {n}")
    assert max(column(FEATURES, "mes pions (R²)")) > baseline + 0.03


# --- 4. the minimal edit -----------------------------------------------------------------------------------


def _sweep() -> tuple[dict[tuple[str, int], tuple[float, float, float]], tuple[float, ...], float]:
    text = printed("08", SWEEP)
    rows = {(kind, int(depth)): (float(a), float(b), float(c)) for kind, depth, a, b, c in
            re.findall(r"(seule|de L à la fin), L = (\d+)\s+(\S+)\s+(\S+)\s+(\S+)", text)}
    none = tuple(values(text, r"sans intervention\s+{n}\s+{n}\s+{n}"))
    ideal = values(text, r"modèle parfait\s+{n}\s+{n}\s+{n}")[1]
    return rows, none, ideal


def test_08_one_layer_does_much_less_than_every_layer():
    rows, _, _ = _sweep()
    n = max(depth for _, depth in rows)
    best_single = max(rows["seule", depth][1] for depth in range(n))
    assert best_single < 0.6 * rows["de L à la fin", 0][1]


def test_08_starting_earlier_helps_and_from_the_first_layer_nearly_reaches_the_ideal():
    rows, _, ideal = _sweep()
    n = max(depth for _, depth in rows)
    gained = [rows["de L à la fin", depth][1] for depth in range(n + 1)]
    assert all(a >= b - 0.002 for a, b in zip(gained, gained[1:], strict=False))
    assert gained[0] >= 0.9 * ideal


def test_08_just_before_the_last_layer_and_at_the_output_the_edit_mostly_removes_illegal_moves():
    rows, none, _ = _sweep()
    n = max(depth for _, depth in rows)
    for depth in (n - 1, n):
        _, gained, lost = rows["seule", depth]
        assert lost < none[2] and none[2] - lost > gained - none[1]


def _amplitudes() -> tuple[dict[int, list[tuple[float, float]]], dict[int, float], tuple[float, float], float]:
    """Per depth, (p gained, top-1 legal) at each amplitude; the best kept p(gained) per depth; (p gained, top-1)
    without the edit; p(gained) of the edit at every depth from 0 at amplitude 1."""
    text = printed("08", AMPLITUDES)
    rows, best = {}, {}
    for line in text.splitlines():
        if re.fullmatch(r"\s*\d+(\s+\d\.\d+ \(\d\.\d+\))+\s+.*", line):
            depth = int(line.split()[0])
            rows[depth] = [(float(p), float(t)) for p, t in re.findall(r"(\d\.\d+) \((\d\.\d+)\)", line)]
            best[depth] = value(line, r"{n} \(α = \d+\)$")
    none = tuple(values(text, r"Sans intervention : {n} \({n}\)"))
    every = values(text, r"de 0 à la fin, α = 1 : {n}")[0]
    assert len(rows) == len(best) and all(len(r) == 5 for r in rows.values()), text
    return rows, best, none, every


def test_08_one_layer_at_amplitude_1_does_less_but_pushed_harder_in_the_middle_nearly_matches_every_layer():
    """« multipliée par 4 à 8, l'intervention à une seule profondeur du milieu (L = 2 à 4) approche l'effet de
    toutes les couches sans faire baisser le top-1 légal »."""
    rows, best, none, every = _amplitudes()
    n = max(rows)
    assert max(rows[depth][0][0] for depth in range(n)) < 0.6 * every  # amplitude 1
    for depth in range(2, n - 1):
        kept = [(p, t) for p, t in rows[depth][2:4] if t >= none[1]]  # α = 4 or 8
        assert kept and max(p for p, _ in kept) >= 0.65 * every and best[depth] >= 0.65 * every


def test_08_at_amplitude_16_the_model_breaks_at_depths_0_to_4():
    """« Plus forte encore (α = 16), elle dérègle le modèle aux profondeurs 0 à 4 : le coup préféré y est moins
    souvent légal que sans intervention »."""
    rows, _, none, _ = _amplitudes()
    assert [depth for depth, row in rows.items() if row[4][1] < none[1]] == [0, 1, 2, 3, 4]


def test_08_just_before_the_last_layer_amplified_stays_behind_the_middle_but_the_output_gains_much():
    """« amplifiée, elle reste loin derrière les profondeurs du milieu [...] très amplifié (α = 16), il fait pourtant
    monter les coups devenus légaux bien plus qu'à α = 1, directement sur les logits »."""
    rows, best, _, _ = _amplitudes()
    n = max(rows)
    assert max(p for p, _ in rows[n - 1]) < min(best[depth] for depth in range(2, n - 1)) - 0.01
    assert rows[n][4][0] > 3 * rows[n][0][0]


# --- 5. before / after ---------------------------------------------------------------------------------------


def test_08_the_mlps_move_their_output_and_carry_the_attribution_to_the_gained_moves():
    text = printed("08", COMPONENTS)
    rows = {name: (float(norm), float(gained)) for name, norm, gained in
            re.findall(r"^((?:attn|MLP) \d+)\s+(\S+)\s+(\S+)\s+\S+$", text, flags=re.M)}
    layers = sorted({int(name.split()[1]) for name in rows})
    for layer in layers:
        assert rows[f"MLP {layer}"][0] > 2 * rows[f"attn {layer}"][0]
    mlp = sum(rows[f"MLP {layer}"][1] for layer in layers)
    attn = sum(abs(rows[f"attn {layer}"][1]) for layer in layers)
    assert mlp > 5 * attn


def test_08_gained_moves_go_through_later_layers_and_lost_moves_are_partly_undone():
    text = printed("08", DIRECT)
    effects = r"\s*: effet total {n}, chemin direct seul {n}, part par les couches suivantes {n}%"
    gained, lost = values(text, "devenus légaux" + effects), values(text, "devenus illégaux" + effects)
    assert gained[2] > 50
    assert lost[2] < 0 and abs(lost[1]) > abs(lost[0])


# --- 6. exploratory ---------------------------------------------------------------------------------------


def test_08_neurons_carry_more_of_the_attribution_to_legal_moves_than_heads():
    text = printed("08", DLA)
    assert value(text, r"somme des neurones : {n}") > value(text, r"Somme des têtes : {n}")


def test_08_the_three_top_heads_each_attend_to_one_player_s_moves_of_both_kinds():
    """« regardent chacune presque uniquement les coups d'un seul des deux joueurs (score proche de ±1), mes coups
    pour certaines, ceux de l'adversaire pour d'autres »."""
    scores = values(printed("08", PARITY), r"L\d+H\d+ : attribution [-+]\d\.\d+, mes coups − ses coups {n}")
    assert len(scores) == 3 and min(abs(score) for score in scores) > 0.9
    assert max(scores) > 0 > min(scores)


# --- 7. neurons -----------------------------------------------------------------------------------------------


def test_08_one_move_neurons_are_in_the_last_layers():
    """« les deux premières couches n'ont presque aucun neurone qui n'écrive qu'un coup (plus de 0,9 de sa norme au
    carré) ; à partir de la troisième, il y en a de plus en plus, couche après couche, par centaines dans la
    dernière »."""
    text = printed("08", SHARE)
    counts = values(text, r"neurones au-dessus de 0,9 : {n}")
    assert counts[0] + counts[1] < 10 and all(counts[1] < counts[i] < counts[i + 1] for i in range(2, len(counts) - 1))
    assert counts[-1] >= 200
    assert value(text, r"de sa norme au carré sur \w\d, poids {n}") < 0  # "il écrit un poids négatif"


def test_08_the_neuron_fires_when_its_square_is_empty_but_illegal():
    """« Le neurone s'active quand sa case est vide mais illégale, et reste presque éteint sinon »."""
    text = printed("08", GROUPS)
    illegal = value(text, r"vide, illégale\s+: activation moyenne {n}")
    others = [value(text, rf"{name}\s+: activation moyenne {{n}}")
              for name in ("vide et légale", "à moi", "à l'adversaire")]
    assert illegal > 0.3 and all(abs(x) < illegal / 5 for x in others)


def test_08_the_square_that_matters_most_is_two_columns_away_not_a_neighbour():
    """« La case qui compte le plus n'est pas une voisine, mais la case à deux colonnes de là sur la même rangée ; en
    moyenne, ses voisines comptent un peu plus que les autres cases, mais les cases alignées avec elle [...]
    comptent nettement davantage que les autres »."""
    square = re.search(r"de sa norme au carré sur (\w\d)", printed("08", SHARE)).group(1)
    _, (effect,) = heatmaps("08", NEIGHBOURS)
    top = int(effect.abs().flatten().argmax())
    (own,) = [s for s in range(64) if square_label(s) == square]
    assert top // 8 == own // 8 and abs(top % 8 - own % 8) == 2, (square, square_label(top))
    near, far = values(printed("08", NEIGHBOURS), r"voisines : {n} ; des autres cases : {n}")
    assert far < near < 1.5 * far
    aligned, others = values(printed("08", NEIGHBOURS), rf"Cases alignées avec {square} : {{n}} ; les autres : {{n}}")
    assert aligned > 1.2 * others and aligned / others > near / far  # "nettement davantage" than the neighbours


def test_08_ablating_the_neuron_raises_its_move_where_illegal_and_the_control_does_nothing():
    """« Éteindre le neurone fait monter le logit de son coup là où la case est vide et illégale, et le change bien
    moins ailleurs ; le neurone témoin ne fait presque rien »."""
    text = printed("08", ABLATION)
    neuron, control = text.strip().split("\n")
    changes = values(neuron, r"(?:légale|illégale|moi|l'adversaire) {n}")  # legal, illegal, mine, theirs
    assert changes[1] > 0.3 and all(abs(x) < changes[1] / 3 for x in changes[:1] + changes[2:])
    assert all(abs(x) < 0.05 for x in values(control, r"(?:légale|illégale|moi|l'adversaire) {n}"))


# --- 8. the "is this square empty?" circuit -------------------------------------------------------------------


def _layer_gaps() -> tuple[float, dict[str, float]]:
    text = printed("08", LAYERS)
    clean = value(text, r"sans ablation\s+écart vide − occupée {n}")
    found = re.findall(r"((?:attn|MLP) \d+) éteinte?\s+écart vide − occupée (\S+)", text)
    gaps = {name: float(gap) for name, gap in found}
    return clean, gaps


def test_08_attention_0_computes_emptiness_then_mlp_0_and_nothing_else_matters():
    """« éteindre l'attention de la couche 0 ramène l'écart à moins d'un tiers de sa valeur [...] le MLP 0 compte
    aussi, nettement moins ; toutes les autres couches ne changent presque rien »."""
    clean, gaps = _layer_gaps()
    ranked = sorted(gaps, key=gaps.get)
    assert ranked[:2] == ["attn 0", "MLP 0"]
    assert gaps["attn 0"] < clean / 3 and gaps["MLP 0"] < clean - 2
    assert all(abs(gaps[name] - clean) < 1 for name in ranked[2:])
    text = printed("08", LAYERS)
    assert value(text, r"attn 0 éteinte\s+écart vide − occupée \S+\s+p\(cases occupées\) {n}") > 0.3


def test_08_no_layer_0_head_is_needed_alone_but_all_together_are():
    """« chacune, éteinte, ne retire qu'une petite partie de l'écart, alors que les éteindre toutes le ramène à moins
    d'un tiers »."""
    clean, _ = _layer_gaps()
    text = printed("08", HEADS)
    single = values(text, r"L0H\d {n}")
    assert all(clean - gap < 1 for gap in single)
    assert value(text, r"têtes éteintes ensemble : {n}") < clean / 3


def test_08_top_neurons_of_mlp_0_matter_more_than_random_ones_but_little_next_to_the_whole_mlp():
    clean, gaps = _layer_gaps()
    text = printed("08", NEURONS)
    top = value(text, r"les 10 plus attribués éteints : écart vide − occupée {n}")
    random = value(text, r"10 au hasard éteints : écart vide − occupée {n}")
    assert top < random
    assert clean - top < 0.25 * (clean - gaps["MLP 0"])


def test_08_the_ten_neurons_of_the_estimate_misfire_and_even_a_hundred_carry_less_than_half():
    """« l'estimation trompe sur les dix premiers : éteints ensemble, ils relèvent un peu l'écart (une baisse
    négative) au lieu de l'abaisser comme elle l'annonçait, et font moins que les dix de l'attribution directe. Les
    groupes plus grands retirent de plus en plus, mais restent loin du MLP entier : même cent neurones [...] en
    retirent moins de la moitié, trois cents la moitié environ [...] l'estimation au premier ordre dépasse l'effet
    réel pour dix neurones et le sous-estime pour cent et trois cents, d'autant plus que le groupe est grand »."""
    clean, gaps = _layer_gaps()
    direct_top = value(printed("08", NEURONS), r"les 10 plus attribués éteints : écart vide − occupée {n}")
    text = printed("08", TOTAL)
    whole = value(text, r"MLP 0 entier éteint : l'écart baisse de {n}")
    assert abs(whole - (clean - gaps["MLP 0"])) < 0.011
    found = {int(k): (float(drop), float(est)) for k, drop, est in re.findall(
        r"les\s+(\d+) premiers selon l'estimation éteints : baisse (\S+) \(-?\d+ % du MLP entier\), estimée au "
        r"premier ordre à (\S+)", text)}
    assert sorted(found) == [10, 30, 100, 300]
    assert found[10][0] < 0 < found[10][1] and found[10][0] < clean - direct_top
    drops = [found[k][0] for k in sorted(found)]
    assert drops == sorted(drops)
    assert found[100][0] < 0.5 * whole and 0.4 < found[300][0] / whole < 0.6
    assert found[10][1] > found[10][0] and all(found[k][1] < found[k][0] for k in (100, 300))
    assert found[300][0] / found[300][1] > found[100][0] / found[100][1]
