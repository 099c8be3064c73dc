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


def test_notebook10_one_dimension_is_mostly_names_the_others_hardly_any(printed):
    dims = numbers(r"Dimension \d : ses 200 plus fortes valeurs tombent sur (\d+) tokens différents, dont (\d+)",
                   printed)
    (distinct0, names0), (distinct1, names1), (distinct2, names2) = zip(dims[::2], dims[1::2], strict=True)
    assert distinct1 / 2 < names1 < distinct1
    assert names0 <= 1 and names2 <= 1 and min(distinct0, distinct2) > 1


def test_notebook10_sae_reconstructs_and_recovers_the_loss(printed):
    assert numbers(r"Variance expliquée : ([\d.]+)", printed)[0] >= 0.9
    assert numbers(r"Perte récupérée : ([\d.]+)", printed)[0] >= 0.9


def test_notebook10_bos_and_padding_lower_the_explained_variance_and_raise_the_loss(printed):
    assert numbers(r"Variance expliquée, BOS et padding compris : ([\d.]+)", printed)[0] < \
        numbers(r"Variance expliquée : ([\d.]+)", printed)[0]
    padded, masked = numbers(r"padding compris : ([\d.]+) ; sans le padding : ([\d.]+)", printed)
    assert padded > masked


def test_notebook10_weak_l1_is_dense_strong_l1_loses_the_reconstruction(printed):
    (weak_l0, weak_ev), (strong_l0, strong_ev) = [numbers(rf"L1 = {c} : L0 (\d+) sur 512, variance expliquée ([\d.]+)",
                                                           printed) for c in ("0.003", "0.1")]
    assert weak_l0 > 100 and weak_ev >= 0.9
    assert strong_l0 < weak_l0 / 2 and strong_ev < weak_ev


def test_notebook10_features_read_as_named(printed):
    shares = numbers(r"Feature \d+ \([^)]*\) : (\d+)% de son activation tombe sur ces tokens", printed)
    assert len(shares) == 3 and min(shares) >= 80
    first_to = re.search(r"tokens qu'elle pousse le plus : (\[.*\])", printed).group(1)
    assert sum(f"' {name}'" in first_to for name in NAMES) <= 2  # marks the place, writes no name
    assert numbers(r"celle qui pousse le plus de prénoms : \d+ \(\d+ prénoms parmi les 20 tokens qu'elle pousse le "
                   r"plus, (\d+)% de son activation", printed)[0] > 50
    assert numbers(r"Parmi les 8 tokens que sa direction pousse le plus : (\d+) prénoms", printed)[0] >= 5


def test_notebook10_ablation_effect_is_spread_over_features(printed):
    clean = numbers(r"Sans intervention : ([\d.]+)", printed)[0]
    singles = numbers(r"(?:^| )\d+ ([+-][\d.]+)", re.search(r"une à une : (.*)", printed).group(1))
    together = numbers(r"Les 10 ensemble : ([+-][\d.]+)", printed)[0]
    named = numbers(r"Feature \d+ \([^)]*\) ablatée : ([+-][\d.]+)", printed)
    assert len(singles) == 10 and len(named) == 4 and max(abs(e) for e in singles + named) < clean / 2
    assert min(singles) < 0 < max(singles)
    assert abs(together) > 2 * max(abs(e) for e in singles)


def test_notebook10_both_directions_steer_towards_a_name_at_different_scales(printed):
    by_feature, by_vector = [numbers(r"échelle \d+ : ([\d.]+)", line) for line in printed.splitlines()
                             if line.startswith("Probabilité d'un prénom")]
    assert by_feature[0] < 0.05 and by_feature == sorted(by_feature) and by_feature[-1] > 0.5  # scales 0 ... 32
    assert by_vector[0] < 0.05 and by_vector[2] > 0.9 > by_feature[2]  # scale 8: the vector is there, not the feature
    assert by_vector[-1] < max(by_vector)  # too large, it loses its effect
    steered = re.search(r"Piloté \(32\) : (.*)", printed).group(1).split()
    assert max(steered.count(word) for word in set(steered)) >= 3  # the text repeats itself


def test_notebook10_the_point_and_to_features_cover_their_tokens_the_name_feature_a_third(printed):
    coverage = dict(re.findall(r"Feature \d+ \(([^)]*)\) : \d+% de son activation tombe sur ces tokens, et elle "
                               r"s'active sur (\d+)% d'entre eux", printed))
    assert coverage["un point"] == coverage["« to » suivi d'un prénom"] == "100"  # "sur tous leurs tokens (100 %)"
    names = int(coverage["un prénom"])
    assert names < 50  # "sur 31 % des prénoms seulement": not "a first name"
    prose = markdown_cell("La vérification dans le second sens départage les trois features")
    assert f"sur {names} % des prénoms seulement" in prose


@pytest.fixture(scope="module")
def embedded():
    """course-gpt2, notebook 10's hook point and its test stories, as the notebook builds them."""
    from helpers import HookedTransformer
    from helpers import sae as S

    model = HookedTransformer.from_pretrained("course-gpt2")
    return model, f"blocks.{model.cfg.n_layers // 2}.hook_resid_pre", S.story_tokens(model, 100, seed=1)


def test_notebook10_the_bos_residual_is_over_three_times_the_mean_norm(embedded):
    from helpers import sae as S

    model, hook_name, tokens = embedded
    with torch.no_grad():
        norms = model.run_with_cache(tokens, names_filter=hook_name)[1][hook_name].norm(dim=-1)  # [batch pos]
    assert torch.allclose(norms[:, 0], norms[0, 0])  # "toujours le même"
    assert norms[0, 0] > 3 * norms[S.token_mask(model, tokens)].mean()  # "plus de trois fois la norme moyenne"


def test_notebook10_the_name_feature_fires_on_the_name_after_and(printed, embedded):
    """Measured outside the notebook, as its prose says: the shipped SAE's first-name feature, on the notebook's
    test stories, fires on every first name that follows " and", and these make nine in ten of the first names
    it fires on."""
    from helpers import sae as S

    model, _, tokens = embedded
    sae = S.SAE.load(S.COURSE_SAE_DIR)
    with torch.no_grad():
        acts = S.feature_acts(model, sae, tokens)  # [batch pos d_sae]
    name_ids = torch.tensor([model.to_single_token(" " + name) for name in NAMES])
    is_name = torch.isin(tokens, name_ids) & S.token_mask(model, tokens)
    after_and = is_name & (torch.roll(tokens, 1, dims=1) == model.to_single_token(" and"))
    feature = int(re.search(r"Feature (\d+) \(un prénom\)", printed).group(1))  # the one the notebook chose
    active = acts[..., feature] > 0
    assert after_and.any() and active[after_and].all()  # "sur chacun des prénoms qui suivent « and »"
    assert (active & after_and).sum() / (active & is_name).sum() >= 0.85  # "neuf fois sur dix"


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
