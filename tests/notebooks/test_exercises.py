"""Tests for the exercises: helpers.exercises (checks and diagnoses) and tools/make_exercices.py (learner notebooks).

For every exercise: the notebook's solution passes its check, typical mistakes get their diagnosis, and the
stub of the learner's version gets the "fill it in" message. The learner notebooks are up to date, hold no
solution code outside folded blocks, and run top to bottom with the stubs failing only at their checks.
"""

import contextlib
import io
import json
import re
from functools import partial
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nbclient import NotebookClient

from helpers import FactoredMatrix, HookedTransformer, HookedTransformerConfig, course_models, othello, utils
from helpers import exercises as ex
from helpers.ioi import ioi_prompt_pairs_for_patching
from tools import make_exercices as mk

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _solution_sources() -> dict[str, str]:
    out = {}
    for path in NOTEBOOKS:
        out.update(mk.solutions(mk.read(path)))
    return out


SOLUTIONS = _solution_sources()


def _define(source: str):
    """Run a solution or stub cell and return the function it defines."""
    namespace = {"torch": torch, "np": np, "partial": partial, "utils": utils, "FactoredMatrix": FactoredMatrix,
                 "HookedTransformer": HookedTransformer, "HookedTransformerConfig": HookedTransformerConfig}
    exec(source, namespace)  # the course's own notebook cells
    return namespace[re.search(r"^def (\w+)\(", source, flags=re.M).group(1)]


def solution(number: str):
    return _define(SOLUTIONS[number])


def stub(number: str):
    return _define(mk.stub(SOLUTIONS[number]))


def fails_with(check, fn, *fragments: str):
    """check(fn) raises ExerciseError whose message contains every fragment."""
    with pytest.raises(ex.ExerciseError) as error:
        check(fn)
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)
    return str(error.value)


def still_to_do(check, fn):
    """check(fn) on an unfilled stub prints that the exercise is still to do, and raises nothing."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        check(fn)
    assert re.fullmatch(r"Exercice \d\d\.\d : à faire\. `\w+` n'est pas encore écrite : complétez la fonction .*\n",
                        out.getvalue()), out.getvalue()


# ---------------------------------------------------------------------------------------------------
# Data like the notebooks'
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def no_grad():
    """Gradients off, as in the notebooks, for this file's tests only (the next files need them)."""
    enabled = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    yield
    torch.set_grad_enabled(enabled)


@pytest.fixture(scope="module")
def model():
    return HookedTransformer.from_pretrained("course-gpt2")


@pytest.fixture(scope="module")
def text_tokens(model):
    return model.to_tokens("The little fox ran across the road. When Kate and Paul were at the market, Kate gave "
                           "a red apple to Paul. The little fox ran across the road.")


@pytest.fixture(scope="module")
def ioi(model):
    prompts, answers, corrupted_prompts = ioi_prompt_pairs_for_patching()
    clean_tokens, corrupted_tokens = model.to_tokens(prompts), model.to_tokens(corrupted_prompts)
    answer_tokens = torch.tensor([[model.to_single_token(name) for name in pair] for pair in answers])
    clean_logits, clean_cache = model.run_with_cache(clean_tokens)

    def diff(logits):
        return (logits[:, -1].gather(-1, answer_tokens)[:, 0] - logits[:, -1].gather(-1, answer_tokens)[:, 1]).mean()

    clean, corrupted = diff(clean_logits), diff(model(corrupted_tokens))
    return dict(corrupted_tokens=corrupted_tokens, answer_tokens=answer_tokens, clean_logits=clean_logits,
                clean_cache=clean_cache, metric=lambda logits: (diff(logits) - corrupted) / (clean - corrupted))


@pytest.fixture(scope="module")
def repeated(model):
    half = torch.randint(1000, 10000, (2, 10), generator=torch.Generator().manual_seed(0))
    return torch.cat([torch.full((2, 1), model.tokenizer.bos_token_id), half, half], dim=1)


# ---------------------------------------------------------------------------------------------------
# The exercises' inventory and the learner notebooks
# ---------------------------------------------------------------------------------------------------


def test_at_least_three_exercises_per_notebook_and_twenty_in_all():
    per_notebook = {}
    for number in SOLUTIONS:
        per_notebook.setdefault(number[:2], []).append(number)
    assert len(SOLUTIONS) >= 20
    assert all(len(per_notebook.get(f"{n:02d}", [])) >= 3 for n in range(1, 7)), per_notebook


def test_every_exercise_has_statement_check_hint_and_folded_solution():
    for path in NOTEBOOKS:
        cells = mk.read(path)["cells"]
        for i, cell in enumerate(cells):
            number = mk.exercise_id(cell, mk.SOLUTION)
            if not number:
                continue
            statement, before_check, check, hint, folded = (mk.source(c) for c in (cells[i - 1], *cells[i + 1 : i + 5]))
            assert cells[i + 1]["cell_type"] == "markdown" and before_check.startswith("On vérifie `")
            assert statement.startswith(f"### Exercice {number} — ")
            assert re.search(r"\*Niveau [★☆]{3} · environ \d+ min · importance [★☆]{3}\*", statement), statement
            assert check.startswith(f"# EXERCICE {number} — vérification\n") and "check_" in check
            assert hint.startswith("<details><summary>Indice</summary>") and hint.endswith("</details>")
            assert folded == mk.folded_solution(mk.source(cell))
            name = re.search(r"^def (\w+)\(", mk.source(cell), flags=re.M).group(1)
            assert re.search(rf"check_\w+\({name}\b", check), (number, check)


def test_learner_notebooks_are_up_to_date():
    """exercices/ is what make exercices writes, so running it again changes nothing."""
    for path in NOTEBOOKS:
        text = mk.dumps(mk.learner_version(mk.read(path)))
        assert (ROOT / "exercices" / path.name).read_text(encoding="utf-8") == text, path.name
        assert mk.dumps(mk.learner_version(json.loads(mk.dumps(mk.read(path))))) == text


def test_learner_notebooks_keep_every_other_cell():
    for path in NOTEBOOKS:
        committed, learner = mk.read(path), mk.read(ROOT / "exercices" / path.name)
        assert [c["id"] for c in committed["cells"]] == [c["id"] for c in learner["cells"]]
        for a, b in zip(committed["cells"], learner["cells"], strict=True):
            if not mk.source(a).startswith("# EXERCICE"):
                assert a == b, a["id"]
            elif a["cell_type"] == "code":
                assert b["outputs"] == [] and b["execution_count"] is None


def _solution_lines(source: str) -> list[str]:
    """The lines of a solution's body (after the docstring) that carry code."""
    code = source[mk.SOLUTION.match(source).end():]
    lines = code.splitlines()
    docstring_end = mk.ast.parse(code).body[0].body[0].end_lineno
    return [line.strip() for line in lines[docstring_end:] if len(line.strip()) > 8]


def test_learner_notebooks_show_solution_code_only_in_folded_blocks():
    for path in NOTEBOOKS:
        cells = mk.read(ROOT / "exercices" / path.name)["cells"]
        course_text = "".join(mk.source(c) for c in mk.read(path)["cells"] if "EXERCICE" not in mk.source(c)
                              and "xercice" not in mk.source(c))
        for number, source in mk.solutions(mk.read(path)).items():
            for line in _solution_lines(source):
                if line in course_text:  # code the course shows anyway, outside the exercises
                    continue
                for cell in cells:
                    text = mk.source(cell)
                    if line in text:
                        assert cell["cell_type"] == "markdown", (number, line)
                        start = text.index("<details>")
                        assert start < text.index(line) < text.index("</details>"), (number, line)
        for cell in cells:
            assert not mk.source(cell).startswith("# EXERCICE") or "— solution" not in mk.source(cell).splitlines()[0]


def test_exercise_functions_are_used_only_by_their_own_cells():
    """Static half of 'the learner notebook runs with stubs failing only at their checks': no other cell uses a
    function the learner has to write, so an unfilled stub cannot break a later cell."""
    for path in NOTEBOOKS:
        cells = mk.read(ROOT / "exercices" / path.name)["cells"]
        for number, source in mk.solutions(mk.read(path)).items():
            name = re.search(r"^def (\w+)\(", source, flags=re.M).group(1)
            users = [mk.source(c).splitlines()[0] for c in cells
                     if c["cell_type"] == "code" and re.search(rf"\b{name}\b", mk.source(c))]
            assert users == [f"# EXERCICE {number} — à compléter", f"# EXERCICE {number} — vérification"], users


def test_stub_keeps_signature_and_docstring():
    stubbed = mk.stub(SOLUTIONS["04.2"])
    assert stubbed.splitlines()[0] == "# EXERCICE 04.2 — à compléter"
    assert "def induction_stripe_score(pattern: torch.Tensor, seq_len: int) -> torch.Tensor:" in stubbed
    assert '"""Mean attention on the induction stripe' in stubbed
    assert "diagonal" not in stubbed and stubbed.rstrip().endswith('complétez cette fonction")')
    with pytest.raises(ValueError, match="exactly one function with a docstring"):
        mk.stub("# EXERCICE 09.1 — solution\nx = 1\n")


def test_stale_folded_solution_is_refused():
    nb = mk.read(NOTEBOOKS[0])
    cell = next(c for c in nb["cells"] if mk.exercise_id(c, mk.SOLUTION))
    mk.set_source(cell, mk.source(cell) + "\n    # changed")
    with pytest.raises(ValueError, match="out of date"):
        mk.learner_version(nb)
    mk.sync(nb)
    assert mk.stale_folded_solutions(nb) == []


@pytest.mark.slow
def test_learner_notebook_runs_to_the_end_with_its_stubs(monkeypatch):
    """Execute one learner notebook (05, the quickest) as "Run All" does: no cell fails, and each check prints
    that its exercise is still to do."""
    monkeypatch.setenv("COURSE_EMBEDDED_MODELS", "1")  # the kernel inherits it: no network, as in CI
    path = ROOT / "exercices" / "05_factored_matrix.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    checks = [cell for cell in nb.cells if cell.source.startswith("# EXERCICE") and "vérification" in cell.source]
    assert len(checks) == 3
    for cell in checks:
        (output,) = cell.outputs
        assert output.output_type == "stream" and " : à faire. " in output.text
        assert "complétez la fonction" in output.text


# ---------------------------------------------------------------------------------------------------
# Generic diagnoses
# ---------------------------------------------------------------------------------------------------


def test_compare_names_shape_dims_nan_and_largest_difference():
    expected = torch.arange(6.0).reshape(2, 3)
    with pytest.raises(ex.ExerciseError, match=r"attendue \[layer=2, head=3\], obtenue \(3, 2\).*axes sont échangés"):
        ex._compare(torch.zeros(3, 2), expected, ("layer", "head"), "cas", "f")
    with pytest.raises(ex.ExerciseError, match="Il manque une dimension"):
        ex._compare(torch.zeros(2), expected, ("layer", "head"), "cas", "f")
    with pytest.raises(ex.ExerciseError, match=r"NaN.*\[layer=1, head=2\]"):
        ex._compare(expected.clone().index_put_((torch.tensor(1), torch.tensor(2)), torch.tensor(float("nan"))),
                    expected, ("layer", "head"), "cas", "f")
    with pytest.raises(ex.ExerciseError, match="Signe inversé"):
        ex._compare(-expected, expected, ("layer", "head"), "cas", "f")
    with pytest.raises(ex.ExerciseError, match=r"1 valeur\(s\) sur 6.*\[layer=0, head=1\] : obtenu 1.5, attendu 1"):
        ex._compare(expected + torch.tensor([[0, 0.5, 0], [0, 0, 0]]), expected, ("layer", "head"), "cas", "f")
    with pytest.raises(ex.ExerciseError, match="renvoie None"):
        ex._compare(None, expected, ("layer", "head"), "cas", "f")
    square = torch.arange(9.0).reshape(3, 3)
    with pytest.raises(ex.ExerciseError, match="dest et src sont interverties"):
        ex._compare(square.T, square, ("dest", "src"), "cas", "f")


# ---------------------------------------------------------------------------------------------------
# Each exercise: the solution passes, typical mistakes are diagnosed, the stub asks to be filled in
# ---------------------------------------------------------------------------------------------------


PARAGRAPH = "One cold day, John and Mary went to the market. John was hungry, so John ate some bread. Then Mary gave"


def test_01_1_next_token_probs(model, capsys):
    check = partial(ex.check_next_token_distribution, model=model, prompt=PARAGRAPH)
    check(solution("01.1"))
    assert capsys.readouterr().out == "Exercice 01.1 : réussi (3 cas vérifiés, dont des entrées inédites).\n"
    fails_with(check, lambda model, prompt: model(prompt)[0, -1], "logits", "softmax")
    fails_with(check, lambda model, prompt: model(prompt)[0, -1].log_softmax(-1), "log-probabilités")
    fails_with(check, lambda model, prompt: model(prompt)[0, -2].softmax(-1), "Décalé d'une position")
    fails_with(check, lambda model, prompt: model(prompt)[0].softmax(0)[-1], "mauvaise dimension")
    fails_with(check, lambda model, prompt: model(prompt, prepend_bos=False)[0, -1].softmax(-1), "BOS")
    fails_with(check, lambda model, prompt: model(prompt)[0, -1:].softmax(-1), "attendue [d_vocab=50257]")
    still_to_do(check, stub("01.1"))


def test_01_2_top1_accuracy(model, capsys):
    tokens = model.to_tokens(PARAGRAPH)
    check = partial(ex.check_top1_accuracy, logits=model(tokens), tokens=tokens)
    check(solution("01.2"))
    fails_with(check, lambda lg, tk: (lg.argmax(-1) == tk).float().mean(-1), "Décalé d'une position")
    fails_with(check, lambda lg, tk: (lg[:, :-1].argmax(-1) == tk[:, 1:]).float().sum(-1), "Non normalisé")
    fails_with(check, lambda lg, tk: (lg[:, :-1].argmax(-1) == tk[:, 1:]).float().mean(0), "Mauvaise forme",
               "[batch=")

    def in_place(lg, tk):
        lg[:, :, 0] = -1e9
        return (lg[:, :-1].argmax(-1) == tk[:, 1:]).float().mean(-1)

    fails_with(check, in_place, "en place", "`logits`")
    assert torch.equal(check.keywords["logits"], model(tokens))  # the failed attempt ran on a copy
    fails_with(check, lambda lg, tk: (lg[:, :-1].argmax(-1) == tk[:, :-1]).float().mean(-1), "Non décalé")
    still_to_do(check, stub("01.2"))


def test_01_3_token_positions(model):
    check = partial(ex.check_token_positions, model=model)
    check(solution("01.3"))

    def positions(model, prompt, token, prepend_bos):
        return (model.to_tokens(prompt, prepend_bos=prepend_bos)[0] == model.to_single_token(token)).nonzero().flatten()

    fails_with(check, lambda *args: positions(*args) + 1, "compté deux fois")
    fails_with(check, lambda m, p, t, b: positions(m, p, t, False), "BOS est oublié")
    ignored = fails_with(check, lambda m, p, t, b: positions(m, p, t, True), "un BOS est compté alors que "
                         "prepend_bos=False", "`prepend_bos=prepend_bos`")
    assert "deux fois" not in ignored
    fails_with(check, lambda *args: positions(*args)[:1], "première occurrence")
    still_to_do(check, stub("01.3"))


def test_01_4_attention_pattern(model, text_tokens):
    _, cache = model.run_with_cache(text_tokens, remove_batch_dim=True)
    q, k = cache["q", 0], cache["k", 0]
    check = partial(ex.check_attention_pattern, q=q, k=k, pattern=cache["pattern", 0])
    check(solution("01.4"))
    right = solution("01.4")

    def masked(scores, value):
        future = torch.triu(torch.ones(scores.shape[-2:], dtype=torch.bool), diagonal=1)
        return scores.masked_fill(future, value)

    def scores(q, k):
        return torch.einsum("qhd,khd->hqk", q, k)

    fails_with(check, lambda q, k: masked(scores(q, k), float("-inf")).softmax(-1), "non divisés par √d_head")
    fails_with(check, lambda q, k: masked(scores(q, k) / q.shape[-1], float("-inf")).softmax(-1),
               "divisés par d_head au lieu de √d_head")
    fails_with(check, lambda q, k: (scores(q, k) / q.shape[-1] ** 0.5).softmax(-1), "Pas de masque causal")
    fails_with(check, lambda q, k: masked(scores(q, k) / q.shape[-1] ** 0.5, 0.0).softmax(-1), "Masque à 0")
    fails_with(check, lambda q, k: masked((scores(q, k) / q.shape[-1] ** 0.5).softmax(-1), 0.0),
               "après le softmax")
    fails_with(check, lambda q, k: masked(scores(q, k) / q.shape[-1] ** 0.5, float("-inf")).softmax(-2),
               "mauvaise dimension")
    fails_with(check, lambda q, k: right(k, q), "Requêtes et clés échangées")
    fails_with(check, lambda q, k: right(q, k).transpose(-1, -2), "Axes échangés")
    still_to_do(check, stub("01.4"))


def test_02_1_mean_ablation_hook(model, text_tokens):
    check = partial(ex.check_mean_ablation_hook, model=model, tokens=text_tokens)
    check(solution("02.1"))

    def setting(value_of):
        def hook(z, hook, head):
            z[:, :, head] = value_of(z, head)
            return z
        return hook

    fails_with(check, setting(lambda z, h: 0.0), "mise à zéro")
    fails_with(check, setting(lambda z, h: z[:, :, h].mean(1, keepdim=True)), "seules positions")
    fails_with(check, setting(lambda z, h: z[:, :, h].mean(-1, keepdim=True)), "mauvaise dimension (d_head)")
    fails_with(check, setting(lambda z, h: z[:, :, h].mean(0)), "Moyenne sur la mauvaise dimension", "seul lot")
    fails_with(check, setting(lambda z, h: z.mean(dim=(0, 1, 2))), "Moyenne sur la mauvaise dimension",
               "toutes les têtes")
    fails_with(check, lambda z, hook, head: None, "ne change rien")

    def wrong_axis(z, hook, head):
        z[:, head] = z[:, head].mean(0)
        return z

    fails_with(check, wrong_axis, "Mauvais axe")
    still_to_do(check, stub("02.1"))


def test_02_2_zero_ablation_map(model, text_tokens):
    check = partial(ex.check_zero_ablation_map, model=model, tokens=text_tokens)
    reference = solution("02.2")
    check(reference)
    fails_with(check, lambda m, t: -reference(m, t), "Signe inversé")
    fails_with(check, lambda m, t: reference(m, t).T, "attendue [layer=4, head=8]", "axes sont échangés")
    fails_with(check, lambda m, t: reference(m, t) + m(t, return_type="loss"), "pas leur hausse")

    def whole_layer(model, tokens):
        clean = model(tokens, return_type="loss")
        out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
        for layer in range(model.cfg.n_layers):
            hooks = [(utils.get_act_name("z", layer), lambda z, hook: z * 0)]
            out[layer] = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=hooks) - clean
        return out

    fails_with(check, whole_layer, "Toute la couche")
    W_O = model.W_O.clone()

    def zeroing_weights(model, tokens):
        model.blocks[0].attn.W_O[0] = 0.0
        return reference(model, tokens)

    fails_with(check, zeroing_weights, "a modifié les poids du modèle", "restaurés")
    assert torch.equal(model.W_O, W_O)

    def leaving_a_hook(model, tokens):
        model.add_hook(utils.get_act_name("z", 0), lambda z, hook: z)
        return reference(model, tokens)

    fails_with(check, leaving_a_hook, "laisse des hooks", "retirés")
    assert model.list_hooks() == {}
    still_to_do(check, stub("02.2"))


def test_02_3_offset_attention_score(model, text_tokens):
    _, cache = model.run_with_cache(text_tokens, remove_batch_dim=True)
    check = partial(ex.check_offset_attention_score, pattern=cache["pattern", 0])
    check(solution("02.3"))
    fails_with(check, lambda p, o: p.diagonal(offset=o, dim1=-2, dim2=-1).mean(-1), "Diagonale au-dessus")
    fails_with(check, lambda p, o: p.diagonal(offset=1 - o, dim1=-2, dim2=-1).mean(-1), "Décalé d'une position")
    fails_with(check, lambda p, o: p.diagonal(offset=-o, dim1=-2, dim2=-1).sum(-1), "Somme au lieu de moyenne")
    fails_with(check, lambda p, o: p.diagonal(offset=-o, dim1=-2, dim2=-1).sum(-1) / p.shape[-1], "Mal normalisé",
               "n_pos - offset")
    fails_with(check, lambda p, o: p.diagonal(offset=-o, dim1=-2, dim2=-1).mean(0), "Mauvaise forme", "[head=")
    still_to_do(check, stub("02.3"))


def test_03_1_two_name_prob(ioi):
    check = partial(ex.check_two_name_prob, logits=ioi["clean_logits"], answer_tokens=ioi["answer_tokens"])
    check(solution("03.1"))
    fails_with(check, lambda lg, a: lg[:, -1].gather(-1, a).softmax(-1)[:, 1], "MAUVAIS nom")
    fails_with(check, lambda lg, a: lg[:, -1].softmax(-1).gather(-1, a)[:, 0], "Non normalisé")
    fails_with(check, lambda lg, a: lg[:, -2].gather(-1, a).softmax(-1)[:, 0], "Décalé d'une position")
    fails_with(check, lambda lg, a: lg[:, -1].gather(-1, a).softmax(-1)[:, 0].mean(), "Il manque une dimension")
    still_to_do(check, stub("03.1"))


def test_03_2_normalised_score():
    check = ex.check_normalised_score
    check(solution("03.2"))
    fails_with(check, lambda p, c, k: (c - p) / (c - k), "Inversé")
    fails_with(check, lambda p, c, k: (p - k) / (k - c), "Signe inversé")
    fails_with(check, lambda p, c, k: p / (c - k), "numérateur")
    fails_with(check, lambda p, c, k: p - k, "Non normalisé")
    still_to_do(check, stub("03.2"))


def test_03_3_patch_head_position(ioi):
    check = partial(ex.check_patch_head_position, clean_cache=ioi["clean_cache"])
    check(solution("03.3"))

    def patching(index):
        def hook(z, hook, head, position, clean_cache):
            z[index(head, position)] = clean_cache[hook.name][index(head, position)]
            return z
        return hook

    fails_with(check, patching(lambda h, p: (slice(None), slice(None), h)), "Toutes les positions")
    fails_with(check, patching(lambda h, p: (slice(None), p)), "Toutes les têtes")
    fails_with(check, patching(lambda h, p: (slice(None), (p + 1) % 6, h)), "Décalé d'une position")
    fails_with(check, lambda z, hook, head, position, clean_cache: z, "ne change rien")

    def reading(layer_of):
        def hook(z, hook, head, position, clean_cache):
            z[:, position, head] = clean_cache["z", layer_of(hook)][:, position, head]
        return hook

    check(reading(lambda hook: hook.layer()))  # a real ActivationCache's (name, layer) keys, and a None return
    fails_with(check, reading(lambda hook: 0), "autre couche", "clean_cache[hook.name]")
    clean_z = ioi["clean_cache"]["z", 0].clone()

    def backwards(z, hook, head, position, clean_cache):
        clean_cache[hook.name][:, position, head] = z[:, position, head]
        return z

    fails_with(check, backwards, "a écrit dans le cache", "à l'envers")
    assert torch.equal(ioi["clean_cache"]["z", 0], clean_z)
    fails_with(partial(ex.check_patch_head_position, clean_cache=dict(ioi["clean_cache"].items())), patching(
        lambda h, p: (slice(None), p, h)), "ActivationCache")
    still_to_do(check, stub("03.3"))


def test_03_4_patch_attn_out_by_position(model, ioi):
    check = partial(ex.check_patch_attn_out_by_position, model=model, corrupted_tokens=ioi["corrupted_tokens"],
                    clean_cache=ioi["clean_cache"], metric=ioi["metric"])
    check(solution("03.4"))

    def resid_pre_loop(model, corrupted_tokens, clean_cache, metric, layer):
        def patch(resid, hook, position):
            resid[:, position] = clean_cache[hook.name][:, position]
            return resid
        name = utils.get_act_name("resid_pre", layer)
        return torch.stack([metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, partial(patch,
                                                                                              position=p))]))
                            for p in range(corrupted_tokens.shape[1])])

    fails_with(check, resid_pre_loop, "resid_pre")
    still_to_do(check, stub("03.4"))


def test_04_1_per_token_loss(model, repeated):
    check = partial(ex.check_per_token_loss, model=model, tokens=repeated)
    check(solution("04.1"))

    def nll(lg, tk):
        return lg.log_softmax(-1)[:, :-1].gather(-1, tk[:, 1:, None])[..., 0]

    fails_with(check, lambda lg, tk: -lg.log_softmax(-1)[:, :-1].gather(-1, tk[:, :-1, None])[..., 0], "Décalé")
    fails_with(check, lambda lg, tk: -lg.log_softmax(-1).gather(-1, tk[..., None])[..., 0], "Non décalé")
    fails_with(check, nll, "Signe inversé")
    fails_with(check, lambda lg, tk: -lg[:, :-1].gather(-1, tk[:, 1:, None])[..., 0], "Non normalisé")
    fails_with(check, lambda lg, tk: -lg[:, :-1].softmax(-1).gather(-1, tk[:, 1:, None])[..., 0], "probabilités",
               "-log p")
    def naive_softmax_loss(lg, tk):  # exp overflows on logits near 100: inf / inf
        probs = lg.exp() / lg.exp().sum(-1, keepdim=True)
        return -probs[:, :-1].gather(-1, tk[:, 1:, None])[..., 0].log()

    fails_with(check, naive_softmax_loss, "NaN", "déborde")
    still_to_do(check, stub("04.1"))


def test_04_2_induction_stripe_score(model, repeated):
    check = partial(ex.check_induction_stripe_score, model=model, tokens=repeated, seq_len=10)
    check(solution("04.2"))
    fails_with(check, lambda p, n: p.diagonal(offset=-n, dim1=-2, dim2=-1).mean(dim=(0, -1)), "token répété lui-même")
    fails_with(check, lambda p, n: p.diagonal(offset=n - 1, dim1=-2, dim2=-1).mean(dim=(0, -1)), "au-dessus")
    fails_with(check, lambda p, n: p.diagonal(offset=1 - n, dim1=-2, dim2=-1).mean(dim=(0, 1)), "mauvaise dimension")
    # the other sound reading: only the destinations of the repeated half (positions n + 1 .. 2n)
    check(lambda p, n: torch.stack([p[:, :, n + 1 + k, 2 + k] for k in range(n)], dim=-1).mean(dim=(0, -1)))
    fails_with(check, lambda p, n: torch.stack([p[:, :, n + k, 1 + k] for k in range(n + 1)], dim=-1).mean(dim=(0, -1)),
               "Décalé d'une position", "seq_len + 1")
    still_to_do(check, stub("04.2"))


def test_04_3_heads_above():
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.2], [0.8, 0.05, 0.6, 0.7]])
    check = partial(ex.check_heads_above, scores=scores)
    reference = solution("04.3")
    check(reference)
    fails_with(check, lambda s, t: [(h, la) for la, h in reference(s, t)], "(tête, couche)")
    fails_with(check, lambda s, t: sorted(reference(s, t)), "pas dans le bon ordre")
    fails_with(check, lambda s, t: [divmod(la * s.shape[1] + h, s.shape[0]) for la, h in reference(s, t)],
               "i // n_heads")
    fails_with(check, lambda s, t: reference(s, t)[:-1], "têtes manquantes")

    def at_or_above(s, t):
        flat = s.flatten()
        return [divmod(int(i), s.shape[1]) for i in flat.argsort(descending=True) if flat[i] >= t]

    fails_with(check, at_or_above, "Seuil inclus", "`>=`")
    still_to_do(check, stub("04.3"))


def test_05_1_ov_copying_scores(model):
    check = partial(ex.check_ov_copying_scores, W_V=model.W_V, W_O=model.W_O)
    check(solution("05.1"))

    def eig(wv, wo):
        return FactoredMatrix(wv, wo).eigenvalues

    fails_with(check, lambda wv, wo: FactoredMatrix(wv, wo).S.sum(-1) / FactoredMatrix(wv, wo).S.sum(-1), "singulières")
    fails_with(check, lambda wv, wo: eig(wv, wo).sum(-1).real / eig(wv, wo).sum(-1).abs(), "valeur absolue de la somme")
    fails_with(check, lambda wv, wo: eig(wv, wo).sum(-1) / eig(wv, wo).abs().sum(-1), "complexes", ".real")
    still_to_do(check, stub("05.1"))


def test_05_2_top1_copying_rate(model):
    known = (model.W_E != 0).any(-1).nonzero().squeeze(-1)
    full_ov = model.W_E[known] @ model.OV[1, 0] @ model.W_U[:, known]
    own_column = torch.randperm(len(known), generator=torch.Generator().manual_seed(0))[:200].sort().values
    check = partial(ex.check_top1_copying_rate, full_ov=full_ov, sample=own_column)  # as in the notebook
    check(solution("05.2"))
    arange = fails_with(check, lambda fm, s: (fm[s].AB.argmax(-1) == torch.arange(len(s))).float().mean(),
                        "`torch.arange(len(sample))`", "comparez l'argmax à `sample`")
    assert "COLONNE" not in arange
    fails_with(check, lambda fm, s: (fm.AB[s].argmax(-1) == s).float().mean(), "matérialisez")
    fails_with(check, lambda fm, s: (fm[:, s].AB.argmax(0) == s).float().mean(), "COLONNE")
    fails_with(check, lambda fm, s: (fm[s].AB.argmax(-1) == s).float().sum(), "Non normalisé")
    still_to_do(check, stub("05.2"))


def test_05_3_composition_score(model):
    check = partial(ex.check_composition_score, W_A=model.OV[0].unsqueeze(1), W_B=model.OV[1].unsqueeze(0))
    check(solution("05.3"))
    fails_with(check, lambda a, b: (a @ b).norm(), "Non normalisé")
    fails_with(check, lambda a, b: (b @ a).norm() / (a.norm() * b.norm()), "mauvais ordre")
    still_to_do(check, stub("05.3"))


def test_06_1_legal_move_mask():
    check = ex.check_legal_move_mask
    reference = solution("06.1")
    check(reference)
    fails_with(check, lambda board, player: reference(board, -player), "Joueur inversé")
    fails_with(check, lambda board, player: reference(board, player) | (board.reshape(64) != 0), "déjà occupées")
    fails_with(check, lambda board, player: reference(board, player).reshape(8, 8).T.reshape(64),
               "Lignes et colonnes échangées")

    def orthogonal_only(board, player):  # forgets the diagonals
        mask = np.zeros(64, dtype=bool)
        for square in np.flatnonzero(board.reshape(64) == 0):
            row, col = divmod(int(square), 8)
            for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                r, c, n = row + dr, col + dc, 0
                while 0 <= r < 8 and 0 <= c < 8 and board[r, c] == -player:
                    r, c, n = r + dr, c + dc, n + 1
                mask[square] |= n > 0 and 0 <= r < 8 and 0 <= c < 8 and board[r, c] == player
        return mask

    fails_with(check, orthogonal_only, "oubliées", "diagonales comprises")

    def in_place(board, player):
        board[0, 0] = 0
        return reference(board, player)

    fails_with(check, in_place, "en place")
    still_to_do(check, stub("06.1"))


def test_06_2_model_from_state_dict():
    _, state_dict = course_models.load_course_model("course-othello-gpt")
    registry = HookedTransformer.from_pretrained("course-othello-gpt")
    tokens = torch.tensor(othello.to_token(othello.generate_games(1, seed=0)))[:, :59]
    check = partial(ex.check_model_from_state_dict, state_dict=state_dict, reference=registry, tokens=tokens)
    reference = solution("06.2")
    check(reference)

    def changed(**fields):
        def build(sd):
            model = HookedTransformer(HookedTransformerConfig.from_dict({**reference(sd).cfg.to_dict(), **fields}))
            model.load_state_dict(sd)
            return model
        return build

    def swapped(sd):
        cfg = reference(sd).cfg
        return changed(n_heads=cfg.d_head, d_head=cfg.n_heads)(sd)

    fails_with(check, swapped, "refuse les poids", "n_heads et d_head se lisent")
    fails_with(check, lambda sd: changed(n_layers=sum(k.startswith("blocks.") for k in sd))(sd), "comptez les blocs")
    fails_with(check, changed(normalization_type="LN"), "refuse les poids", "LNPre")
    fails_with(check, lambda sd: changed(n_ctx=sd["pos_embed.W_pos"].shape[0] + 1)(sd), "n_ctx", "W_pos")
    fails_with(check, lambda sd: changed(normalization_type="LNPre")(sd) if "blocks.0.ln1.w" in sd else reference(sd),
               "normalization_type", "avec ces poids")
    fails_with(check, changed(act_fn="relu"), "act_fn", "GELU")
    fails_with(check, lambda sd: HookedTransformer(reference(sd).cfg), "load_state_dict")
    fails_with(check, lambda sd: reference(sd).cfg, "renvoie un objet de type HookedTransformerConfig")
    still_to_do(check, stub("06.2"))


def test_06_3_relative_board_state():
    check = ex.check_relative_board_state
    reference = solution("06.3")
    check(reference)
    fails_with(check, lambda board, player: reference(board, -player), "« à moi » (1) et « à l'adversaire » (2)")
    fails_with(check, lambda board, player: reference(board.T, player), "Lignes et colonnes échangées")
    fails_with(check, lambda board, player: reference(board, 1), "couleurs absolues")
    fails_with(check, lambda board, player: reference(board, player).reshape(8, 8), "attendue [case=64]")
    still_to_do(check, stub("06.3"))


def test_06_4_occupied_accuracy():
    generator = torch.Generator().manual_seed(1)
    target = torch.randint(0, 3, (30, 64), generator=generator)
    pred = torch.where(torch.rand(30, 64, generator=generator) < 0.6, target, torch.randint(0, 3, (30, 64)))
    check = partial(ex.check_occupied_accuracy, pred=pred, target=target)
    check(solution("06.4"))
    fails_with(check, lambda p, t: (p == t).float().mean(), "toutes les cases")
    fails_with(check, lambda p, t: (p == t)[t == 0].float().mean(), "cases VIDES")
    fails_with(check, lambda p, t: (p == t)[p > 0].float().mean(), "lues dans `pred`")
    fails_with(check, lambda p, t: (p == t)[t > 0].float().sum(), "Non normalisé")
    def per_position(p, t):
        return torch.stack([(a == b)[b > 0].float().mean() for a, b in zip(p, t, strict=True)]).mean()

    fails_with(check, per_position, "mauvaise dimension")
    still_to_do(check, stub("06.4"))


def test_06_5_push_delta():
    generator = torch.Generator().manual_seed(2)
    check = partial(ex.check_push_delta, resid=torch.randn(5, 32, generator=generator),
                    w_dir=torch.randn(32, generator=generator), b_dir=torch.tensor(-0.3), target=torch.tensor(3.0))
    reference = solution("06.5")
    check(reference)
    fails_with(check, lambda r, w, b, t: r + reference(r, w, b, t), "seul déplacement")
    fails_with(check, lambda r, w, b, t: reference(r, w, b, t) * w.norm(), "Mal normalisé")
    fails_with(check, lambda r, w, b, t: -reference(r, w, b, t), "Signe inversé")
    fails_with(check, lambda r, w, b, t: (t - r @ w)[:, None] * w / w.norm() ** 2, "biais est oublié")
    fails_with(check, lambda r, w, b, t: -2 * (r @ w + b)[:, None] * w / w.norm() ** 2, "renversé", "(target − e)")
    fails_with(check, lambda r, w, b, t: (t * w / w.norm() ** 2).expand_as(r), "augmenté de `target`")

    def in_place(r, w, b, t):
        r += reference(r, w, b, t)
        return reference(r, w, b, t)

    fails_with(check, in_place, "en place", "`resid`")
    still_to_do(check, stub("06.5"))


def test_07_1_attribution_estimate():
    generator = torch.Generator().manual_seed(3)
    clean, corrupted, grad = torch.randn(3, 2, 4, 6, 10, generator=generator).unbind(0)
    check = partial(ex.check_attribution_estimate, clean=clean, corrupted=corrupted, grad=grad)
    reference = solution("07.1")
    check(reference)
    fails_with(check, lambda c, a, g: -reference(c, a, g), "Signe inversé")
    fails_with(check, lambda c, a, g: (c * g).sum((1, 3)), "activation propre", "(clean - corrupted)")
    fails_with(check, lambda c, a, g: ((c - a) * g).mean(3).sum(1), "Moyenne sur d_model")
    fails_with(check, lambda c, a, g: ((c - a) * g).sum(3).mean(1), "Moyenne sur le lot")
    fails_with(check, lambda c, a, g: ((c - a) * g).sum(3), "Une dimension de trop")
    fails_with(check, lambda c, a, g: reference(c, a, g).T, "attendue [layer=2, pos=6]", "axes sont échangés")

    def in_place(c, a, g):
        c -= a
        return (c * g).sum((1, 3))

    fails_with(check, in_place, "en place", "`clean`")
    still_to_do(check, stub("07.1"))


def test_07_2_map_correlation():
    generator = torch.Generator().manual_seed(4)
    exact = torch.randn(2, 7, generator=generator)
    check = partial(ex.check_map_correlation, exact=exact, approx=exact + 0.5 * torch.randn(2, 7, generator=generator))
    reference = solution("07.2")
    check(reference)
    check(lambda a, b: torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])
    fails_with(check, lambda a, b: -reference(a, b), "Signe inversé")
    fails_with(check, lambda a, b: (a * b).sum() / (a.norm() * b.norm()), "Non centré", "cosinus")

    def covariance(a, b):
        a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
        return (a * b).mean()

    fails_with(check, covariance, "Non normalisé", "covariance")
    fails_with(check, lambda a, b: covariance(a, b) / (a.std() * b.std()), "Dénominateurs incohérents")
    def per_layer(a, b):
        return torch.stack([reference(r, s) for r, s in zip(a, b, strict=True)])

    fails_with(check, lambda a, b: per_layer(a, b).mean(), "couche par couche")
    fails_with(check, per_layer, "Mauvaise forme", "Une dimension de trop")

    def in_place(a, b):
        a -= a.mean()
        b -= b.mean()
        return (a * b).sum() / (a.norm() * b.norm())

    fails_with(check, in_place, "en place", "`a`")
    fails_with(check, lambda a, b: torch.tensor(float("nan")), "NaN")
    still_to_do(check, stub("07.2"))


def test_every_diagnosis_the_readme_promises_is_given_to_a_wrong_solution_of_that_kind(model):
    """README's "Étudier avec les exercices" lists the diagnoses of the checks: each one is given to a wrong
    solution of its kind."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split("## Étudier avec les exercices")[1]
                      .split("\n## ")[0].split())
    tokens = model.to_tokens(PARAGRAPH)
    top1 = partial(ex.check_top1_accuracy, logits=model(tokens), tokens=tokens)
    positions = partial(ex.check_token_positions, model=model)
    target = torch.randint(0, 3, (30, 64), generator=torch.Generator().manual_seed(5))
    occupied = partial(ex.check_occupied_accuracy, pred=(target + (target == 1)) % 3, target=target)
    heads = partial(ex.check_heads_above, scores=torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.05, 0.6]]))

    def found(model, prompt, token, prepend_bos):
        return (model.to_tokens(prompt, prepend_bos=prepend_bos)[0] == model.to_single_token(token)).nonzero().flatten()

    def in_place(patched, clean, corrupted):
        patched -= corrupted
        return patched / (clean - corrupted)

    def one_entry_off(patched, clean, corrupted):
        out = (patched - corrupted) / (clean - corrupted)
        out.view(-1)[1] += 0.5
        return out

    promised = [
        ("mauvaise forme (attendue et obtenue, avec le nom des dimensions)", top1,
         lambda lg, tk: (lg[:, :-1].argmax(-1) == tk[:, 1:]).float().mean(0), ("Mauvaise forme", "attendue [batch=1]")),
        ("BOS oublié", positions, lambda m, p, t, b: found(m, p, t, False),
         ("Décalé d'une position", "BOS est oublié")),
        ("compté deux fois", positions, lambda *args: found(*args) + 1, ("Décalé d'une position", "compté deux fois")),
        ("signe inversé", ex.check_normalised_score, lambda p, c, k: (p - k) / (k - c), ("Signe inversé",)),
        ("axes échangés", heads, lambda s, t: [(h, la) for la, h in solution("04.3")(s, t)], ("Axes échangés",)),
        ("moyenne sur la mauvaise dimension", occupied,
         lambda p, t: torch.stack([(a == b)[b > 0].float().mean() for a, b in zip(p, t, strict=True)]).mean(),
         ("Moyenne sur la mauvaise dimension",)),
        ("résultat non normalisé", ex.check_normalised_score, lambda p, c, k: p - k, ("Non normalisé",)),
        ("entrée modifiée en place", ex.check_normalised_score, in_place, ("en place", "`patched`")),
        ("NaN", ex.check_normalised_score, lambda p, c, k: (p - k) * 0 / 0, ("NaN",)),
        ("le plus grand écart et sa position", ex.check_normalised_score, one_entry_off,
         ("Résultat inexact", "le plus grand écart est en [layer=0, pos=1]")),
    ]
    for phrase, check, wrong, fragments in promised:
        assert phrase in readme, phrase
        fails_with(check, wrong, *fragments)


def test_a_check_given_something_else_than_a_function_says_so():
    fails_with(ex.check_normalised_score, None, "est votre fonction", "NoneType")


def test_readme_lists_each_learner_notebook_in_the_exercise_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"`{path.stem}`" in readme.split("## Étudier avec les exercices")[1].split("## ")[0]


def test_07_3_interpolate_activation():
    generator = torch.Generator().manual_seed(6)
    corrupted, clean = torch.randn(3, 5, 8, generator=generator), torch.randn(3, 5, 8, generator=generator)
    check = partial(ex.check_interpolate_activation, corrupted=corrupted, clean=clean)
    reference = solution("07.3")
    check(reference)
    check(torch.lerp)
    fails_with(check, lambda a, c, alpha: c + alpha * (a - c), "mauvais côté")
    fails_with(check, lambda a, c, alpha: alpha * (c - a), "seul déplacement")
    fails_with(check, lambda a, c, alpha: a + alpha * (a - c), "Signe inversé")

    def in_place(a, c, alpha):
        a += alpha * (c - a)
        return a

    fails_with(check, in_place, "en place", "`corrupted`")
    still_to_do(check, stub("07.3"))


@pytest.fixture(scope="module")
def llama():
    """A random model of notebook 09's architecture (RMSNorm, rotary, grouped-query attention) and its cache."""
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=1, d_model=32, n_heads=4, d_head=8, n_key_value_heads=2, d_mlp=64,
                                  n_ctx=32, d_vocab=50, act_fn="silu", gated_mlp=True, normalization_type="RMS",
                                  positional_embedding_type="rotary", rotary_dim=8, rotary_base=10_000)
    model = HookedTransformer(cfg)
    _, cache = model.run_with_cache(torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1)))
    return model, cache


def test_09_1_rms_norm(llama):
    model, cache = llama
    x, w = cache["resid_pre", 0], torch.rand(32, generator=torch.Generator().manual_seed(2)) + 0.5
    check = partial(ex.check_rms_norm, x=x, w=w, eps=model.cfg.eps)
    check(solution("09.1"))
    model.blocks[0].ln1.w.data.copy_(w)
    assert torch.allclose(solution("09.1")(x, w, model.cfg.eps), model.blocks[0].ln1(x), atol=1e-6)  # the model's
    fails_with(check, lambda x, w, eps: F.layer_norm(x, x.shape[-1:], eps=eps) * w, "LayerNorm")
    fails_with(check, lambda x, w, eps: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w, "hors de la racine")
    fails_with(check, lambda x, w, eps: x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt(), "`w` est oublié")
    fails_with(check, lambda x, w, eps: x / (x.pow(2).sum(-1, keepdim=True) + eps).sqrt() * w, "SOMME")
    fails_with(check, lambda x, w, eps: x / (x.pow(2).mean(-2, keepdim=True) + eps).sqrt() * w, "mauvaise dimension")
    still_to_do(check, stub("09.1"))


def test_09_2_keys_per_query_head(llama):
    model, cache = llama
    check = partial(ex.check_keys_per_query_head, k=cache["k", 0], n_heads=model.cfg.n_heads)
    check(solution("09.2"))
    check(lambda k, n: k[:, :, torch.arange(n) // (n // k.shape[2])])
    fails_with(check, lambda k, n: k.repeat(1, 1, n // k.shape[2], 1), "repeat_interleave", "CONSÉCUTIVES")
    fails_with(check, lambda k, n: k.repeat_interleave(n // k.shape[2], dim=1), "Mauvaise forme")
    still_to_do(check, stub("09.2"))


def test_09_3_rotate_by_position(llama):
    model, cache = llama
    q, rotated = cache["q", 0], cache["blocks.0.attn.hook_rot_q"]
    check = partial(ex.check_rotate_by_position, q=q, rotated=rotated, base=model.cfg.rotary_base)
    reference = solution("09.3")
    check(reference)
    assert torch.allclose(reference(q, model.cfg.rotary_base), model.blocks[0].attn.apply_rotary(q), atol=1e-5)

    def rotate(x, base, first=0, sign=1.0, exponent=2.0, adjacent=False):
        d = x.shape[-1]
        angles = (torch.arange(x.shape[1]) + first)[:, None] * base ** (-exponent * torch.arange(d // 2) / d)
        cos, sin = angles.cos()[:, None], sign * angles.sin()[:, None]
        x1, x2 = (x[..., ::2], x[..., 1::2]) if adjacent else (x[..., : d // 2], x[..., d // 2:])
        if adjacent:
            return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    check(rotate)
    fails_with(check, lambda x, base: rotate(x, base, adjacent=True), "Paires adjacentes", "GPT-J")
    fails_with(check, lambda x, base: rotate(x, base, sign=-1.0), "mauvais sens")
    fails_with(check, lambda x, base: rotate(x, base, first=1), "Décalé d'une position")
    fails_with(check, lambda x, base: rotate(x, base, exponent=1.0), "Fréquences fausses")
    still_to_do(check, stub("09.3"))
