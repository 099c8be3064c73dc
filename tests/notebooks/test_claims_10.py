"""Notebook 10 (sparse autoencoders and steering): what its prose says of its stored outputs, and its four
exercises' checks (they pass the solutions, wait for the stubs and name the mistakes)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
import torch

from helpers import sae_exercises as X
from helpers.exercises import ExerciseError
from helpers.ioi import NAMES
from tools import make_exercices as mk

# ----- notebook 10: what its prose says of its stored outputs ------------------------------------

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "10_autoencodeurs_parcimonieux.ipynb"


@pytest.fixture(scope="module")
def printed() -> str:
    """Everything the committed notebook 10 printed, in order."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c["outputs"]
                   if o.get("name") == "stdout")


def markdown_cell(needle: str) -> str:
    """The one markdown cell of notebook 10 containing ``needle``."""
    cells = ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "markdown"]
    (cell,) = [c for c in cells if needle in c]
    return cell


def numbers(pattern: str, text: str) -> list[float]:
    """The numbers captured by ``pattern`` in text, each match's groups in order."""
    return [float(g) for match in re.finditer(pattern, text) for g in match.groups()]


def test_notebook10_no_dimension_keeps_to_one_kind_of_token(printed):
    dims = numbers(r"Dimension \d : ses 200 plus fortes valeurs tombent sur (\d+) tokens différents, dont (\d+)",
                   printed)
    (distinct0, names0), (distinct1, names1), (distinct2, names2) = zip(dims[::2], dims[1::2], strict=True)
    for distinct, names in ((distinct0, names0), (distinct1, names1)):  # "des dizaines de tokens ... quelques prénoms"
        assert distinct >= 20 and 0 < names < distinct / 2
    assert 1 < distinct2 < 20 and names2 == 0  # "quelques tokens seulement, aucun prénom, mais plus d'un"


def test_notebook10_sae_reconstructs_and_recovers_the_loss(printed):
    assert numbers(r"Variance expliquée : ([\d.]+)", printed)[0] >= 0.85  # "l'essentiel de la variance"
    # "presque aussi bien que le modèle intact"; printed as a threshold (0.99 or 1.00 depending on the CPU)
    assert numbers(r"Perte récupérée : (?:plus de )?([\d.]+)", printed)[0] >= 0.95


def test_notebook10_bos_and_padding_lower_the_explained_variance_and_raise_the_loss(printed):
    assert numbers(r"Variance expliquée, BOS et padding compris : ([\d.]+)", printed)[0] < \
        numbers(r"Variance expliquée : ([\d.]+)", printed)[0] - 0.05  # "chute nettement"
    padded, masked = numbers(r"padding compris : ([\d.]+) ; sans le padding : ([\d.]+)", printed)
    assert padded > masked


def test_notebook10_the_bos_norm_is_only_a_little_above_the_mean_norm(printed):
    bos, mean = numbers(r"Norme du flux résiduel au BOS : ([\d.]+) ; norme moyenne des tokens qui comptent : ([\d.]+)",
                        printed)
    assert 1 < bos / mean < 1.5  # "n'est qu'un peu plus grande que la norme moyenne des autres tokens"


def test_notebook10_weak_l1_is_dense_strong_l1_loses_the_reconstruction(printed):
    (weak_l0, weak_ev), (strong_l0, strong_ev) = [numbers(rf"L1 = {c} : L0 (\d+) sur 512, variance expliquée ([\d.]+)",
                                                           printed) for c in ("0.003", "0.1")]
    assert weak_l0 > 100 and weak_ev >= 0.85  # "la reconstruction est bonne, mais plus d'une centaine de features"
    assert strong_l0 < weak_l0 / 2 and strong_ev < 0.1  # "au prix de presque toute la reconstruction"


def test_notebook10_features_read_as_named(printed):
    shares = numbers(r"Feature \d+ \([^)]*\) : (\d+)% de son activation tombe sur ces tokens", printed)
    assert len(shares) == 3 and min(shares) >= 80
    first_to = re.search(r"tokens qu'elle pousse le plus : (\[.*\])", printed).group(1)
    n_names = sum(f"' {name}'" in first_to for name in NAMES)
    assert 1 <= n_names <= 6 and all(f"' {word}'" in first_to for word in ("who", "see", "give"))  # mixed
    to_share = numbers(r"celle qui pousse le plus de prénoms : \d+ \(\d+ prénoms parmi les 20 tokens qu'elle pousse "
                       r"le plus, (\d+)% de son activation", printed)[0]
    assert 50 < to_share < shares[2]  # "plus de la moitié"; the first one is "plus fidèle à l'endroit"
    assert numbers(r"Parmi les 8 tokens que sa direction pousse le plus : (\d+) prénoms", printed)[0] >= 5


def test_notebook10_ablation_effects_are_spread_and_do_not_add_up(printed):
    clean = numbers(r"Sans intervention : ([\d.]+)", printed)[0]
    singles = numbers(r"(?:^| )\d+ ([+-][\d.]+)", re.search(r"une à une : (.*)", printed).group(1))
    together = numbers(r"Les 10 ensemble : ([+-][\d.]+)", printed)[0]
    named = numbers(r"Feature \d+ \([^)]*\) ablatée : ([+-][\d.]+)", printed)
    assert len(singles) == 10 and len(named) == 4 and max(abs(e) for e in singles + named) < clean / 3
    assert min(singles) < 0 < max(singles)  # "certaines dans un sens, d'autres dans l'autre"
    assert together < 0 < sum(singles)  # together they lower it, one by one they add up to a rise
    printed_sum = numbers(r"Somme de leurs effets un à un : ([+-][\d.]+)", printed)[0]
    assert printed_sum > 0 and printed_sum == pytest.approx(sum(singles), abs=0.05)  # "est positive"


def test_notebook10_the_vector_steers_at_half_the_feature_s_scale(printed):
    lines = [line for line in printed.splitlines() if line.startswith("Probabilité d'un prénom")]
    assert [numbers(r"échelle (\d+) :", line) for line in lines] == [[0, 8, 16, 32, 64]] * 2
    by_feature, by_vector = [numbers(r"échelle \d+ : ([\d.]+)", line) for line in lines]
    assert by_feature[0] < 0.05 and by_vector[0] < 0.05 and by_feature == sorted(by_feature)
    assert by_vector[3] > 0.5 > by_feature[3]  # scale 32: "un prénom probable, où la feature fait encore peu"
    assert by_feature[4] > 0.5  # "celle-ci demande le double"
    steered = re.search(r"Piloté \(64\) : (.*)", printed).group(1).split()
    word = max(set(steered), key=steered.count)
    assert steered.count(word) >= 3 and word in NAMES  # "le même prénom encore et encore"


def test_notebook10_the_to_feature_covers_its_tokens_the_point_and_name_features_do_not(printed):
    coverage = dict(re.findall(r"Feature \d+ \(([^)]*)\) : \d+% de son activation tombe sur ces tokens, et elle "
                               r"s'active sur (\d+)% d'entre eux", printed))
    assert coverage["« to » suivi d'un prénom"] == "100"  # "sur tous ses tokens (100 %)"
    point, names = int(coverage["un point"]), int(coverage["un prénom"])
    assert point < 100 and names < 50  # "22 % des prénoms seulement": not "a first name"
    prose = markdown_cell("Ni l'une ni l'autre ne dit donc")
    assert f"active sur {point} % des points" in prose and f"active sur {names} % des prénoms seulement" in prose


@pytest.fixture(scope="module")
def embedded():
    """course-gpt2, notebook 10's hook point and its test stories, as the notebook builds them."""
    from helpers import HookedTransformer
    from helpers import sae as S

    model = HookedTransformer.from_pretrained("course-gpt2")
    return model, f"blocks.{model.cfg.n_layers // 2}.hook_resid_pre", S.story_tokens(model, 100, seed=1)


def test_notebook10_the_bos_residual_is_the_same_in_every_story(embedded):
    model, hook_name, tokens = embedded
    with torch.no_grad():
        resid = model.run_with_cache(tokens, names_filter=hook_name)[1][hook_name]  # [batch pos d_model]
    assert torch.allclose(resid[:, 0], resid[0, 0].expand_as(resid[:, 0]), atol=1e-5)  # "le même vecteur"


def test_notebook10_the_point_and_name_features_fire_on_a_place_of_the_story(printed):
    """« celle du point ... s'active sur chacun des points qui suivent un prénom ..., et plus de neuf de ses points sur
    dix sont de ceux-là ; celle du prénom ... s'active sur plus de neuf sur dix des prénoms qui suivent une virgule
    ..., et plus des trois quarts des prénoms sur lesquels elle s'active sont de ceux-là »."""
    lines = numbers(r"\(un (?:point|prénom)\) : active sur (\d+)% des \w+ qui suivent [^;]*; ceux-ci font (\d+)%",
                    printed)
    (point_on, point_share), (name_on, name_share) = zip(lines[::2], lines[1::2], strict=True)
    assert point_on == 100 and point_share > 90
    assert name_on > 90 and name_share > 75


# ----- notebook 10's exercises: the checks pass the solutions, wait for the stubs, name the mistakes ----------


def exercise(number: str, stubbed: bool = False):
    """The function of exercise ``number`` as notebook 10 defines it (its solution, or the learner's stub)."""
    source = mk.solutions(mk.read(NOTEBOOK))[number]
    namespace = {"torch": torch}
    exec(mk.stub(source) if stubbed else source, namespace)  # the course's own notebook cell
    return namespace[re.search(r"^def (\w+)\(", source, flags=re.M).group(1)]


def printed_by(check, fn) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        check(fn)
    return out.getvalue()


def diagnosis(check, fn) -> str:
    with pytest.raises(ExerciseError) as error:
        check(fn)
    return str(error.value)


def exercise_cases():
    g = torch.Generator().manual_seed(5)
    acts, mask = torch.randn(2, 5, 9, generator=g).relu(), torch.ones(2, 5, dtype=torch.bool)
    mask[:, 0] = False
    mask[1, 3:] = False
    resid = torch.randn(2, 5, 4, generator=g)
    x = torch.randn(30, 4, generator=g) + 2
    return {
        "10.1": (lambda fn: X.check_topk_activation(fn, torch.randn(7, 12, generator=g), 3), [
            (lambda pre, k: pre.relu(), "Un ReLU sans sélection"),
            (lambda pre, k: torch.zeros_like(pre).scatter(-1, pre.topk(k, -1).indices, pre.topk(k, -1).values),
             "sans ReLU"),
        ]),
        "10.2": (lambda fn: X.check_variance_explained(fn, x, x + 0.1), [
            (lambda x, r: 1 - (x - r).pow(2).sum() / x.pow(2).sum(), "autour de 0"),
            (lambda x, r: (x - r).pow(2).sum() / (x - x.mean(0)).pow(2).sum(), "NON expliquée"),
        ]),
        "10.3": (lambda fn: X.check_masked_l0(fn, acts, mask), [
            (lambda a, m: (a > 0).float().sum(-1).mean(), "Le masque est ignoré"),
            (lambda a, m: a.sum(-1)[m].mean(), "somme d'activations"),
        ]),
        "10.4": (lambda fn: X.check_difference_of_means(fn, resid, mask, resid + 1, mask), [
            (lambda a, m, b, n: a.flatten(0, 1).mean(0) - b.flatten(0, 1).mean(0), "Le masque est ignoré"),
            (lambda a, m, b, n: torch.stack([r[k].mean(0) for r, k in zip(a, m, strict=True)]).mean(0)
             - torch.stack([r[k].mean(0) for r, k in zip(b, n, strict=True)]).mean(0), "Moyenne des moyennes"),
        ]),
    }


@pytest.mark.parametrize("number", ["10.1", "10.2", "10.3", "10.4"])
def test_notebook10_exercise_checks(number):
    check, mistakes = exercise_cases()[number]
    assert printed_by(check, exercise(number)).startswith(f"Exercice {number} : réussi")
    assert printed_by(check, exercise(number, stubbed=True)).startswith(f"Exercice {number} : à faire.")
    for wrong, fragment in mistakes:
        wrong.__name__ = "attempt"
        assert fragment in diagnosis(check, wrong)
