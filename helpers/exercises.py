"""Checks of the course's exercises: one function per exercise, in the notebooks' order, with a diagnosis in French.

Each ``check_*`` runs the learner's function on copies of the notebook's data (a failed attempt never changes
them) and on inputs the learner has not seen (small random tensors with a fixed seed, other prompts),
compares it with a reference, and raises ``ExerciseError`` with what looks wrong: wrong shape (with the
dimension names), a result shifted by one position, a flipped sign, swapped axes, a mean over the wrong
dimension, an unnormalised result, an input modified in place, NaN. Otherwise it names the largest difference
and where. On success it prints one short line; on an unfilled stub it prints that the exercise is still to
do, without raising, so that "Run All" goes on.
"""

from __future__ import annotations

import functools
import itertools
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch

from helpers import utils
from helpers.activation_cache import ActivationCache
from helpers.config import HookedTransformerConfig
from helpers.factored_matrix import FactoredMatrix
from helpers.hook_points import HookedRootModule, HookPoint
from helpers.model import HookedTransformer
from helpers.othello import OthelloBoard, batch_board_states, generate_games, square_label
from helpers.patching import activation_patching


class ExerciseError(AssertionError):
    """The learner's function gives a wrong result; the message says what looks wrong.

    ``diagnosed`` is False for a bare "Résultat inexact": the check then tries its other cases, one of which
    may name the mistake.
    """

    def __init__(self, message: str, diagnosed: bool = True):
        super().__init__(message)
        self.diagnosed = diagnosed


class _Unfilled(ExerciseError):
    """The learner's function is still the stub of the learner's notebook."""


# ---------------------------------------------------------------------------------------------------
# Running the learner's function
# ---------------------------------------------------------------------------------------------------


def _exercise(number: str):
    """Decorate a check that returns its number of cases: print success, or that the exercise is still to do."""

    def decorate(check):
        @functools.wraps(check)
        def wrapper(fn, *args, **kwargs):
            if not callable(fn):
                raise ExerciseError(f"Le premier argument de `{check.__name__}` est votre fonction (son nom, sans "
                                    f"parenthèses) ; reçu un objet de type {type(fn).__name__}.")
            try:
                n_cases = check(fn, *args, **kwargs)
            except _Unfilled as unfilled:
                print(f"Exercice {number} : à faire. {unfilled}")
                return
            print(f"Exercice {number} : réussi ({n_cases} cas vérifiés, dont des entrées inédites).")

        return wrapper

    return decorate


def _rng() -> torch.Generator:
    """The seeded generator of the checks' unseen inputs."""
    return torch.Generator().manual_seed(0)


def _run(fn, *args):
    """Call fn; an unfilled stub becomes the message that asks to fill it in."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise _Unfilled(
            f"`{fn.__name__}` n'est pas encore écrite : complétez la fonction (remplacez la ligne "
            "`raise NotImplementedError` par votre code), exécutez sa cellule, puis relancez cette vérification."
        ) from None


def _copy(value):
    """A copy of a tensor, an array or a cache; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, ActivationCache):
        return ActivationCache({name: act.clone() for name, act in value.items()}, value.model, value.has_batch_dim)
    return value


def _changed(original, copied) -> bool:
    if isinstance(original, torch.Tensor):
        return not torch.equal(original, copied)
    if isinstance(original, np.ndarray):
        return not np.array_equal(original, copied)
    if isinstance(original, ActivationCache):
        return any(not torch.equal(act, copied[name]) for name, act in original.items())
    return False


def _restore(model, params: list[torch.Tensor], had_hooks: bool) -> str | None:
    """Put back the weights and remove the hooks that a learner's function left on model; say which."""
    if any(not torch.equal(p, q) for p, q in zip(model.parameters(), params, strict=True)):
        with torch.no_grad():
            for p, q in zip(model.parameters(), params, strict=True):
                p.copy_(q)
        return ("a modifié les poids du modèle (ils viennent d'être restaurés) : n'écrivez pas dans les poids, "
                "intervenez sur les activations avec un hook (`run_with_hooks`).")
    if not had_hooks and any(hp.has_hooks(including_permanent=False) for hp in model.hook_points()):
        model.reset_hooks()
        return ("laisse des hooks attachés au modèle (ils viennent d'être retirés) : passez-les à "
                "`run_with_hooks(..., fwd_hooks=[...])`, qui les retire après la passe, ou appelez "
                "`model.reset_hooks()`.")
    return None


@contextmanager
def _model_kept(fn, models):
    """Restore the weights and remove the hooks that fn left on a model, even if fn fails; then say so."""
    saved = [[p.detach().clone() for p in model.parameters()] for model in models]
    hooked = [any(hp.has_hooks(including_permanent=False) for hp in model.hook_points()) for model in models]
    try:
        yield
    finally:
        problems = [_restore(*args) for args in zip(models, saved, hooked, strict=True)]
    for problem in filter(None, problems):
        raise ExerciseError(f"`{fn.__name__}` {problem}")


def _call(fn, names: tuple[str, ...], *args, hook: bool = False):
    """fn(*args) on copies of the arguments, so the notebook's data stay as they are; complain if fn modified one.

    hook: fn is a hook, which may modify its first argument (the activation) and return None to keep it.
    """
    copies = [_copy(a) for a in args]
    with _model_kept(fn, [a for a in args if isinstance(a, HookedRootModule)]):
        out = _run(fn, *copies)
    for i, (name, original, copied) in enumerate(zip(names, args, copies, strict=True)):
        if (hook and i == 0) or not _changed(original, copied):
            continue
        if isinstance(original, ActivationCache):
            raise ExerciseError(f"`{fn.__name__}` a écrit dans le cache `{name}` (sur une copie : celui du notebook "
                                "est intact) : une affectation à l'envers ? On lit le cache et on écrit dans "
                                "l'activation, `activation[...] = clean_cache[hook.name][...]`.")
        raise ExerciseError(f"`{fn.__name__}` a modifié son argument `{name}` en place (sur une copie : les données "
                            "du notebook sont intactes), alors qu'on s'en sert encore ensuite. Travaillez sur une "
                            "copie (`.clone()`) ou avec des opérations qui créent un nouveau tenseur (pas de "
                            "`x[...] = ...`, `+=` ni méthode en `_` sur l'entrée).")
    return copies[0] if hook and out is None else out


def _each(check_case, cases: list[tuple]) -> int:
    """check_case(*case) for each case; return their number. A diagnosed failure is raised at once; a bare
    "Résultat inexact" waits for the other cases, one of which may name the mistake, and is raised at the end."""
    failure = None
    for case in cases:
        try:
            check_case(*case)
        except ExerciseError as error:
            if error.diagnosed:
                raise
            failure = failure or error
    if failure is not None:
        raise failure
    return len(cases)


# ---------------------------------------------------------------------------------------------------
# Comparing a result with the reference
# ---------------------------------------------------------------------------------------------------


def _shape_text(shape, dims) -> str:
    return "[" + ", ".join(f"{name}={size}" for name, size in zip(dims, shape, strict=True)) + "]"


def _where(index, dims) -> str:
    return "[" + ", ".join(f"{name}={i}" for name, i in zip(dims, index, strict=True)) + "]"


def _as_tensor(got, fn_name: str) -> torch.Tensor:
    if got is None:
        raise ExerciseError(f"`{fn_name}` renvoie None : avez-vous oublié le `return` ?")
    if isinstance(got, FactoredMatrix):
        raise ExerciseError(f"`{fn_name}` renvoie une FactoredMatrix : un tenseur est attendu (`.AB`, `.norm()`...).")
    try:
        return torch.as_tensor(np.asarray(got) if isinstance(got, (list, tuple)) else got).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ExerciseError(
            f"`{fn_name}` renvoie un objet de type {type(got).__name__} : un tenseur est attendu.") from None


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    if a.shape != b.shape:
        return False
    if a.is_complex() or b.is_complex():
        return False
    return torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol)


def _matches(got, expected: torch.Tensor, atol: float = 1e-4, rtol: float = 1e-4) -> bool:
    """Whether a result (any type) equals expected, exactly for integers and booleans."""
    try:
        got = torch.as_tensor(got).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        return False
    expected = expected.detach().cpu()
    if got.dtype == torch.bool or expected.dtype == torch.bool or not expected.is_floating_point():
        return got.shape == expected.shape and not got.is_complex() and torch.equal(got.double(), expected.double())
    return _close(got, expected, atol, rtol)


def _compare(got, expected: torch.Tensor, dims: tuple[str, ...], case: str, fn_name: str,
             mistakes=(), atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Raise ExerciseError with a diagnosis unless got matches expected.

    dims: the name of each dimension of expected (used in messages).
    mistakes: (message, thunk) pairs; thunk() computes what a typical mistake would return. A mistake is named
    only if it is the only one that matches.
    """
    expected = expected.detach().cpu()
    got = _as_tensor(got, fn_name)
    where = f" ({case})"
    if got.is_complex() and not expected.is_complex():
        raise ExerciseError(f"`{fn_name}` renvoie des nombres complexes{where} : prenez la partie réelle (`.real`).")
    if _matches(got, expected, atol, rtol):
        return
    named = []
    for message, thunk in mistakes:
        candidate = torch.as_tensor(thunk()).detach().cpu()
        if message not in named and not _matches(candidate, expected, atol, rtol) and \
                _matches(got, candidate, atol, rtol):
            named.append(message)
    if len(named) == 1:
        raise ExerciseError(f"{named[0]}{where}.")
    if got.shape != expected.shape:
        message = (f"Mauvaise forme{where} : attendue {_shape_text(expected.shape, dims)}, "
                   f"obtenue {tuple(got.shape)}.")
        if got.ndim == expected.ndim and sorted(got.shape) == sorted(expected.shape):
            message += " Les mêmes tailles dans un autre ordre : des axes sont échangés."
        elif got.ndim < expected.ndim:
            message += " Il manque une dimension : une moyenne, une somme ou un indice de trop ?"
        elif got.ndim > expected.ndim:
            message += " Une dimension de trop : une moyenne, une somme ou un indice oublié ?"
        raise ExerciseError(message)
    got = got.to(expected.dtype)
    if got.is_floating_point() and torch.isnan(got).any() and not torch.isnan(expected).any():
        index = tuple(torch.nonzero(torch.isnan(got))[0].tolist())
        raise ExerciseError(f"Le résultat contient NaN{where}, par exemple en {_where(index, dims)} : une "
                            "division par zéro, le log d'un nombre négatif ou nul, ou une exponentielle qui déborde "
                            "(un softmax écrit à la main sans retirer le maximum) ?")
    if expected.is_floating_point():
        if expected.abs().max() > atol and _close(got, -expected, atol, rtol):
            raise ExerciseError(f"Signe inversé{where} : le résultat est l'opposé de celui attendu "
                                "(une soustraction dans le mauvais sens, « mauvaise − bonne » ?).")
        for perm in itertools.permutations(range(expected.ndim)):
            if perm != tuple(range(expected.ndim)) and _close(got, expected.permute(perm), atol, rtol):
                swapped = [dims[i] for i, p in enumerate(perm) if p != i]
                raise ExerciseError(f"Axes échangés{where} : les valeurs sont justes mais les dimensions "
                                    f"{' et '.join(swapped)} sont interverties.")
    diff = (got.double() - expected.double()).abs()
    index = tuple(np.unravel_index(int(diff.argmax()), tuple(expected.shape))) if expected.ndim else ()
    n_wrong = int((diff > atol + rtol * expected.double().abs()).sum())
    raise ExerciseError(
        f"Résultat inexact{where} : {n_wrong} valeur(s) sur {expected.numel()} diffèrent ; le plus grand écart "
        f"est en {_where(index, dims)} : obtenu {got[index].item():.4g}, attendu {expected[index].item():.4g}.",
        diagnosed=False)


def _fake_hook(name: str) -> HookPoint:
    """A HookPoint carrying a name, to call a hook function outside a forward pass."""
    hook = HookPoint()
    hook.name = name
    return hook


def _random_patterns(generator, batch: int | None, n_heads: int, n_pos: int) -> torch.Tensor:
    """Causal attention patterns [(batch) head dest src] whose rows sum to 1."""
    shape = (n_heads, n_pos, n_pos) if batch is None else (batch, n_heads, n_pos, n_pos)
    scores = torch.randn(shape, generator=generator) * 2
    mask = torch.ones(n_pos, n_pos).tril().bool()
    return scores.masked_fill(~mask, float("-inf")).softmax(-1)


# ---------------------------------------------------------------------------------------------------
# 01 — chargement et cache
# ---------------------------------------------------------------------------------------------------


@_exercise("01.1")
def check_next_token_distribution(next_token_distribution, model, prompt: str) -> int:
    """01.1: next_token_distribution(model, prompt) -> [d_vocab], the distribution of the token after the prompt."""

    def check_case(case, text):
        logits = model(text)[0]  # [pos d_vocab]
        got = _call(next_token_distribution, ("model", "prompt"), model, text)
        _compare(got, logits[-1].softmax(-1), ("d_vocab",), case, next_token_distribution.__name__, mistakes=[
            ("Ce sont des logits, pas des probabilités : appliquez `softmax(dim=-1)`", lambda: logits[-1]),
            ("Ce sont des log-probabilités : utilisez `softmax`, pas `log_softmax`",
             lambda: logits[-1].log_softmax(-1)),
            ("Décalé d'une position : la distribution du token suivant se lit à la DERNIÈRE position (`[0, -1]`)",
             lambda: logits[-2].softmax(-1)),
            ("Softmax pris sur la mauvaise dimension (les positions) : normalisez sur le vocabulaire, `dim=-1`",
             lambda: logits.softmax(0)[-1]),
            ("Calculé sans le token BOS : appelez le modèle avec ses réglages par défaut",
             lambda: model(text, prepend_bos=False)[0, -1].softmax(-1)),
        ], atol=1e-5)

    unseen = ["When Kate and Paul went to the park, Paul gave a ball to", "The little fox ran"]
    return _each(check_case, [("le prompt du notebook", prompt)] + [(f"prompt inédit {t!r}", t) for t in unseen])


@_exercise("01.2")
def check_top1_accuracy(top1_accuracy, logits: torch.Tensor, tokens: torch.Tensor) -> int:
    """01.2: top1_accuracy(logits [batch pos d_vocab], tokens [batch pos]) -> [batch]."""
    generator = _rng()
    random_tokens = torch.randint(0, 20, (3, 12), generator=generator)
    random_logits = torch.randn(3, 12, 20, generator=generator)
    # make about half of the next tokens the argmax and a quarter of the current ones, so that each shifted
    # comparison gives its own answer
    draw = torch.rand(3, 11, generator=generator)
    random_logits[:, :-1].scatter_add_(-1, random_tokens[:, 1:, None], 10.0 * (draw < 0.5)[..., None].float())
    random_logits[:, :-1].scatter_add_(-1, random_tokens[:, :-1, None], 10.0 * (draw > 0.75)[..., None].float())

    def check_case(case, lg, tk):
        got = _call(top1_accuracy, ("logits", "tokens"), lg, tk)
        correct = lg[:, :-1].argmax(-1) == tk[:, 1:]
        _compare(got, correct.float().mean(-1), ("batch",), case, top1_accuracy.__name__, mistakes=[
            ("Décalé d'une position : la prédiction faite à la position p porte sur le token p + 1 ; "
             "comparez `logits[:, :-1].argmax(-1)` à `tokens[:, 1:]`", lambda: (lg.argmax(-1) == tk).float().mean(-1)),
            ("Non décalé : la prédiction faite à la position p porte sur le token p + 1 ; comparez "
             "`logits[:, :-1].argmax(-1)` à `tokens[:, 1:]`, pas à `tokens[:, :-1]`",
             lambda: (lg[:, :-1].argmax(-1) == tk[:, :-1]).float().mean(-1)),
            ("Décalé d'une position : comparez `logits[:, :-1]` (et non `logits[:, 1:]`) à `tokens[:, 1:]`",
             lambda: (lg[:, 1:].argmax(-1) == tk[:, 1:]).float().mean(-1)),
            ("Non normalisé : c'est un nombre de tokens bien prédits, pas une fraction",
             lambda: correct.float().sum(-1)),
        ])

    return _each(check_case, [("les logits du notebook", logits, tokens),
                              ("logits et tokens aléatoires", random_logits, random_tokens)])


@_exercise("01.3")
def check_token_positions(token_positions, model) -> int:
    """01.3: token_positions(model, prompt, token, prepend_bos) -> int64 [n_occurrences]."""

    def check_case(text, token, prepend_bos):
        tokens = model.to_tokens(text, prepend_bos=prepend_bos)[0]
        expected = (tokens == model.to_single_token(token)).nonzero().flatten()
        got = _call(token_positions, ("model", "prompt", "token", "prepend_bos"), model, text, token, prepend_bos)
        if prepend_bos:
            right = ("Décalé d'une position vers la droite : le BOS est compté deux fois (`to_tokens` l'ajoute déjà "
                     "quand prepend_bos=True : n'ajoutez pas 1)")
            left = ("Décalé d'une position vers la gauche : le BOS est oublié (les positions comptent le token de "
                    "début quand prepend_bos=True ; passez `prepend_bos=prepend_bos` à `to_tokens`)")
        else:
            right = ("Décalé d'une position vers la droite : un BOS est compté alors que prepend_bos=False "
                     "(`to_tokens` ajoute un BOS par défaut : passez-lui `prepend_bos=prepend_bos`)")
            left = ("Décalé d'une position vers la gauche : sans BOS (prepend_bos=False), le premier token est en "
                    "position 0 ; ne retirez pas 1")
        _compare(got, expected, ("occurrence",), f"{token!r} dans {text!r}, prepend_bos={prepend_bos}",
                 token_positions.__name__, mistakes=[
            (right, lambda: expected + 1),
            (left, lambda: expected - 1),
            ("Seule la première occurrence est renvoyée : il faut toutes les positions", lambda: expected[:1]),
        ])

    texts = [("The cat sat on the mat. The mat sat on the cat.", " cat"),
             ("John and Mary went to the shops, then John gave a bag to Mary", " John"),
             ("Once upon a time a fox met a fox", " fox")]
    return _each(check_case, [(text, token, bos) for text, token in texts for bos in (True, False)])


# ---------------------------------------------------------------------------------------------------
# 02 — hooks et ablation
# ---------------------------------------------------------------------------------------------------


def _pattern(q: torch.Tensor, k: torch.Tensor, scale: float | None = None, mask: str = "-inf",
             dim: int = -1) -> torch.Tensor:
    """Causal attention pattern [head dest src] from q, k [pos head d_head], and the mistakes the check names."""
    scores = torch.einsum("qhd,khd->hqk", q, k) / (q.shape[-1] ** 0.5 if scale is None else scale)
    future = torch.triu(torch.ones(q.shape[0], k.shape[0], dtype=torch.bool, device=q.device), diagonal=1)
    if mask == "none":
        return scores.softmax(dim)
    if mask == "after":
        return scores.softmax(dim).masked_fill(future, 0.0)
    return scores.masked_fill(future, float("-inf") if mask == "-inf" else 0.0).softmax(dim)


@_exercise("01.4")
def check_attention_pattern(attention_pattern, q: torch.Tensor, k: torch.Tensor, pattern: torch.Tensor) -> int:
    """01.4: attention_pattern(q [pos head d_head], k [pos head d_head]) -> [head dest src]."""
    generator = _rng()
    random_q, random_k = torch.randn(2, 7, 3, 5, generator=generator).unbind(0)

    def check_case(case, q, k, expected):
        got = _call(attention_pattern, ("q", "k"), q, k)
        d_head = q.shape[-1]
        swapped = _pattern(k, q).transpose(-1, -2)  # scores[h, dest, src] = k[dest] . q[src], masked as usual
        _compare(got, expected, ("head", "dest", "src"), case, attention_pattern.__name__, mistakes=[
            ("Scores non divisés par √d_head : le produit scalaire requête·clé se divise par "
             "`q.shape[-1] ** 0.5` avant le softmax", lambda: _pattern(q, k, scale=1.0)),
            ("Scores divisés par d_head au lieu de √d_head", lambda: _pattern(q, k, scale=float(d_head))),
            ("Pas de masque causal : une destination ne doit pas regarder les positions sources qui la suivent "
             "(scores mis à −∞ au-dessus de la diagonale, `torch.triu(..., diagonal=1)`)",
             lambda: _pattern(q, k, mask="none")),
            ("Masque à 0 au lieu de −∞ : un score nul garde un poids exp(0) = 1 dans le softmax ; mettez les "
             "scores futurs à `float(\"-inf\")`", lambda: _pattern(q, k, mask="zero")),
            ("Masque appliqué après le softmax : les lignes ne somment plus à 1 ; masquez les scores (−∞), puis "
             "prenez le softmax", lambda: _pattern(q, k, mask="after")),
            ("Softmax sur la mauvaise dimension : chaque destination (ligne) répartit son attention sur les "
             "sources, donc `softmax(dim=-1)`", lambda: _pattern(q, k, dim=-2)),
            ("Requêtes et clés échangées : le score [tête, dest, src] est q[dest] · k[src]",
             lambda: _pattern(k, q)),
            ("Requêtes et clés échangées : le score [tête, dest, src] est q[dest] · k[src]", lambda: swapped),
        ])

    return _each(check_case, [("les requêtes et clés du notebook, comparées au motif mis en cache", q, k, pattern),
                              ("requêtes et clés aléatoires", random_q, random_k, _pattern(random_q, random_k))])


def _mean_ablate(z: torch.Tensor, head: int) -> torch.Tensor:
    z = z.clone()
    z[:, :, head] = z[:, :, head].mean(dim=(0, 1))
    return z


@_exercise("02.1")
def check_mean_ablation_hook(mean_ablation_hook, model, tokens: torch.Tensor) -> int:
    """02.1: mean_ablation_hook(z [batch pos head d_head], hook, head) -> z with that head's z averaged."""
    z = torch.randn(3, 5, 4, 6, generator=_rng())
    hook = _fake_hook("blocks.0.attn.hook_z")
    wrong_dimension = "Moyenne sur la mauvaise dimension"

    def replaced(head, value):
        out = z.clone()
        out[:, :, head] = value
        return out

    def wrong_axis(head):  # the mean ablation done on the position axis instead of the head axis
        out = z.clone()
        out[:, head] = out[:, head].mean(0)
        return out

    def check_case(head):
        got = _call(mean_ablation_hook, ("z", "hook", "head"), z, hook, head, hook=True)
        _compare(got, _mean_ablate(z, head), ("batch", "pos", "head", "d_head"), f"z aléatoire, tête {head}",
                 mean_ablation_hook.__name__, mistakes=[
            ("Le hook ne change rien : il doit écrire la moyenne dans `z[:, :, head]` et renvoyer z", lambda: z),
            ("La tête est mise à zéro : c'est l'ablation par zéro ; remplacez-la par sa moyenne",
             lambda: replaced(head, 0.0)),
            (wrong_dimension + " : sur les seules positions ; moyennez sur le lot ET les positions, `dim=(0, 1)`",
             lambda: replaced(head, z[:, :, head].mean(1, keepdim=True))),
            (wrong_dimension + " : sur le seul lot ; moyennez sur le lot ET les positions, `dim=(0, 1)`",
             lambda: replaced(head, z[:, :, head].mean(0))),
            (wrong_dimension + " (d_head) : moyennez sur le lot et les positions, `dim=(0, 1)`",
             lambda: replaced(head, z[:, :, head].mean(-1, keepdim=True))),
            (wrong_dimension + " : d_head est moyennée aussi ; moyennez sur le lot et les positions seulement",
             lambda: replaced(head, z[:, :, head].mean())),
            (wrong_dimension + " : toutes les têtes sont moyennées ensemble ; ne prenez que `z[:, :, head]`",
             lambda: replaced(head, z.mean(dim=(0, 1, 2)))),
            ("Mauvais axe : l'indice de tête est le troisième axe de z, `z[:, :, head]`", lambda: wrong_axis(head)),
        ])

    n_cases = _each(check_case, [(1,), (3,)])
    name = utils.get_act_name("z", 0)
    expected = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(name, lambda z, hook: _mean_ablate(z, 1))])
    got = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(name, partial(mean_ablation_hook, head=1))])
    _compare(got, expected, (), "perte du modèle avec L0H1 ablatée", mean_ablation_hook.__name__)
    return n_cases + 1


def _zero_ablation_map(model, tokens: torch.Tensor) -> torch.Tensor:
    """The reference map [layer head]: per layer, one pass from that layer over n_heads copies of the batch,
    copy h with head h zeroed."""
    n_heads, batch = model.cfg.n_heads, tokens.shape[0]
    clean, cache = model.run_with_cache(tokens, return_type="loss",
                                        names_filter=lambda name: name.endswith("hook_resid_pre"))
    rows, heads = torch.arange(n_heads * batch), torch.arange(n_heads).repeat_interleave(batch)

    def zero_head(z, hook):  # z: [copies*batch pos head d_head]
        z[rows, :, heads] = 0.0
        return z

    out = torch.zeros(model.cfg.n_layers, n_heads)
    for layer in range(model.cfg.n_layers):
        resid = cache["resid_pre", layer].repeat(n_heads, 1, 1)
        hooks = [(utils.get_act_name("z", layer), zero_head)]
        logits = model.run_with_hooks(resid, start_at_layer=layer, fwd_hooks=hooks)
        loss = model.loss_fn(logits, tokens.repeat(n_heads, 1), per_token=True)  # [copies*batch pos-1]
        out[layer] = loss.unflatten(0, (n_heads, batch)).mean((1, 2)) - clean
    return out


def _zero_layer_map(model, tokens: torch.Tensor) -> torch.Tensor:
    """A typical mistake's map [layer head]: the loss increase when the whole layer's z is zeroed."""
    clean = model(tokens, return_type="loss")
    losses = [model.run_with_hooks(tokens, return_type="loss",
                                   fwd_hooks=[(utils.get_act_name("z", layer), lambda z, hook: torch.zeros_like(z))])
              for layer in range(model.cfg.n_layers)]
    return (torch.stack(losses) - clean)[:, None].expand(-1, model.cfg.n_heads)


@_exercise("02.2")
def check_zero_ablation_map(zero_ablation_map, model, tokens: torch.Tensor) -> int:
    """02.2: zero_ablation_map(model, tokens) -> [layer head], loss increase when each head is zeroed."""

    def check_case(case, tk):
        expected = _zero_ablation_map(model, tk)
        got = _call(zero_ablation_map, ("model", "tokens"), model, tk)
        _compare(got, expected, ("layer", "head"), case, zero_ablation_map.__name__, mistakes=[
            ("Ce sont les pertes ablatées, pas leur hausse : soustrayez la perte sans intervention",
             lambda: expected + model(tk, return_type="loss")),
            ("Toute la couche est mise à zéro : n'annulez que la tête `head`, `z[:, :, head] = 0`",
             lambda: _zero_layer_map(model, tk)),
        ], atol=1e-4)

    unseen = model.to_tokens("Every morning the old farmer walked to the river with his dog.")
    return _each(check_case, [("le texte du notebook", tokens), ("un texte inédit", unseen)])


def _offset_score(pattern: torch.Tensor, offset: int) -> torch.Tensor:
    return pattern.diagonal(offset=-offset, dim1=-2, dim2=-1).mean(-1)


@_exercise("02.3")
def check_offset_attention_score(offset_attention_score, pattern: torch.Tensor) -> int:
    """02.3: offset_attention_score(pattern [head dest src], offset) -> [head]."""

    def check_case(case, p, offset):
        got = _call(offset_attention_score, ("pattern", "offset"), p, offset)
        diagonal = p.diagonal(offset=-offset, dim1=-2, dim2=-1)
        _compare(got, diagonal.mean(-1), ("head",), f"{case}, offset={offset}", offset_attention_score.__name__,
                 mistakes=[
            ("Diagonale au-dessus de la diagonale principale : la source y est APRÈS la destination "
             "(axes dest / src échangés ?) ; prenez `diagonal(offset=-offset)`",
             lambda: _offset_score(p.transpose(-1, -2), offset)),
            ("Décalé d'une position : vous lisez la source `offset - 1` positions en arrière",
             lambda: _offset_score(p, offset - 1)),
            ("Décalé d'une position : vous lisez la source `offset + 1` positions en arrière",
             lambda: _offset_score(p, offset + 1)),
            ("Somme au lieu de moyenne : divisez par le nombre de destinations", lambda: diagonal.sum(-1)),
            ("Mal normalisé : divisé par le nombre de positions ; la diagonale n'a que `n_pos - offset` "
             "destinations, prenez sa moyenne", lambda: diagonal.sum(-1) / p.shape[-1]),
        ])

    return _each(check_case, [("le motif du notebook", pattern, 1), ("le motif du notebook", pattern, 3),
                              ("motif aléatoire", _random_patterns(_rng(), None, 3, 9), 2)])


# ---------------------------------------------------------------------------------------------------
# 03 — IOI et patching
# ---------------------------------------------------------------------------------------------------


@_exercise("03.1")
def check_two_name_prob(two_name_prob, logits: torch.Tensor, answer_tokens: torch.Tensor) -> int:
    """03.1: two_name_prob(logits [batch pos d_vocab], answer_tokens [batch 2]) -> [batch]."""
    generator = _rng()
    random_logits = torch.randn(5, 7, 30, generator=generator) * 3
    random_answers = torch.stack([torch.randperm(30, generator=generator)[:2] for _ in range(5)])

    def check_case(case, lg, ans):
        got = _call(two_name_prob, ("logits", "answer_tokens"), lg, ans)
        pair = lg[:, -1].gather(-1, ans)  # [batch 2]
        _compare(got, pair.softmax(-1)[:, 0], ("batch",), case, two_name_prob.__name__, mistakes=[
            ("Inversé : c'est la probabilité du MAUVAIS nom (colonne 1) ; la bonne réponse est la colonne 0",
             lambda: pair.softmax(-1)[:, 1]),
            ("Non normalisé sur les deux noms : le softmax est pris sur tout le vocabulaire ; ne gardez que les "
             "deux logits, puis softmax", lambda: lg[:, -1].softmax(-1).gather(-1, ans)[:, 0]),
            ("Décalé d'une position : la réponse se lit à la dernière position, `logits[:, -1]`",
             lambda: lg[:, -2].gather(-1, ans).softmax(-1)[:, 0]),
            ("Ce sont des différences de logits : transformez-les en probabilité (softmax sur les deux noms, "
             "ou sigmoïde de la différence)", lambda: pair[:, 0] - pair[:, 1]),
            ("Ce sont des log-probabilités : utilisez `softmax`, pas `log_softmax`",
             lambda: pair.log_softmax(-1)[:, 0]),
        ], atol=1e-5)

    return _each(check_case, [("les logits propres du notebook", logits, answer_tokens),
                              ("logits aléatoires", random_logits, random_answers)])


@_exercise("03.2")
def check_normalised_score(normalised_score) -> int:
    """03.2: normalised_score(patched, clean, corrupted) -> same shape as patched; 0 = corrupted, 1 = clean."""

    def check_case(patched, clean, corrupted):
        expected = (patched - corrupted) / (clean - corrupted)
        got = _call(normalised_score, ("patched", "clean", "corrupted"), patched, clean, corrupted)
        _compare(got, expected, ("layer", "pos")[: patched.ndim], f"propre = {clean}, corrompu = {corrupted}",
                 normalised_score.__name__, mistakes=[
            ("Inversé : 1 doit correspondre au comportement propre et 0 au corrompu (c'est 1 − score)",
             lambda: 1 - expected),
            ("Le numérateur ne retire pas la valeur corrompue : `(patched - corrupted) / (clean - corrupted)`",
             lambda: patched / (clean - corrupted)),
            ("Non normalisé : divisez par `clean - corrupted`", lambda: patched - corrupted),
        ])

    patched = torch.randn(3, 4, generator=_rng())
    return _each(check_case, [(patched, 2.5, -1.0), (torch.tensor([7.2, 0.0, -7.2]), 7.2, -7.2),
                              (patched[0], -0.5, 1.5)])


def _patch_head_position(z, head, position, clean):
    z = z.clone()
    z[:, position, head] = clean[:, position, head]
    return z


@_exercise("03.3")
def check_patch_head_position(patch_head_position, clean_cache) -> int:
    """03.3: patch_head_position(z, hook, head, position, clean_cache) -> z, clean z of one head at one position."""
    if not isinstance(clean_cache, ActivationCache):
        raise ExerciseError("Passez à la vérification le cache propre du notebook (`clean_cache`, l'ActivationCache "
                            f"que renvoie `run_with_cache`) ; reçu un objet de type {type(clean_cache).__name__}.")
    generator = _rng()
    first, last = utils.get_act_name("z", 0), utils.get_act_name("z", clean_cache.model.cfg.n_layers - 1)
    real_clean = clean_cache[first]
    real_corrupted = torch.randn(real_clean.shape, generator=generator)
    corrupted, clean, other_layer = torch.randn(3, 2, 6, 4, 5, generator=generator)
    # an unseen cache that holds the first layer too, so that a hook reading another layer than its own is wrong
    fake_cache = ActivationCache({first: other_layer, last: clean}, clean_cache.model)

    def check_case(case, z, cl, other, cache, hook_name, head, position):
        got = _call(patch_head_position, ("z", "hook", "head", "position", "clean_cache"), z, _fake_hook(hook_name),
                    head, position, cache, hook=True)
        n_pos = z.shape[1]
        mistakes = [
            ("Le hook ne change rien : écrivez la valeur propre dans `z[:, position, head]` et renvoyez z",
             lambda: z),
            ("Toutes les positions sont patchées : ne remplacez que `position`",
             lambda: _patch_head_position(z, head, slice(None), cl)),
            ("Toutes les têtes sont patchées : ne remplacez que `head`",
             lambda: _patch_head_position(z, slice(None), position, cl)),
            ("Décalé d'une position : vous patchez `position + 1`",
             lambda: _patch_head_position(z, head, (position + 1) % n_pos, cl)),
            ("Décalé d'une position : vous patchez `position - 1`",
             lambda: _patch_head_position(z, head, (position - 1) % n_pos, cl)),
        ]
        if other is not None:
            mistakes.append((f"Vous lisez le cache d'une autre couche que celle du hook : prenez "
                             f"`clean_cache[hook.name]` (ici `hook.name` vaut {hook_name!r}), qui suit la couche où "
                             "le hook est posé", lambda: _patch_head_position(z, head, position, other)))
        _compare(got, _patch_head_position(z, head, position, cl), ("batch", "pos", "head", "d_head"),
                 f"{case}, tête {head}, position {position}", patch_head_position.__name__, mistakes=mistakes)

    other = other_layer if last != first else None
    return _each(check_case, [("z propre du notebook", real_corrupted, real_clean, None, clean_cache, first, 1, 4),
                              ("z aléatoire", corrupted, clean, other, fake_cache, last, 2, 3),
                              ("z aléatoire", corrupted, clean, other, fake_cache, last, 0, -1)])


@_exercise("03.4")
def check_patch_attn_out_by_position(patch_attn_out_by_position, model, corrupted_tokens, clean_cache,
                                     metric) -> int:
    """03.4: patch_attn_out_by_position(model, corrupted_tokens, clean_cache, metric, layer) -> [pos]."""

    def raw_logit_diff(logits):  # unseen metric: the first prompt's top logit minus the mean
        last = logits[0, -1]
        return last.max() - last.mean()

    def check_case(case, fn, layer, tokens, cache):
        def patching_map(kind):  # both metrics read logits[:, -1]
            return activation_patching(model, tokens, cache, fn, kind=kind, logit_positions=-1).values[layer]

        got = _call(patch_attn_out_by_position, ("model", "corrupted_tokens", "clean_cache", "metric", "layer"),
                    model, tokens, cache, fn, layer)
        _compare(got, patching_map("attn_out"), ("pos",), case, patch_attn_out_by_position.__name__, mistakes=[
            ("C'est la carte de `resid_pre` : patchez `hook_attn_out` (`utils.get_act_name('attn_out', layer)`)",
             lambda: patching_map("resid_pre")),
            ("C'est la carte de `mlp_out` : patchez `hook_attn_out`", lambda: patching_map("mlp_out")),
        ], atol=1e-3)

    # the unseen case: the first two prompts only (a quarter of the cost), another layer and another metric
    two_prompts = ActivationCache({name: act[:2] for name, act in clean_cache.items()}, model)
    return _each(check_case, [("la métrique du notebook, couche 0", metric, 0, corrupted_tokens, clean_cache),
                              ("deux prompts, une autre métrique, couche 1", raw_logit_diff, 1, corrupted_tokens[:2],
                               two_prompts)])


# ---------------------------------------------------------------------------------------------------
# 04 — têtes d'induction
# ---------------------------------------------------------------------------------------------------


@_exercise("04.1")
def check_per_token_loss(per_token_loss, model, tokens: torch.Tensor) -> int:
    """04.1: per_token_loss(logits [batch pos d_vocab], tokens [batch pos]) -> [batch pos-1]."""

    def check_case(case, lg, tk):
        got = _call(per_token_loss, ("logits", "tokens"), lg, tk)
        log_probs = lg.log_softmax(-1)
        expected = -log_probs[:, :-1].gather(-1, tk[:, 1:, None])[..., 0]
        _compare(got, expected, ("batch", "pos"), case, per_token_loss.__name__, mistakes=[
            ("Décalé d'une position : la position p prédit le token p + 1 ; comparez `logits[:, :-1]` à "
             "`tokens[:, 1:]`", lambda: -log_probs[:, :-1].gather(-1, tk[:, :-1, None])[..., 0]),
            ("Décalé d'une position : comparez `logits[:, :-1]` (et non `logits[:, 1:]`) à `tokens[:, 1:]`",
             lambda: -log_probs[:, 1:].gather(-1, tk[:, 1:, None])[..., 0]),
            ("Non décalé : la position p prédit le token p + 1 ; comparez `logits[:, :-1]` à `tokens[:, 1:]`",
             lambda: -log_probs.gather(-1, tk[..., None])[..., 0]),
            ("Non normalisé : prenez `log_softmax` des logits avant de lire celui du bon token",
             lambda: -lg[:, :-1].gather(-1, tk[:, 1:, None])[..., 0]),
            ("Ce sont des probabilités : la perte est `-log p`, prenez `log_softmax`",
             lambda: -expected.neg().exp()),
        ], atol=1e-4)

    generator = _rng()
    random_logits = torch.randn(2, 9, 13, generator=generator)
    random_tokens = torch.randint(0, 13, (2, 9), generator=generator)
    return _each(check_case, [("les tokens répétés du notebook", model(tokens), tokens),
                              ("logits aléatoires", random_logits, random_tokens)])


def _stripe(pattern: torch.Tensor, offset: int, first: int = 0) -> torch.Tensor:
    """Mean over batch and destinations of a diagonal of pattern [batch head dest src], from its entry first."""
    return pattern.diagonal(offset=offset, dim1=-2, dim2=-1)[..., first:].mean(dim=(0, -1))


@_exercise("04.2")
def check_induction_stripe_score(induction_stripe_score, model, tokens: torch.Tensor, seq_len: int) -> int:
    """04.2: induction_stripe_score(pattern [batch head dest src], seq_len) -> [head].

    Two readings pass: the whole stripe (offset 1 - seq_len), or only its destinations in the repeated half
    (from position seq_len + 1: the stripe's first two entries lie in the first half).
    """
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))

    def check_case(case, p, n):
        got = _call(induction_stripe_score, ("pattern", "seq_len"), p, n)
        if _matches(got, _stripe(p, 1 - n, first=2)):
            return
        _compare(got, _stripe(p, 1 - n), ("head",), f"{case}, seq_len={n}", induction_stripe_score.__name__, mistakes=[
            ("Décalé d'une position : vous lisez le token répété lui-même (`offset=-seq_len`, une tête de "
             "« token dupliqué ») ; la tête d'induction regarde le token qui le SUIT, `offset=1 - seq_len`",
             lambda: _stripe(p, -n)),
            ("Décalé d'une position : `offset=2 - seq_len` ; la bande est à `1 - seq_len`", lambda: _stripe(p, 2 - n)),
            ("Bande au-dessus de la diagonale (source après la destination) : axes dest / src échangés, ou "
             "offset de signe inversé ; prenez `offset=1 - seq_len`", lambda: _stripe(p, n - 1)),
            ("Décalé d'une position : la moitié répétée commence à la position `seq_len + 1` (le BOS est en 0) ; "
             "moyennez toute la bande, ou ses seules destinations à partir de `seq_len + 1`",
             lambda: _stripe(p, 1 - n, first=1)),
            ("Moyenne sur la mauvaise dimension : le score moyenne le lot et les destinations, pas les têtes",
             lambda: p.diagonal(offset=1 - n, dim1=-2, dim2=-1).mean(dim=(0, 1))),
        ])

    cases = [(f"le motif de la couche {layer} du notebook", cache["pattern", layer], seq_len)
             for layer in range(model.cfg.n_layers)]
    return _each(check_case, cases + [("motif aléatoire", _random_patterns(_rng(), 2, 3, 2 * 7 + 1), 7)])


def _heads_above(scores: torch.Tensor, threshold: float, above=torch.gt) -> list[tuple[int, int]]:
    flat = scores.flatten()
    order = flat.argsort(descending=True)
    return [divmod(int(i), scores.shape[1]) for i in order if above(flat[i], threshold)]


@_exercise("04.3")
def check_heads_above(heads_above, scores: torch.Tensor) -> int:
    """04.3: heads_above(scores [layer head], threshold) -> list of (layer, head), best first."""

    def check_case(s, threshold):
        expected = _heads_above(s, threshold)
        got = _call(heads_above, ("scores", "threshold"), s, threshold)
        case = f"scores de forme {tuple(s.shape)}, seuil {threshold:.4g}"
        try:
            got = [(int(layer), int(head)) for layer, head in got]
        except (TypeError, ValueError):
            raise ExerciseError(f"`{heads_above.__name__}` doit renvoyer une liste de couples (couche, tête) "
                                f"({case}) ; obtenu {got!r:.80}") from None
        if got == expected:
            return
        if got == [(h, la) for la, h in expected]:
            raise ExerciseError(f"Axes échangés ({case}) : vos couples sont (tête, couche) ; la couche vient d'abord.")
        if sorted(got) == sorted(expected):
            raise ExerciseError(f"Les bonnes têtes, mais pas dans le bon ordre ({case}) : triez par score décroissant.")
        if got == [divmod(la * s.shape[1] + h, s.shape[0]) for la, h in expected]:
            raise ExerciseError(f"Mauvaise conversion de l'indice aplati ({case}) : couche = i // n_heads, "
                                "tête = i % n_heads (n_heads = scores.shape[1]).")
        if got == _heads_above(s, threshold, above=torch.ge):
            raise ExerciseError(f"Seuil inclus ({case}) : une tête dont le score vaut exactement le seuil ne compte "
                                "pas ; il faut un score strictement supérieur (`>`, pas `>=`).")
        missing = [pair for pair in expected if pair not in got]
        extra = [pair for pair in got if pair not in expected]
        raise ExerciseError(f"Résultat inexact ({case}) : têtes manquantes {missing}, têtes en trop {extra} "
                            "(seules les têtes de score strictement supérieur au seuil comptent).", diagnosed=False)

    random_scores = torch.rand(3, 5, generator=_rng())
    return _each(check_case, [(scores, 0.5), (scores, 0.0), (random_scores, 0.4),
                              (random_scores, float(random_scores.flatten().sort().values[7]))])


# ---------------------------------------------------------------------------------------------------
# 05 — FactoredMatrix
# ---------------------------------------------------------------------------------------------------


@_exercise("05.1")
def check_ov_copying_scores(ov_copying_scores, W_V: torch.Tensor, W_O: torch.Tensor) -> int:
    """05.1: ov_copying_scores(W_V [... d_model d_head], W_O [... d_head d_model]) -> [...]."""

    def check_case(case, wv, wo, dims):
        eig = FactoredMatrix(wv, wo).eigenvalues
        got = _call(ov_copying_scores, ("W_V", "W_O"), wv, wo)
        _compare(got, eig.sum(-1).real / eig.abs().sum(-1), dims, case, ov_copying_scores.__name__, mistakes=[
            ("Valeurs singulières au lieu des valeurs propres : elles sont toujours positives, le score vaut 1 "
             "partout ; prenez `.eigenvalues`", lambda: torch.ones(eig.shape[:-1])),
            ("Le dénominateur est la valeur absolue de la somme : il faut la somme des valeurs absolues, "
             "`eig.abs().sum(-1)`", lambda: eig.sum(-1).real / eig.sum(-1).abs()),
            ("Somme sur la mauvaise dimension : les valeurs propres sont sur la dernière, `sum(-1)`",
             lambda: eig.sum(0).real / eig.abs().sum(0)),
        ], atol=1e-3)

    generator = _rng()
    A = torch.randn(3, 10, 4, generator=generator)
    B = A.transpose(-1, -2) + 0.5 * torch.randn(3, 4, 10, generator=generator)  # some copying, some not
    B[1] = -B[1]
    return _each(check_case, [("les poids du modèle", W_V, W_O, ("layer", "head")),
                              ("poids aléatoires", A, B, ("head",))])


class _NoDenseFactoredMatrix(FactoredMatrix):
    """A FactoredMatrix that refuses to build a dense product of more than ``max_entries`` entries (to check
    an exercise: the sampled rows are allowed, the whole matrix is not)."""

    def __init__(self, A, B, max_entries: int):
        super().__init__(A, B)
        self.max_entries = max_entries

    @property
    def AB(self):
        if self.A.shape[-2] * self.B.shape[-1] > self.max_entries:
            raise ExerciseError(
                f"Vous matérialisez une matrice {self.A.shape[-2]} × {self.B.shape[-1]} avec `.AB` : n'en "
                "calculez que les lignes utiles, en indexant d'abord la FactoredMatrix (`full_ov[sample]`).")
        return super().AB

    def __getitem__(self, idx):
        out = super().__getitem__(idx)
        return _NoDenseFactoredMatrix(out.A, out.B, self.max_entries)


@_exercise("05.2")
def check_top1_copying_rate(top1_copying_rate, full_ov: FactoredMatrix, sample: torch.Tensor) -> int:
    """05.2: top1_copying_rate(full_ov FactoredMatrix [n n], sample [n_sample]) -> scalar."""

    def check_case(case, fm, s):
        guarded = _NoDenseFactoredMatrix(fm.A.clone(), fm.B.clone(), max_entries=len(s) * fm.B.shape[-1])
        rows = fm[s].AB  # [n_sample n]
        got = _call(top1_copying_rate, ("full_ov", "sample"), guarded, s)
        _compare(got, (rows.argmax(-1) == s).float().mean(), (), case, top1_copying_rate.__name__, mistakes=[
            ("Comparé aux rangs dans l'échantillon (`torch.arange(len(sample))`) : la ligne `sample[i]` recopie si "
             "son maximum est dans la colonne `sample[i]` ; comparez l'argmax à `sample` lui-même",
             lambda: (rows.argmax(-1) == torch.arange(len(s))).float().mean()),
            ("Axes échangés : vous cherchez le maximum de chaque COLONNE ; la ligne t est l'effet du token "
             "source t, cherchez le maximum de `full_ov[sample].AB` sur la dernière dimension",
             lambda: (fm[:, s].AB.argmax(0) == s).float().mean()),
            ("Non normalisé : c'est un nombre de tokens recopiés, pas une fraction",
             lambda: (rows.argmax(-1) == s).float().sum()),
        ])

    # unseen: a matrix that copies about half of its tokens, and a sample holding the first 30 indices, so that
    # each typical mistake gives its own rate
    generator = _rng()
    A = torch.randn(3000, 16, generator=generator)
    B = A.T + 1.2 * torch.randn(16, 3000, generator=generator)
    random_sample = torch.cat([torch.arange(30), 30 + torch.randperm(2970, generator=generator)[:120]]).sort().values
    return _each(check_case, [("le circuit OV complet du notebook", full_ov, sample),
                              ("une matrice factorisée aléatoire 3000 × 3000", FactoredMatrix(A, B), random_sample)])


@_exercise("05.3")
def check_composition_score(composition_score, W_A: FactoredMatrix, W_B: FactoredMatrix) -> int:
    """05.3: composition_score(W_A, W_B) -> [...], |W_A W_B|_F / (|W_A|_F |W_B|_F)."""

    def check_case(case, a, b):
        expected = (a @ b).norm() / (a.norm() * b.norm())
        got = _call(composition_score, ("W_A", "W_B"), FactoredMatrix(a.A.clone(), a.B.clone()),
                    FactoredMatrix(b.A.clone(), b.B.clone()))
        _compare(got, expected, tuple(f"dim{i}" for i in range(expected.ndim)), case, composition_score.__name__,
                 mistakes=[
            ("Non normalisé : divisez par le produit des normes `W_A.norm() * W_B.norm()`", lambda: (a @ b).norm()),
            ("Produit dans le mauvais ordre : W_A agit d'abord, le produit est `W_A @ W_B`",
             lambda: (b @ a).norm() / (a.norm() * b.norm())),
            ("Divisé par la somme des normes : il faut leur produit", lambda: (a @ b).norm() / (a.norm() + b.norm())),
        ], atol=1e-4)

    generator = _rng()
    rand = [FactoredMatrix(torch.randn(2, 6, 3, generator=generator), torch.randn(2, 3, 6, generator=generator))
            for _ in range(2)]
    return _each(check_case, [("les circuits OV du modèle", W_A, W_B), ("matrices factorisées aléatoires", *rand)])


# ---------------------------------------------------------------------------------------------------
# 06 — Othello-GPT
# ---------------------------------------------------------------------------------------------------


def _positions(n_games: int = 4, seed: int = 3):
    """(board [8 8] int8, player) pairs from random games, the player to move after each move."""
    states = batch_board_states(generate_games(n_games, seed=seed))
    picks = [(g, t) for g in range(n_games) for t in (0, 5, 17, 33, 48)]
    return [(states.boards[g, t], int(states.next_players[g, t])) for g, t in picks if states.next_players[g, t]]


def _legal(board: np.ndarray, player: int) -> torch.Tensor:
    position = OthelloBoard()
    position.board = board.copy()
    position.player = player
    mask = torch.zeros(64, dtype=torch.bool)
    mask[position.legal_moves(player)] = True
    return mask


def _colour_case(player: int) -> str:
    return f"un plateau où les {'noirs' if player == 1 else 'blancs'} jouent"


@_exercise("06.1")
def check_legal_move_mask(legal_move_mask) -> int:
    """06.1: legal_move_mask(board [8 8], player) -> bool [64]."""

    def check_case(board, player):
        got = _as_tensor(_call(legal_move_mask, ("board", "player"), board, player), legal_move_mask.__name__)
        expected = _legal(board, player)
        case = _colour_case(player)
        if got.shape != expected.shape:
            _compare(got, expected, ("case",), case, legal_move_mask.__name__)
        got = got.bool()
        if torch.equal(got, expected):
            return
        occupied = torch.as_tensor(board.reshape(64) != 0)
        extra = (got & ~expected).nonzero().flatten().tolist()
        missing = (expected & ~got).nonzero().flatten().tolist()
        diagnosed = True
        if torch.equal(got, _legal(board, -player)):
            message = "Joueur inversé : ce sont les coups légaux de l'adversaire"
        elif torch.equal(got, expected.view(8, 8).T.reshape(64)):
            message = "Lignes et colonnes échangées : la case s est en ligne s // 8, colonne s % 8"
        elif extra and all(occupied[s] for s in extra):
            message = "Des cases déjà occupées sont marquées légales : un coup se joue sur une case vide"
        else:
            message, diagnosed = "Résultat inexact", False
        raise ExerciseError(
            f"{message} ({case}). Légales à tort : {', '.join(square_label(s) for s in extra) or '-'} ; oubliées : "
            f"{', '.join(square_label(s) for s in missing) or '-'} (rappel : il faut encadrer au moins un pion "
            "adverse, dans l'une des 8 directions, diagonales comprises).", diagnosed=diagnosed)

    return _each(check_case, _positions())


def _relative(board: np.ndarray, player: int) -> torch.Tensor:
    flat = torch.as_tensor(board.reshape(64).astype(np.int64))
    return torch.where(flat == player, 1, torch.where(flat == -player, 2, 0))


CONFIG_FIELDS = (
    "n_layers", "d_model", "n_ctx", "d_head", "n_heads", "d_mlp", "d_vocab", "act_fn", "normalization_type")


def _config_from_state_dict(state_dict: dict, act_fn: str = "gelu") -> HookedTransformerConfig:
    """The HookedTransformerConfig that the shapes of a classic state dict imply (act_fn is not in them)."""
    n_heads, d_model, d_head = state_dict["blocks.0.attn.W_Q"].shape
    return HookedTransformerConfig(
        n_layers=1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("blocks.")), d_model=d_model,
        n_ctx=state_dict["pos_embed.W_pos"].shape[0], d_head=d_head, n_heads=n_heads,
        d_mlp=state_dict["blocks.0.mlp.W_in"].shape[1], d_vocab=state_dict["embed.W_E"].shape[0], act_fn=act_fn,
        normalization_type="LN" if "blocks.0.ln1.w" in state_dict else "LNPre")


def _config_mistake(field: str, got: HookedTransformerConfig, expected: HookedTransformerConfig) -> str:
    """What a wrong value of ``field`` says about where it was read."""
    if got is not None and field in ("n_heads", "d_head") and \
            (got.n_heads, got.d_head) == (expected.d_head, expected.n_heads):
        return "n_heads et d_head sont échangés : `blocks.0.attn.W_Q` a la forme [n_heads, d_model, d_head]"
    return {
        "n_layers": "comptez les blocs (les clés `blocks.<i>.…`, i de 0 à n_layers − 1), pas les clés ni les poids",
        "d_model": "d_model est la seconde dimension de `embed.W_E` [d_vocab, d_model]",
        "n_ctx": "n_ctx est le nombre de lignes de `pos_embed.W_pos` [n_ctx, d_model], une par position",
        "d_head": "d_head est la dernière dimension de `blocks.0.attn.W_Q` [n_heads, d_model, d_head]",
        "n_heads": "n_heads est la première dimension de `blocks.0.attn.W_Q` [n_heads, d_model, d_head]",
        "d_mlp": "d_mlp est la dernière dimension de `blocks.0.mlp.W_in` [d_model, d_mlp]",
        "d_vocab": "d_vocab est le nombre de lignes de `embed.W_E` [d_vocab, d_model]",
        "act_fn": "l'activation ne se lit pas dans les formes : le texte la donne (GELU, `act_fn=\"gelu\"`)",
        "normalization_type": ("un state dict sans poids de LayerNorm (`blocks.0.ln1.w`) vient d'un modèle dont les "
                               "LayerNorm ne font que centrer et normaliser, leurs poids étant repliés dans les "
                               "matrices suivantes : `normalization_type=\"LNPre\"` ; avec ces poids, \"LN\""),
    }[field]


def _load_error_hint(message: str) -> str:
    """Which config field a failed ``load_state_dict`` points to, from PyTorch's message."""
    keys = message.split("Missing key(s)", 1)[-1] if "key(s)" in message else ""
    if ".ln1.w" in keys or "ln_final.w" in keys:
        return _config_mistake("normalization_type", None, None)
    if keys:
        return "Des blocs manquent ou sont en trop : " + _config_mistake("n_layers", None, None)
    for weight, hint in ((".attn.W_Q:", "n_heads et d_head se lisent dans `blocks.0.attn.W_Q` "
                                        "[n_heads, d_model, d_head]"),
                         (".W_pos:", _config_mistake("n_ctx", None, None)),
                         (".W_E:", "d_vocab et d_model se lisent dans `embed.W_E` [d_vocab, d_model]"),
                         (".mlp.W_in:", _config_mistake("d_mlp", None, None))):
        if weight in message:
            return hint
    return "Comparez chaque dimension de la configuration aux formes imprimées ci-dessus."


@_exercise("06.2")
def check_model_from_state_dict(model_from_state_dict, state_dict: dict, reference: HookedTransformer,
                                tokens: torch.Tensor) -> int:
    """06.2: model_from_state_dict(state_dict) -> HookedTransformer built from the shapes, with these weights.

    reference: the same weights loaded by from_pretrained; tokens [batch pos] on which both must agree."""
    torch.manual_seed(0)
    unseen = HookedTransformer(HookedTransformerConfig(n_layers=3, d_model=48, n_ctx=20, d_head=8, n_heads=6, d_mlp=96,
                                                       d_vocab=61, act_fn="gelu", normalization_type="LN")).state_dict()

    def check_case(case, sd, tokens):
        try:
            got = _call(model_from_state_dict, ("state_dict",), sd)
        except RuntimeError as error:
            if "Error(s) in loading state_dict" not in str(error):
                raise
            raise ExerciseError(f"`load_state_dict` refuse les poids ({case}) : la configuration ne correspond pas à "
                                f"leurs formes. {_load_error_hint(str(error))}") from None
        if not isinstance(got, HookedTransformer):
            raise ExerciseError(f"`{model_from_state_dict.__name__}` renvoie un objet de type {type(got).__name__} "
                                f"({case}) : renvoyez le modèle, `HookedTransformer(cfg)` avec ses poids chargés.")
        expected = _config_from_state_dict(sd)
        wrong = [f for f in CONFIG_FIELDS if getattr(got.cfg, f) != getattr(expected, f)]
        if wrong:
            field = wrong[0]
            raise ExerciseError(f"{field} = {getattr(got.cfg, field)!r}, attendu {getattr(expected, field)!r} "
                                f"({case}) : {_config_mistake(field, got.cfg, expected)}.")
        loaded = got.state_dict()  # the model's weights; TransformerLens' files also carry buffers (mask, IGNORE)
        if any(not torch.equal(loaded[name].cpu(), sd[name].cpu().to(loaded[name].dtype)) for name in loaded):
            raise ExerciseError(f"Le modèle n'a pas les poids du state dict ({case}) : `HookedTransformer(cfg)` crée "
                                "des poids aléatoires ; chargez-y les vrais avec `model.load_state_dict(state_dict)`.")
        if tokens is not None:
            same = torch.allclose(got(tokens).log_softmax(-1), reference(tokens).log_softmax(-1), atol=1e-4)
            if not same:
                raise ExerciseError(f"Le modèle ne prédit pas comme celui du registre ({case}), bien qu'il ait la "
                                    "même configuration et les mêmes poids : a-t-il été modifié après le chargement ?")

    return _each(check_case, [("les poids du notebook, comparés au modèle du registre", state_dict, tokens),
                              ("un state dict inédit, avec des LayerNorm à poids", unseen, None)])


@_exercise("06.3")
def check_relative_board_state(relative_board_state) -> int:
    """06.3: relative_board_state(board [8 8] in {1 black, -1 white, 0}, player) -> int [64] in {0 1 2}."""
    positions = sorted(_positions(), key=lambda position: -position[1])  # black to move first

    def check_case(board, player):
        got = _call(relative_board_state, ("board", "player"), board, player)
        inverted = "Inversé : « à moi » (1) et « à l'adversaire » (2) sont échangés ; « moi » est le joueur `player`"
        if player == -1 and positions[0][1] == 1:  # black's boards passed: the codes are absolute colours
            inverted = ("Juste quand les noirs jouent, inversé quand ce sont les blancs : ce sont les couleurs "
                        "absolues (1 noir, 2 blanc) ; codez par rapport au joueur `player`")
        _compare(got, _relative(board, player), ("case",), _colour_case(player), relative_board_state.__name__,
                 mistakes=[
            (inverted, lambda: _relative(board, -player)),
            ("Lignes et colonnes échangées : aplatissez le plateau ligne par ligne, `board.reshape(64)`",
             lambda: _relative(board.T, player)),
        ])

    return _each(check_case, positions)


@_exercise("06.4")
def check_occupied_accuracy(occupied_accuracy, pred: torch.Tensor, target: torch.Tensor) -> int:
    """06.4: occupied_accuracy(pred [n 64], target [n 64]) -> scalar, accuracy on the occupied squares."""

    def check_case(case, p, t):
        got = _call(occupied_accuracy, ("pred", "target"), p, t)
        correct = (p == t).float()
        occupied = t > 0
        _compare(got, correct[occupied].mean(), (), case, occupied_accuracy.__name__, mistakes=[
            ("Précision sur toutes les cases, vides comprises : ne gardez que les cases où `target > 0`",
             lambda: correct.mean()),
            ("Précision sur les cases VIDES : les cases occupées sont celles où `target > 0`",
             lambda: correct[~occupied].mean()),
            ("Moyenne sur la mauvaise dimension : vous moyennez d'abord par position puis entre positions ; "
             "prenez la moyenne sur toutes les cases occupées à la fois",
             lambda: torch.stack([c[o].mean() for c, o in zip(correct, occupied, strict=True) if o.any()]).mean()),
            ("Les cases occupées sont lues dans `pred` : c'est la cible qui dit quelles cases sont occupées, "
             "`target > 0`", lambda: correct[p > 0].mean()),
            ("Non normalisé : c'est un nombre de cases bien prédites, pas une fraction",
             lambda: correct[occupied].sum()),
        ], atol=1e-5)

    generator = _rng()
    random_target = torch.randint(0, 3, (40, 64), generator=generator)
    random_target[:20, :40] = 0  # rows with many empty squares: per-row means differ from the global mean
    random_pred = torch.where(torch.rand(40, 64, generator=generator) < 0.7, random_target,
                              torch.randint(0, 3, (40, 64), generator=generator))
    return _each(check_case, [("les prédictions de la sonde du notebook", pred, target),
                              ("prédictions aléatoires", random_pred, random_target)])


@_exercise("06.5")
def check_push_delta(push_delta, resid: torch.Tensor, w_dir: torch.Tensor, b_dir: torch.Tensor,
                     target: torch.Tensor) -> int:
    """06.5: push_delta(resid [n d_model], w_dir [d_model], b_dir, target) -> [n d_model], to add so that the
    probe's gap resid @ w_dir + b_dir becomes target."""

    def check_case(case, r, w, b, t):
        gap = r @ w + b  # [n]
        direction = w / w.norm() ** 2
        expected = (t - gap)[:, None] * direction
        got = _call(push_delta, ("resid", "w_dir", "b_dir", "target"), r, w, b, t)
        _compare(got, expected, ("n", "d_model"), case, push_delta.__name__, mistakes=[
            ("Vous renvoyez le flux résiduel modifié ; la fonction doit renvoyer le seul déplacement à ajouter",
             lambda: r + expected),
            ("Mal normalisé : divisez par `w_dir.norm() ** 2` (le carré), pour que l'écart lu par la sonde "
             "change exactement de `target - e`", lambda: expected * w.norm()),
            ("Non normalisé : divisez par `w_dir.norm() ** 2`", lambda: expected * w.norm() ** 2),
            ("Le biais est oublié : l'écart lu par la sonde est `resid @ w_dir + b_dir`",
             lambda: (t - r @ w)[:, None] * direction),
            ("L'écart est renversé (−2e) au lieu d'être amené à `target` : le déplacement est `(target − e)`",
             lambda: -2 * gap[:, None] * direction),
            ("L'écart est augmenté de `target` au lieu de valoir `target` : le déplacement est `(target − e)`",
             lambda: t * direction.expand_as(r)),
        ], atol=1e-4)

    generator = _rng()
    return _each(check_case, [("le flux résiduel du notebook", resid, w_dir, b_dir, torch.as_tensor(target)),
                              ("vecteurs aléatoires", torch.randn(4, 16, generator=generator),
                               torch.randn(16, generator=generator), torch.tensor(0.7), torch.tensor(-2.5))])


# ---------------------------------------------------------------------------------------------------
# 07 — patching avancé
# ---------------------------------------------------------------------------------------------------


@_exercise("07.1")
def check_attribution_estimate(attribution_estimate, clean: torch.Tensor, corrupted: torch.Tensor,
                               grad: torch.Tensor) -> int:
    """07.1: attribution_estimate(clean, corrupted, grad [layer batch pos d_model]) -> [layer pos]."""

    def check_case(case, c, a, g):
        got = _call(attribution_estimate, ("clean", "corrupted", "grad"), c, a, g)
        _compare(got, ((c - a) * g).sum((1, 3)), ("layer", "pos"), case, attribution_estimate.__name__, mistakes=[
            ("Seule l'activation propre est multipliée par le gradient : le patch DÉPLACE l'activation de sa "
             "valeur corrompue à sa valeur propre, multipliez `(clean - corrupted)` par `grad`",
             lambda: (c * g).sum((1, 3))),
            ("Moyenne sur d_model au lieu de somme : le produit scalaire avec le gradient est une somme",
             lambda: ((c - a) * g).mean(3).sum(1)),
            ("Moyenne sur le lot au lieu de somme : la métrique est déjà une moyenne sur le lot, son gradient "
             "porte le 1/batch ; sommez sur le lot", lambda: ((c - a) * g).sum(3).mean(1)),
        ], atol=1e-4, rtol=1e-3)

    return _each(check_case, [("les activations du notebook", clean, corrupted, grad),
                              ("piles aléatoires", *torch.randn(3, 3, 2, 5, 8, generator=_rng()).unbind(0))])


@_exercise("07.2")
def check_map_correlation(map_correlation, exact: torch.Tensor, approx: torch.Tensor) -> int:
    """07.2: map_correlation(a, b) -> scalar, the Pearson correlation between all entries of two maps."""
    inconsistent = ("Dénominateurs incohérents : la covariance et les écarts-types doivent diviser par le même "
                    "nombre (n ou n - 1 ; `torch.std` divise par n - 1)")
    covariance = "Non normalisé : c'est la covariance ; divisez par le produit des deux écarts-types"

    def check_case(case, a, b):
        got = _call(map_correlation, ("a", "b"), a, b)
        u, v = a.flatten().double(), b.flatten().double()
        du, dv = u - u.mean(), v - v.mean()
        _compare(got, (du @ dv / (du.norm() * dv.norm())).float(), (), case, map_correlation.__name__, mistakes=[
            ("Non centré : c'est la similarité cosinus ; retirez d'abord à chaque carte sa moyenne",
             lambda: u @ v / (u.norm() * v.norm())),
            (covariance, lambda: du @ dv / len(du)),
            (covariance, lambda: du @ dv / (len(du) - 1)),
            (inconsistent, lambda: du @ dv / len(du) / (du.std() * dv.std())),
            (inconsistent, lambda: du @ dv / (len(du) - 1) / (du.std(correction=0) * dv.std(correction=0))),
            ("Corrélations calculées couche par couche puis moyennées : aplatissez les cartes entières "
             "(`.flatten()`) et calculez une seule corrélation",
             lambda: torch.stack([torch.corrcoef(torch.stack([r.flatten(), s.flatten()]))[0, 1]
                                  for r, s in zip(a, b, strict=True)]).mean()),
        ], atol=1e-4)

    generator = _rng()
    x = torch.randn(4, 6, generator=generator) + 1.5
    y = 0.5 * x + torch.randn(4, 6, generator=generator) + 2.0
    z = torch.randn(3, 5, 2, generator=generator)
    return _each(check_case, [("les cartes du notebook", exact, approx), ("cartes aléatoires [layer, pos]", x, y),
                              ("cartes aléatoires à trois axes", z, z ** 2 - z)])


@_exercise("07.3")
def check_interpolate_activation(interpolate_activation, corrupted: torch.Tensor, clean: torch.Tensor) -> int:
    """07.3: interpolate_activation(corrupted, clean, alpha) -> corrupted + alpha (clean - corrupted), same shape."""

    def check_case(case, a, c, alpha):
        got = _call(interpolate_activation, ("corrupted", "clean", "alpha"), a, c, alpha)
        _compare(got, a + alpha * (c - a), ("batch", "pos", "d_model"), case, interpolate_activation.__name__,
                 mistakes=[
                     ("α est pris du mauvais côté : α = 0 doit rendre l'activation corrompue et α = 1 la propre",
                      lambda: c + alpha * (a - c)),
                     ("Vous renvoyez le seul déplacement `α (propre − corrompue)` : ajoutez-le à l'activation "
                      "corrompue", lambda: alpha * (c - a)),
                     ("Signe inversé : le déplacement va de la corrompue vers la propre, `clean - corrupted`",
                      lambda: a + alpha * (a - c)),
                 ], atol=1e-5)

    generator = _rng()
    x, y = torch.randn(2, 3, 4, generator=generator), torch.randn(2, 3, 4, generator=generator)
    return _each(check_case, [("les activations du notebook, α = 0,3", corrupted, clean, 0.3),
                              ("α = 0 (le run corrompu)", x, y, 0.0), ("α = 1 (le patch complet)", x, y, 1.0),
                              ("α = 0,25", x, y, 0.25)])


# ---------------------------------------------------------------------------------------------------
# 09 — au-delà de GPT-2
# ---------------------------------------------------------------------------------------------------


def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float, dim: int = -1) -> torch.Tensor:
    return x / (x.pow(2).mean(dim, keepdim=True) + eps).sqrt() * w


@_exercise("09.1")
def check_rms_norm(rms_norm, x: torch.Tensor, w: torch.Tensor, eps: float) -> int:
    """09.1: rms_norm(x [batch pos d_model], w [d_model], eps) -> [batch pos d_model]."""

    def check_case(case, x, w, eps):
        got = _call(rms_norm, ("x", "w", "eps"), x, w, eps)
        centred = x - x.mean(-1, keepdim=True)
        _compare(got, _rms_norm(x, w, eps), ("batch", "pos", "d_model"), case, rms_norm.__name__, mistakes=[
            ("Vous centrez x : c'est une LayerNorm. Une RMSNorm ne retire pas la moyenne, elle divise seulement "
             "par la moyenne quadratique", lambda: _rms_norm(centred, w, eps)),
            ("ε est hors de la racine : `sqrt(mean(x²) + eps)`, pas `sqrt(mean(x²)) + eps`",
             lambda: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w),
            ("Le poids `w` est oublié : multipliez le résultat normalisé par `w`", lambda: _rms_norm(x, 1.0, eps)),
            ("Divisé par la racine de la SOMME des carrés (la norme) : prenez leur MOYENNE sur d_model",
             lambda: x / (x.pow(2).sum(-1, keepdim=True) + eps).sqrt() * w),
            ("Moyenne sur la mauvaise dimension : la moyenne des carrés se prend sur d_model (`dim=-1`)",
             lambda: _rms_norm(x, w, eps, dim=-2)),
        ], atol=1e-5)

    generator = _rng()
    small = torch.randn(2, 3, 8, generator=generator) * 0.3
    return _each(check_case, [("le flux résiduel du notebook", x, w, eps),
                              ("entrée aléatoire, ε = 0,5", small, torch.rand(8, generator=generator) + 0.5, 0.5),
                              ("entrée décentrée, ε = 1e-6", small + 2.0, torch.randn(8, generator=generator), 1e-6)])


@_exercise("09.2")
def check_keys_per_query_head(keys_per_query_head, k: torch.Tensor, n_heads: int) -> int:
    """09.2: keys_per_query_head(k [batch pos n_kv d_head], n_heads) -> [batch pos n_heads d_head]."""

    def check_case(case, k, n_heads):
        got = _call(keys_per_query_head, ("k", "n_heads"), k, n_heads)
        group = n_heads // k.shape[2]
        _compare(got, k.repeat_interleave(group, dim=2), ("batch", "pos", "head", "d_head"), case,
                 keys_per_query_head.__name__, mistakes=[
            ("Têtes réparties en alternance (`repeat`, ou `expand` puis `reshape` dans le mauvais ordre) : les "
             f"{group} têtes de requête CONSÉCUTIVES partagent une tête clé/valeur, la tête h lit la tête "
             "h // (n_heads // n_kv) ; utilisez `repeat_interleave`", lambda: k.repeat(1, 1, group, 1)),
        ])

    generator = _rng()
    return _each(check_case, [("les clés du notebook", k, n_heads),
                              ("6 têtes, 2 têtes clé/valeur", torch.randn(2, 3, 2, 4, generator=generator), 6),
                              ("une seule tête clé/valeur (MQA)", torch.randn(1, 3, 1, 4, generator=generator), 4),
                              ("autant de têtes clé/valeur que de têtes", torch.randn(1, 2, 3, 4, generator=generator),
                               3)])


def _rotary(x: torch.Tensor, base: float, first: int = 0, exponent: float = 2.0, sign: float = 1.0,
            adjacent: bool = False) -> torch.Tensor:
    """x [batch pos head d_head] rotated by positions first, first + 1, ... (Llama's layout unless adjacent)."""
    d = x.shape[-1]
    freqs = base ** (-exponent * torch.arange(d // 2, dtype=torch.float64) / d)
    angles = (torch.arange(x.shape[1], dtype=torch.float64) + first)[:, None] * freqs  # [pos d/2]
    cos, sin = angles.cos()[:, None].to(x.dtype), sign * angles.sin()[:, None].to(x.dtype)  # [pos 1 d/2]
    if adjacent:
        x1, x2 = x[..., ::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
    x1, x2 = x[..., :d // 2], x[..., d // 2:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


@_exercise("09.3")
def check_rotate_by_position(rotate_by_position, q: torch.Tensor, rotated: torch.Tensor, base: float) -> int:
    """09.3: rotate_by_position(x [batch pos head d_head], base) -> [batch pos head d_head], position p rotated by p.

    q and rotated: a hook_q of the notebook and the model's hook_rot_q, the reference of the first case."""

    def check_case(case, x, expected, base):
        got = _call(rotate_by_position, ("x", "base"), x, base)
        _compare(got, expected, ("batch", "pos", "head", "d_head"), case, rotate_by_position.__name__, mistakes=[
            ("Paires adjacentes (2i, 2i + 1) : c'est la disposition de GPT-J. Llama, Qwen et le modèle du cours "
             "font tourner ensemble la dimension i et la dimension i + d_head / 2", lambda: _rotary(x, base,
                                                                                                  adjacent=True)),
            ("Rotation dans le mauvais sens (le signe de sin est inversé) : la première moitié devient "
             "x1 cos − x2 sin, la seconde x2 cos + x1 sin", lambda: _rotary(x, base, sign=-1.0)),
            ("Décalé d'une position : la première position est 0 (elle ne tourne pas)",
             lambda: _rotary(x, base, first=1)),
            ("Fréquences fausses : θ_i = base^(−2i / d_head) pour i = 0 … d_head / 2 − 1 (l'exposant porte 2i)",
             lambda: _rotary(x, base, exponent=1.0)),
        ], atol=1e-4, rtol=1e-3)

    generator = _rng()
    x = torch.randn(2, 12, 3, 8, generator=generator)
    return _each(check_case, [("les requêtes du notebook", q, rotated, base),
                              ("entrée aléatoire, base 10 000", x, _rotary(x, 10_000.0), 10_000.0),
                              ("entrée aléatoire, base 100", x, _rotary(x, 100.0), 100.0)])
