"""The README's figures on the shipped course models are those of their metrics.json and config.json
(test_course_models.py checks, on the weights, that metrics.json is what they give): a new stage or a retrained
model cannot leave the README behind. Reads files only, so it is fast."""

import math
import re
from pathlib import Path

import pytest
from safetensors import safe_open

from helpers import course_models
from helpers.config import HookedTransformerConfig
from tests.course_models import test_course_models as shipped_tests
from tests.notebooks.claims_common import NUMBER_WORDS, fr
from training.ship import _layer_weights, markdown_table
from training.train import SPECS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def percent(x: float) -> str:
    return f"{fr(100 * x, 1)} %"


def steps(n: int) -> str:
    return f"{n:,}".replace(",", " ")


def test_readme_model_table_is_what_training_ship_prints():
    for row in markdown_table().splitlines():
        assert row in README, f"the README's course-model table is stale: paste `python -m training.ship`'s {row[:40]}"


@pytest.mark.parametrize("name", course_models.COURSE_MODELS)
def test_the_table_counts_the_layer_weights_of_the_shipped_files(name):
    """The column "Poids des couches": every attention and MLP weight matrix of the shipped file, a grouped
    key/value head's once (not once per query head)."""
    last = sorted((course_models.MODELS_DIR / name).glob("step_*.safetensors"))[-1]
    with safe_open(last, "pt") as f:
        shapes = [f.get_slice(key).get_shape() for key in f.keys() if re.search(r"\._?W_(Q|K|V|O|in|gate|out)$", key)]
    cfg = HookedTransformerConfig.from_dict({**course_models.model_config(name)["config"], "device": "cpu"})
    assert _layer_weights(cfg) == sum(math.prod(shape) for shape in shapes)


@pytest.fixture(scope="module")
def othello():
    """The README's Othello paragraph and trials table (whitespace made single), metrics.json's final figures,
    and the model's config.json."""
    start = README.index("- **Othello.** Le modèle livré")
    text = " ".join(README[start:README.index("Les seuils sont vérifiés par", start)].split())
    return text, course_models.metrics("course-othello-gpt")["final"], course_models.model_config("course-othello-gpt")


def test_readme_othello_training_is_the_shipped_chain(othello):
    text, final, config = othello
    stages = [stage["name"] for stage in config["stages"]]
    assert f"a vu {steps(final['step'])} pas" in text
    assert f"puis {NUMBER_WORDS['fr'][len(stages)]} étapes" in text, len(stages)
    assert f"`{stages[-1]}`" in text and "course-othello-gpt.stage7` à `course-othello-gpt.stage16`, 3 000 pas" in text
    games = final["step"] * SPECS["course-othello-gpt"].batch
    assert f"celui-ci {fr(games / 1e6, 1)} millions ({SPECS['course-othello-gpt'].batch} par pas)" in text


def test_readme_othello_figures_are_the_shipped_ones(othello):
    text, m, _ = othello
    none, probe, mean = (m[f"intervention_{edit}_p_gained"] for edit in ["none", "probe", "mean"])
    none_lost, probe_lost, mean_lost = (m[f"intervention_{edit}_p_lost"] for edit in ["none", "probe", "mean"])
    expected = [
        f"top-1 dans {percent(m['top1_legal_rate'])} des cas",
        f"lit {fr(m['probe_best_occupied_accuracy'], 3)} des cases occupées à sa meilleure profondeur (après "
        f"{m['probe_best_depth']} couches",
        f"deviennent légaux {fr(none, 3)} → {fr(probe, 3)} (×{fr(probe / none, 2)}), de ceux qui deviennent "
        f"illégaux {fr(none_lost, 3)} → {fr(probe_lost, 3)}",
        f"sur les {percent(m['intervention_read_share'])} de cas où elle lisait bien",
        f"« à l'adversaire », {fr(m['intervention_none_read_p_gained'], 3)} → "
        f"{fr(m['intervention_probe_read_p_gained'], 3)} ; sur les {round(200 * (1 - m['intervention_read_share']))} "
        f"autres, l'effet est du même ordre "
        f"(×{fr(m['intervention_probe_misread_p_gained'] / m['intervention_none_misread_p_gained'], 2)} ;",
        f"coups devenus illégaux {fr(none_lost, 3)} → {fr(mean_lost, 3)} (×{fr(mean_lost / none_lost, 2)} ; la "
        f"moitié visée est {'atteinte' if mean_lost <= none_lost / 2 else 'manquée'}",
        f"coups devenus légaux {fr(none, 3)} → {fr(mean, 3)} (×{fr(mean / none, 2)} ; le doublement visé est "
        f"{'atteint' if mean >= 2 * none else 'manqué'}",
        f"plateau modifié {fr(m['intervention_none_top1_legal'], 3)} → {fr(m['intervention_mean_top1_legal'], 3)}",
        f"n'y mettrait que {fr(m['intervention_ideal_p_gained'], 3)}",
        f"{fr(none, 3)} à {steps(m['step'])} pas",
        # the shipped row of the trials table
        f"; livré) | {steps(m['step'])} |",
        f"| {fr(m['top1_legal_rate'], 3)} | {fr(m['probe_best_occupied_accuracy'], 3)} | ×{fr(mean / none, 2)} | "
        f"×{fr(mean_lost / none_lost, 2)} |",
    ]
    for phrase in expected:
        assert phrase in text, phrase
    assert text.count("; livré)") == 1
    read_ratio = m["intervention_probe_read_p_gained"] / m["intervention_none_read_p_gained"]
    misread_ratio = m["intervention_probe_misread_p_gained"] / m["intervention_none_misread_p_gained"]
    assert 1 < misread_ratio < 2 and 1 < read_ratio < 2  # "du même ordre": a weak rise in both groups
    bound = int(re.search(r"change chacune de moins de (\d+) %", text).group(1))
    changes = [abs(m[f"intervention_random_{k}"] / m[f"intervention_none_{k}"] - 1) for k in ("p_gained", "p_lost")]
    assert max(changes) < bound / 100 and bound <= 10, changes  # "moins de N %", and N small enough to mean "no effect"
    low, high = (float(x.replace(",", ".")) for x in re.search(
        r"reste faible sur tous ces modèles \(×(\d,\d\d) à ×(\d,\d\d)", text).groups())
    assert low <= round(probe / none, 2) <= high


def test_readme_othello_probe_gain_per_stage_is_the_table_s(othello):
    text, _, config = othello
    low, high = (float(x.replace(",", ".")) for x in re.search(
        r"puis de \+(\d,\d\d\d) à \+(\d,\d\d\d) par étape à partir de 0,825 à 8 000 pas", text).groups())
    # the 8000-step model's row, then one row a shipped stage: "| label | steps | duration | top-1 | probe | ..."
    rows = re.findall(r"\| (?:idem, cosinus sur 8 000 pas|idem, puis l'étape (\d+))[^|]* \| ([\d ]+) \| [^|]+ \| "
                      r"\d,\d\d\d \| (\d,\d\d\d) \|", text)
    shipped = [stage["name"].rsplit("stage", 1)[1] for stage in config["stages"]]  # a stage not shipped has no row
    assert [stage for stage, _, _ in rows] == [""] + shipped, rows  # in order
    assert [int(s.replace(" ", "")) for _, s, _ in rows] == sorted(int(s.replace(" ", "")) for _, s, _ in rows), rows
    probes = [float(p.replace(",", ".")) for _, _, p in rows]  # probes[k - 1]: after stage k <= 19 (0: 8000 steps)
    gains = [round(b - a, 3) for a, b in zip(probes, probes[1:], strict=False)]
    assert probes[0] == 0.825 and len(gains) >= 11, rows
    assert (min(gains), max(gains)) == (low, high), gains
    # stage 17, one 6000-step cosine, against the two pairs of 3000-step stages before it (13-14, then 15-16)
    last = round(probes[16] - probes[15], 3)
    pairs = [round(probes[13] - probes[11], 3), round(probes[15] - probes[13], 3)]
    assert f"(+{fr(last, 3)} sur la sonde ; les deux dernières paires d'étapes de 3 000 pas avaient donné " \
           f"+{fr(pairs[0], 3)} et +{fr(pairs[1], 3)})" in text and max(pairs) <= last, (last, pairs)


def test_the_probe_xfail_gives_the_shipped_figures(othello):
    """The strict xfail of the 0.90 probe threshold says what the shipped weights measure."""
    _, final, config = othello
    (mark,) = [m for m in shipped_tests.test_course_othello_probe_reads_the_board.pytestmark if m.name == "xfail"]
    reason = mark.kwargs["reason"]
    assert f"reads {final['probe_best_occupied_accuracy']:.3f} of the occupied squares" in reason, reason
    assert f"best depth ({final['probe_best_depth']})" in reason and f"after {final['step']} steps" in reason
    assert f"top-1 legal {final['top1_legal_rate']:.1%}" in reason
    assert f"in {NUMBER_WORDS['en'][1 + len(config['stages'])]} runs" in reason, reason
