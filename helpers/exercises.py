"""Checks of the course's exercises: one function per exercise, with a diagnosis in French.

Each ``check_*`` runs the learner's function on the notebook's data and on inputs the learner has not
seen (small random tensors with a fixed seed, other prompts), compares it with a reference, and raises
``ExerciseError`` with what looks wrong: wrong shape (with the dimension names), a result shifted by one
position, a flipped sign, swapped axes, a mean over the wrong dimension, an unnormalised result, an
input modified in place, NaN, or an unfilled stub. Otherwise it names the largest difference and where.
On success it prints one short line.
"""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import torch

from helpers import utils
from helpers.activation_cache import ActivationCache
from helpers.factored_matrix import FactoredMatrix
from helpers.hook_points import HookPoint
from helpers.othello import OthelloBoard, batch_board_states, generate_games, square_label
from helpers.patching import activation_patching


class ExerciseError(AssertionError):
    """The learner's function gives a wrong result; the message says what looks wrong."""


# ---------------------------------------------------------------------------------------------------
# Running the learner's function and comparing its result
# ---------------------------------------------------------------------------------------------------


def _run(fn, *args, **kwargs):
    """Call fn; an unfilled stub becomes a message that asks to fill it in."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise ExerciseError(
            f"`{fn.__name__}` n'est pas encore écrite : complétez la fonction "
            "(remplacez la ligne `raise NotImplementedError` par votre code), exécutez sa cellule, puis relancez "
            "la vérification."
        ) from None


def _run_pure(fn, names: tuple[str, ...], *args):
    """Call fn(*args) and complain if it modified one of its tensor arguments in place."""
    before = [a.clone() if isinstance(a, torch.Tensor) else None for a in args]
    out = _run(fn, *args)
    for name, old, new in zip(names, before, args, strict=True):
        if old is not None and not torch.equal(old, new):
            raise ExerciseError(
                f"`{fn.__name__}` a modifié son argument `{name}` en place : le notebook s'en sert encore "
                "ensuite. Travaillez sur une copie (`.clone()`) ou avec des opérations qui créent un nouveau "
                "tenseur (pas de `x[...] = ...`, `+=` ni méthode en `_` sur l'entrée)."
            )
    return out


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


def _compare(got, expected: torch.Tensor, dims: tuple[str, ...], case: str, fn_name: str,
             mistakes=(), atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Raise ExerciseError with a diagnosis unless got matches expected.

    dims: the name of each dimension of expected (used in messages).
    mistakes: (message, thunk) pairs; thunk() computes what a typical mistake would return.
    """
    expected = expected.detach().cpu()
    got = _as_tensor(got, fn_name)
    where = f" ({case})"
    if got.is_complex() and not expected.is_complex():
        raise ExerciseError(f"`{fn_name}` renvoie des nombres complexes{where} : prenez la partie réelle (`.real`).")
    if got.dtype == torch.bool or expected.dtype == torch.bool or not expected.is_floating_point():
        got_cmp = got.to(expected.dtype) if got.shape == expected.shape else got
        if got.shape == expected.shape and torch.equal(got_cmp, expected):
            return
    elif _close(got, expected, atol, rtol):
        return
    for message, thunk in mistakes:
        candidate = torch.as_tensor(thunk()).detach().cpu()
        if candidate.shape == got.shape and not torch.equal(candidate.double(), expected.double()) and \
                _close(got.double(), candidate.double(), atol, rtol):
            raise ExerciseError(f"{message}{where}.")
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
        f"est en {_where(index, dims)} : obtenu {got[index].item():.4g}, attendu {expected[index].item():.4g}."
    )


def _passed(exercise: str, n_cases: int) -> None:
    print(f"Exercice {exercise} : réussi ({n_cases} cas vérifiés, dont des entrées inédites).")


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


def _run_hook(fn, z: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """What a hook writes: its return value, or its (in-place modified) input if it returns None."""
    z = z.clone()
    out = _run(fn, z, *args, **kwargs)
    return z if out is None else out


# ---------------------------------------------------------------------------------------------------
# 01 — chargement et cache
# ---------------------------------------------------------------------------------------------------


def check_next_token_distribution(next_token_distribution, model, prompt: str) -> None:
    """01.1: next_token_distribution(model, prompt) -> [d_vocab], the distribution of the token after the prompt."""
    prompts = [prompt, "When Kate and Paul went to the park, Paul gave a ball to", "The little fox ran"]
    for i, text in enumerate(prompts):
        case = "le prompt du notebook" if i == 0 else f"prompt inédit {text!r}"
        logits = model(text)[0]  # [pos d_vocab]
        got = _run(next_token_distribution, model, text)
        _compare(got, logits[-1].softmax(-1), ("d_vocab",), case, next_token_distribution.__name__, mistakes=[
            ("Ce sont des logits, pas des probabilités : appliquez `softmax(dim=-1)`", lambda lg=logits: lg[-1]),
            ("Ce sont des log-probabilités : utilisez `softmax`, pas `log_softmax`",
             lambda lg=logits: lg[-1].log_softmax(-1)),
            ("Décalé d'une position : la distribution du token suivant se lit à la DERNIÈRE position (`[0, -1]`)",
             lambda lg=logits: lg[-2].softmax(-1)),
            ("Softmax pris sur la mauvaise dimension (les positions) : normalisez sur le vocabulaire, `dim=-1`",
             lambda lg=logits: lg.softmax(0)[-1]),
            ("Calculé sans le token BOS : appelez le modèle avec ses réglages par défaut",
             lambda t=text: model(t, prepend_bos=False)[0, -1].softmax(-1)),
        ], atol=1e-5)
    _passed("01.1", len(prompts))


def check_token_positions(token_positions, model) -> None:
    """01.3: token_positions(model, prompt, token, prepend_bos) -> int64 [n_occurrences]."""
    cases = [("The cat sat on the mat. The mat sat on the cat.", " cat"),
             ("John and Mary went to the shops, then John gave a bag to Mary", " John"),
             ("Once upon a time a fox met a fox", " fox")]
    n = 0
    for text, token in cases:
        for prepend_bos in (True, False):
            tokens = model.to_tokens(text, prepend_bos=prepend_bos)[0]
            expected = (tokens == model.to_single_token(token)).nonzero().flatten()
            got = _run(token_positions, model, text, token, prepend_bos)
            case = f"{token!r} dans {text!r}, prepend_bos={prepend_bos}"
            _compare(got, expected, ("occurrence",), case, token_positions.__name__, mistakes=[
                ("Décalé d'une position vers la droite : le BOS est compté deux fois (il est déjà dans "
                 "`to_tokens` quand prepend_bos=True)", lambda e=expected: e + 1),
                ("Décalé d'une position vers la gauche : le BOS est oublié (les positions comptent le token "
                 "de début quand prepend_bos=True)", lambda e=expected: e - 1),
                ("Seule la première occurrence est renvoyée : il faut toutes les positions",
                 lambda e=expected: e[:1]),
            ])
            n += 1
    _passed("01.3", n)


def check_top1_accuracy(top1_accuracy, logits: torch.Tensor, tokens: torch.Tensor) -> None:
    """01.2: top1_accuracy(logits [batch pos d_vocab], tokens [batch pos]) -> [batch]."""
    generator = torch.Generator().manual_seed(0)
    random_tokens = torch.randint(0, 20, (3, 12), generator=generator)
    random_logits = torch.randn(3, 12, 20, generator=generator)
    # make about half of the next tokens the argmax, so that a shifted comparison gives another answer
    boost = torch.rand(3, 11, generator=generator) < 0.5
    random_logits[:, :-1].scatter_add_(-1, random_tokens[:, 1:, None], 10.0 * boost[..., None].float())
    cases = [("les logits du notebook", logits, tokens), ("logits et tokens aléatoires", random_logits, random_tokens)]
    for case, lg, tk in cases:
        got = _run_pure(top1_accuracy, ("logits", "tokens"), lg, tk)
        correct = lg[:, :-1].argmax(-1) == tk[:, 1:]
        _compare(got, correct.float().mean(-1), ("batch",), case, top1_accuracy.__name__, mistakes=[
            ("Décalé d'une position : la prédiction faite à la position p porte sur le token p + 1 ; "
             "comparez `logits[:, :-1].argmax(-1)` à `tokens[:, 1:]`",
             lambda lg=lg, tk=tk: (lg.argmax(-1) == tk).float().mean(-1)),
            ("Décalé d'une position : comparez `logits[:, :-1]` (et non `logits[:, 1:]`) à `tokens[:, 1:]`",
             lambda lg=lg, tk=tk: (lg[:, 1:].argmax(-1) == tk[:, 1:]).float().mean(-1)),
            ("Non normalisé : c'est un nombre de tokens bien prédits, pas une fraction",
             lambda c=correct: c.float().sum(-1)),
        ])
    _passed("01.2", len(cases))


# ---------------------------------------------------------------------------------------------------
# 02 — hooks et ablation
# ---------------------------------------------------------------------------------------------------


def _mean_ablate(z: torch.Tensor, head: int) -> torch.Tensor:
    z = z.clone()
    z[:, :, head] = z[:, :, head].mean(dim=(0, 1))
    return z


def _mean_over_wrong_axis(z: torch.Tensor, head: int) -> torch.Tensor:
    """The mean ablation done on the position axis instead of the head axis."""
    z = z.clone()
    z[:, head] = z[:, head].mean(0)
    return z


def check_mean_ablation_hook(mean_ablation_hook, model, tokens: torch.Tensor) -> None:
    """02.1: mean_ablation_hook(z [batch pos head d_head], hook, head) -> z with that head's z averaged."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(3, 5, 4, 6, generator=generator)
    hook = _fake_hook("blocks.0.attn.hook_z")
    dims = ("batch", "pos", "head", "d_head")
    n = 0
    for head in (1, 3):
        got = _run_hook(mean_ablation_hook, z, hook, head)

        def replaced(value, head=head):
            out = z.clone()
            out[:, :, head] = value
            return out

        _compare(got, _mean_ablate(z, head), dims, f"z aléatoire, tête {head}", mean_ablation_hook.__name__, mistakes=[
            ("Le hook ne change rien : il doit écrire la moyenne dans `z[:, :, head]` et renvoyer z", lambda: z),
            ("La tête est mise à zéro : c'est l'ablation par zéro ; remplacez-la par sa moyenne",
             lambda: replaced(0.0)),
            ("Moyenne prise sur les seules positions : il faut aussi moyenner sur le lot, `dim=(0, 1)`",
             lambda h=head: replaced(z[:, :, h].mean(1, keepdim=True))),
            ("Moyenne prise sur la mauvaise dimension (d_head) : moyennez sur le lot et les positions",
             lambda h=head: replaced(z[:, :, h].mean(-1, keepdim=True))),
            ("Mauvais axe : l'indice de tête est le troisième axe de z, `z[:, :, head]`",
             lambda head=head: _mean_over_wrong_axis(z, head)),
        ])
        n += 1
    name = utils.get_act_name("z", 0)
    expected = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(name, lambda z, hook: _mean_ablate(z, 1))])
    got = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(name, partial(mean_ablation_hook, head=1))])
    _compare(got, expected, (), "perte du modèle avec L0H1 ablatée", mean_ablation_hook.__name__)
    _passed("02.1", n + 1)


def _offset_score(pattern: torch.Tensor, offset: int) -> torch.Tensor:
    return pattern.diagonal(offset=-offset, dim1=-2, dim2=-1).mean(-1)


def check_offset_attention_score(offset_attention_score, pattern: torch.Tensor) -> None:
    """02.3: offset_attention_score(pattern [head dest src], offset) -> [head]."""
    generator = torch.Generator().manual_seed(0)
    cases = [("le motif du notebook", pattern, 1), ("le motif du notebook", pattern, 3),
             ("motif aléatoire", _random_patterns(generator, None, 3, 9), 2)]
    for case, p, offset in cases:
        got = _run_pure(offset_attention_score, ("pattern", "offset"), p, offset)
        _compare(got, _offset_score(p, offset), ("head",), f"{case}, offset={offset}",
                 offset_attention_score.__name__, mistakes=[
            ("Diagonale au-dessus de la diagonale principale : la source y est APRÈS la destination "
             "(axes dest / src échangés ?) ; prenez `diagonal(offset=-offset)`", lambda p=p, o=offset: _offset_score(
                p.transpose(-1, -2), o)),
            ("Décalé d'une position : vous lisez la source `offset - 1` positions en arrière",
             lambda p=p, o=offset: _offset_score(p, o - 1)),
            ("Décalé d'une position : vous lisez la source `offset + 1` positions en arrière",
             lambda p=p, o=offset: _offset_score(p, o + 1)),
            ("Somme au lieu de moyenne : divisez par le nombre de destinations",
             lambda p=p, o=offset: p.diagonal(offset=-o, dim1=-2, dim2=-1).sum(-1)),
        ])
    _passed("02.3", len(cases))


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


def check_zero_ablation_map(zero_ablation_map, model, tokens: torch.Tensor) -> None:
    """02.2: zero_ablation_map(model, tokens) -> [layer head], loss increase when each head is zeroed."""
    cases = [("le texte du notebook", tokens),
             ("un texte inédit", model.to_tokens("Every morning the old farmer walked to the river with his dog."))]
    for case, tk in cases:
        expected = _zero_ablation_map(model, tk)
        got = _run_pure(zero_ablation_map, ("model", "tokens"), model, tk)
        _compare(got, expected, ("layer", "head"), case, zero_ablation_map.__name__, mistakes=[
            ("Ce sont les pertes ablatées, pas leur hausse : soustrayez la perte sans intervention",
             lambda e=expected, tk=tk: e + model(tk, return_type="loss")),
        ], atol=1e-4)
    _passed("02.2", len(cases))


# ---------------------------------------------------------------------------------------------------
# 03 — IOI et patching
# ---------------------------------------------------------------------------------------------------


def check_two_name_prob(two_name_prob, logits: torch.Tensor, answer_tokens: torch.Tensor) -> None:
    """03.1: two_name_prob(logits [batch pos d_vocab], answer_tokens [batch 2]) -> [batch]."""
    generator = torch.Generator().manual_seed(0)
    random_logits = torch.randn(5, 7, 30, generator=generator) * 3
    random_answers = torch.stack([torch.randperm(30, generator=generator)[:2] for _ in range(5)])
    cases = [("les logits propres du notebook", logits, answer_tokens), ("logits aléatoires", random_logits,
                                                                          random_answers)]
    for case, lg, ans in cases:
        got = _run_pure(two_name_prob, ("logits", "answer_tokens"), lg, ans)
        pair = lg[:, -1].gather(-1, ans)  # [batch 2]
        _compare(got, pair.softmax(-1)[:, 0], ("batch",), case, two_name_prob.__name__, mistakes=[
            ("Inversé : c'est la probabilité du MAUVAIS nom (colonne 1) ; la bonne réponse est la colonne 0",
             lambda p=pair: p.softmax(-1)[:, 1]),
            ("Non normalisé sur les deux noms : le softmax est pris sur tout le vocabulaire ; ne gardez que les "
             "deux logits, puis softmax", lambda lg=lg, ans=ans: lg[:, -1].softmax(-1).gather(-1, ans)[:, 0]),
            ("Décalé d'une position : la réponse se lit à la dernière position, `logits[:, -1]`",
             lambda lg=lg, ans=ans: lg[:, -2].gather(-1, ans).softmax(-1)[:, 0]),
            ("Ce sont des différences de logits : transformez-les en probabilité (softmax sur les deux noms, "
             "ou sigmoïde de la différence)", lambda p=pair: p[:, 0] - p[:, 1]),
        ], atol=1e-5)
    _passed("03.1", len(cases))


def _patch_head_position(z, head, position, clean):
    z = z.clone()
    z[:, position, head] = clean[:, position, head]
    return z


def check_patch_head_position(patch_head_position, clean_cache) -> None:
    """03.3: patch_head_position(z, hook, head, position, clean_cache) -> z, clean z of one head at one position."""
    generator = torch.Generator().manual_seed(0)
    name = utils.get_act_name("z", 1)
    corrupted, clean = torch.randn(2, 2, 6, 4, 5, generator=generator)
    fake_cache = {name: clean}
    real_name = utils.get_act_name("z", 0)
    real_clean = clean_cache[real_name]
    real_corrupted = torch.randn(real_clean.shape, generator=generator)
    cases = [("z aléatoire", corrupted, clean, fake_cache, name, 2, 3),
             ("z aléatoire", corrupted, clean, fake_cache, name, 0, -1),
             ("z propre du notebook", real_corrupted, real_clean, clean_cache, real_name, 1, 4)]
    for case, z, cl, cache, hook_name, head, position in cases:
        got = _run_hook(patch_head_position, z, _fake_hook(hook_name), head, position, cache)
        n_pos = z.shape[1]
        _compare(got, _patch_head_position(z, head, position, cl), ("batch", "pos", "head", "d_head"),
                 f"{case}, tête {head}, position {position}", patch_head_position.__name__, mistakes=[
            ("Le hook ne change rien : écrivez la valeur propre dans `z[:, position, head]` et renvoyez z",
             lambda z=z: z),
            ("Toutes les positions sont patchées : ne remplacez que `position`",
             lambda z=z, cl=cl, h=head: _patch_head_position(z, h, slice(None), cl)),
            ("Toutes les têtes sont patchées : ne remplacez que `head`",
             lambda z=z, cl=cl, p=position: _patch_head_position(z, slice(None), p, cl)),
            ("Décalé d'une position : vous patchez `position + 1`",
             lambda z=z, cl=cl, h=head, p=position, n=n_pos: _patch_head_position(z, h, (p + 1) % n, cl)),
            ("Décalé d'une position : vous patchez `position - 1`",
             lambda z=z, cl=cl, h=head, p=position, n=n_pos: _patch_head_position(z, h, (p - 1) % n, cl)),
        ])
    _passed("03.3", len(cases))


def check_normalised_score(normalised_score) -> None:
    """03.2: normalised_score(patched, clean, corrupted) -> same shape as patched; 0 = corrupted, 1 = clean."""
    generator = torch.Generator().manual_seed(0)
    patched = torch.randn(3, 4, generator=generator)
    cases = [(patched, 2.5, -1.0), (torch.tensor([7.2, 0.0, -7.2]), 7.2, -7.2), (patched[0], -0.5, 1.5)]
    for patched_diff, clean, corrupted in cases:
        expected = (patched_diff - corrupted) / (clean - corrupted)
        got = _run_pure(normalised_score, ("patched", "clean", "corrupted"), patched_diff, clean, corrupted)
        dims = ("layer", "pos")[: patched_diff.ndim]
        _compare(got, expected, dims, f"propre = {clean}, corrompu = {corrupted}", normalised_score.__name__,
                 mistakes=[
            ("Inversé : 1 doit correspondre au comportement propre et 0 au corrompu (c'est 1 − score)",
             lambda e=expected: 1 - e),
            ("Le numérateur ne retire pas la valeur corrompue : `(patched - corrupted) / (clean - corrupted)`",
             lambda p=patched_diff, c=clean, k=corrupted: p / (c - k)),
            ("Non normalisé : divisez par `clean - corrupted`", lambda p=patched_diff, k=corrupted: p - k),
        ])
    _passed("03.2", len(cases))


def check_patch_attn_out_by_position(patch_attn_out_by_position, model, corrupted_tokens, clean_cache,
                                     metric) -> None:
    """03.4: patch_attn_out_by_position(model, corrupted_tokens, clean_cache, metric, layer) -> [pos]."""

    def raw_logit_diff(logits):  # unseen metric: the first prompt's top logit minus the mean
        last = logits[0, -1]
        return last.max() - last.mean()

    # the unseen case: the first two prompts only (a quarter of the cost), another layer and another metric
    two_prompts = ActivationCache({name: act[:2] for name, act in clean_cache.items()}, model)
    cases = [("la métrique du notebook, couche 0", metric, 0, corrupted_tokens, clean_cache),
             ("deux prompts, une autre métrique, couche 1", raw_logit_diff, 1, corrupted_tokens[:2], two_prompts)]
    for case, fn, layer, tokens, cache in cases:
        def patching_map(kind, fn=fn, layer=layer, tokens=tokens, cache=cache):  # both metrics read logits[:, -1]
            return activation_patching(model, tokens, cache, fn, kind=kind, logit_positions=-1).values[layer]

        got = _run(patch_attn_out_by_position, model, tokens, cache, fn, layer)
        _compare(got, patching_map("attn_out"), ("pos",), case, patch_attn_out_by_position.__name__, mistakes=[
            ("C'est la carte de `resid_pre` : patchez `hook_attn_out` (`utils.get_act_name('attn_out', layer)`)",
             lambda: patching_map("resid_pre")),
            ("C'est la carte de `mlp_out` : patchez `hook_attn_out`", lambda: patching_map("mlp_out")),
        ], atol=1e-3)
    _passed("03.4", len(cases))


# ---------------------------------------------------------------------------------------------------
# 04 — têtes d'induction
# ---------------------------------------------------------------------------------------------------


def _stripe(pattern: torch.Tensor, offset: int) -> torch.Tensor:
    return pattern.diagonal(offset=offset, dim1=-2, dim2=-1).mean(dim=(0, -1))


def check_induction_stripe_score(induction_stripe_score, model, tokens: torch.Tensor, seq_len: int) -> None:
    """04.2: induction_stripe_score(pattern [batch head dest src], seq_len) -> [head]."""
    generator = torch.Generator().manual_seed(0)
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    cases = [(f"le motif de la couche {layer} du notebook", cache["pattern", layer], seq_len)
             for layer in range(model.cfg.n_layers)]
    cases += [
             ("motif aléatoire", _random_patterns(generator, 2, 3, 2 * 7 + 1), 7)]
    for case, p, n in cases:
        got = _run_pure(induction_stripe_score, ("pattern", "seq_len"), p, n)
        _compare(got, _stripe(p, 1 - n), ("head",), f"{case}, seq_len={n}", induction_stripe_score.__name__, mistakes=[
            ("Décalé d'une position : vous lisez le token répété lui-même (`offset=-seq_len`, une tête de "
             "« token dupliqué ») ; la tête d'induction regarde le token qui le SUIT, `offset=1 - seq_len`",
             lambda p=p, n=n: _stripe(p, -n)),
            ("Décalé d'une position : `offset=2 - seq_len` ; la bande est à `1 - seq_len`",
             lambda p=p, n=n: _stripe(p, 2 - n)),
            ("Bande au-dessus de la diagonale (source après la destination) : axes dest / src échangés, ou "
             "offset de signe inversé ; prenez `offset=1 - seq_len`", lambda p=p, n=n: _stripe(p, n - 1)),
            ("Moyenne sur la mauvaise dimension : le score moyenne le lot et les destinations, pas les têtes",
             lambda p=p, n=n: p.diagonal(offset=1 - n, dim1=-2, dim2=-1).mean(dim=(0, 1))),
        ])
    _passed("04.2", len(cases))


def _heads_above(scores: torch.Tensor, threshold: float) -> list[tuple[int, int]]:
    flat = scores.flatten()
    order = flat.argsort(descending=True)
    return [divmod(int(i), scores.shape[1]) for i in order if flat[i] > threshold]


def check_heads_above(heads_above, scores: torch.Tensor) -> None:
    """04.3: heads_above(scores [layer head], threshold) -> list of (layer, head), best first."""
    generator = torch.Generator().manual_seed(0)
    cases = [(scores, 0.5), (scores, 0.0), (torch.rand(3, 5, generator=generator), 0.4)]
    for s, threshold in cases:
        expected = _heads_above(s, threshold)
        got = _run_pure(heads_above, ("scores", "threshold"), s, threshold)
        case = f"scores de forme {tuple(s.shape)}, seuil {threshold}"
        try:
            got = [(int(layer), int(head)) for layer, head in got]
        except (TypeError, ValueError):
            raise ExerciseError(f"`{heads_above.__name__}` doit renvoyer une liste de couples (couche, tête) "
                                f"({case}) ; obtenu {got!r:.80}") from None
        if got == expected:
            continue
        if got == [(h, la) for la, h in expected]:
            raise ExerciseError(f"Axes échangés ({case}) : vos couples sont (tête, couche) ; la couche vient d'abord.")
        if sorted(got) == sorted(expected):
            raise ExerciseError(f"Les bonnes têtes, mais pas dans le bon ordre ({case}) : triez par score décroissant.")
        if got == [divmod(la * s.shape[1] + h, s.shape[0]) for la, h in expected]:
            raise ExerciseError(f"Mauvaise conversion de l'indice aplati ({case}) : couche = i // n_heads, "
                                "tête = i % n_heads (n_heads = scores.shape[1]).")
        missing = [pair for pair in expected if pair not in got]
        extra = [pair for pair in got if pair not in expected]
        raise ExerciseError(f"Résultat inexact ({case}) : têtes manquantes {missing}, têtes en trop {extra} "
                            "(seules les têtes de score strictement supérieur au seuil comptent).")
    _passed("04.3", len(cases))


def check_per_token_loss(per_token_loss, model, tokens: torch.Tensor) -> None:
    """04.1: per_token_loss(logits [batch pos d_vocab], tokens [batch pos]) -> [batch pos-1]."""
    generator = torch.Generator().manual_seed(0)
    cases = [("les tokens répétés du notebook", model(tokens), tokens),
             ("logits aléatoires", torch.randn(2, 9, 13, generator=generator), torch.randint(0, 13, (2, 9),
                                                                                           generator=generator))]
    for case, lg, tk in cases:
        got = _run_pure(per_token_loss, ("logits", "tokens"), lg, tk)
        log_probs = lg.log_softmax(-1)
        expected = -log_probs[:, :-1].gather(-1, tk[:, 1:, None])[..., 0]
        _compare(got, expected, ("batch", "pos"), case, per_token_loss.__name__, mistakes=[
            ("Décalé d'une position : la position p prédit le token p + 1 ; comparez `logits[:, :-1]` à "
             "`tokens[:, 1:]`", lambda lp=log_probs, tk=tk: -lp[:, :-1].gather(-1, tk[:, :-1, None])[..., 0]),
            ("Décalé d'une position : comparez `logits[:, :-1]` (et non `logits[:, 1:]`) à `tokens[:, 1:]`",
             lambda lp=log_probs, tk=tk: -lp[:, 1:].gather(-1, tk[:, 1:, None])[..., 0]),
            ("Non décalé : la position p prédit le token p + 1 ; comparez `logits[:, :-1]` à `tokens[:, 1:]`",
             lambda lp=log_probs, tk=tk: -lp.gather(-1, tk[..., None])[..., 0]),
            ("Non normalisé : prenez `log_softmax` des logits avant de lire celui du bon token",
             lambda lg=lg, tk=tk: -lg[:, :-1].gather(-1, tk[:, 1:, None])[..., 0]),
        ], atol=1e-4)
    _passed("04.1", len(cases))


# ---------------------------------------------------------------------------------------------------
# 05 — FactoredMatrix
# ---------------------------------------------------------------------------------------------------


def check_ov_copying_scores(ov_copying_scores, W_V: torch.Tensor, W_O: torch.Tensor) -> None:
    """05.1: ov_copying_scores(W_V [... d_model d_head], W_O [... d_head d_model]) -> [...]."""
    generator = torch.Generator().manual_seed(0)
    A = torch.randn(3, 10, 4, generator=generator)
    B = A.transpose(-1, -2) + 0.5 * torch.randn(3, 4, 10, generator=generator)  # some copying, some not
    B[1] = -B[1]
    cases = [("les poids du modèle", W_V, W_O, ("layer", "head")), ("poids aléatoires", A, B, ("head",))]
    for case, wv, wo, dims in cases:
        eig = FactoredMatrix(wv, wo).eigenvalues
        got = _run_pure(ov_copying_scores, ("W_V", "W_O"), wv, wo)
        _compare(got, eig.sum(-1).real / eig.abs().sum(-1), dims, case, ov_copying_scores.__name__, mistakes=[
            ("Valeurs singulières au lieu des valeurs propres : elles sont toujours positives, le score vaut 1 "
             "partout ; prenez `.eigenvalues`", lambda e=eig: torch.ones(e.shape[:-1])),
            ("Le dénominateur est la valeur absolue de la somme : il faut la somme des valeurs absolues, "
             "`eig.abs().sum(-1)`", lambda e=eig: e.sum(-1).real / e.sum(-1).abs()),
            ("Somme sur la mauvaise dimension : les valeurs propres sont sur la dernière, `sum(-1)`",
             lambda e=eig: e.sum(0).real / e.abs().sum(0)),
        ], atol=1e-3)
    _passed("05.1", len(cases))


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


def check_top1_copying_rate(top1_copying_rate, full_ov: FactoredMatrix, sample: torch.Tensor) -> None:
    """05.2: top1_copying_rate(full_ov FactoredMatrix [n n], sample [n_sample]) -> scalar."""
    generator = torch.Generator().manual_seed(0)
    A = torch.randn(5000, 8, generator=generator)
    B = A.T * 0.3 + torch.randn(8, 5000, generator=generator)
    random_sample = torch.randperm(5000, generator=generator)[:150]
    cases = [("le circuit OV complet du notebook", full_ov, sample),
             ("une matrice factorisée aléatoire 5000 × 5000", FactoredMatrix(A, B), random_sample)]
    for case, fm, s in cases:
        guarded = _NoDenseFactoredMatrix(fm.A, fm.B, max_entries=len(s) * fm.B.shape[-1])
        expected = (fm[s].AB.argmax(-1) == s).float().mean()
        got = _run_pure(top1_copying_rate, ("full_ov", "sample"), guarded, s)
        _compare(got, expected, (), case, top1_copying_rate.__name__, mistakes=[
            ("Axes échangés : vous cherchez le maximum de chaque COLONNE ; la ligne t est l'effet du token "
             "source t, cherchez le maximum de `full_ov[sample].AB` sur la dernière dimension",
             lambda fm=fm, s=s: (fm[:, s].AB.argmax(0) == s).float().mean()),
            ("Non normalisé : c'est un nombre de tokens recopiés, pas une fraction",
             lambda fm=fm, s=s: (fm[s].AB.argmax(-1) == s).float().sum()),
        ])
    _passed("05.2", len(cases))


def check_composition_score(composition_score, W_A: FactoredMatrix, W_B: FactoredMatrix) -> None:
    """05.3: composition_score(W_A, W_B) -> [...], |W_A W_B|_F / (|W_A|_F |W_B|_F)."""
    generator = torch.Generator().manual_seed(0)
    rand = [FactoredMatrix(torch.randn(2, 6, 3, generator=generator), torch.randn(2, 3, 6, generator=generator))
            for _ in range(2)]
    cases = [("les circuits OV du modèle", W_A, W_B), ("matrices factorisées aléatoires", *rand)]
    for case, a, b in cases:
        expected = (a @ b).norm() / (a.norm() * b.norm())
        dims = tuple(f"dim{i}" for i in range(expected.ndim))
        got = _run(composition_score, a, b)
        _compare(got, expected, dims, case, composition_score.__name__, mistakes=[
            ("Non normalisé : divisez par le produit des normes `W_A.norm() * W_B.norm()`",
             lambda a=a, b=b: (a @ b).norm()),
            ("Produit dans le mauvais ordre : W_A agit d'abord, le produit est `W_A @ W_B`",
             lambda a=a, b=b: (b @ a).norm() / (a.norm() * b.norm())),
            ("Divisé par la somme des normes : il faut leur produit",
             lambda a=a, b=b: (a @ b).norm() / (a.norm() + b.norm())),
        ], atol=1e-4)
    _passed("05.3", len(cases))


# ---------------------------------------------------------------------------------------------------
# 06 — Othello-GPT
# ---------------------------------------------------------------------------------------------------


def _positions(n_games: int = 4, seed: int = 3):
    """(board [8 8] int8, player) pairs from random games, the player to move after each move."""
    states = batch_board_states(generate_games(n_games, seed=seed))
    picks = [(g, t) for g in range(n_games) for t in (0, 5, 17, 33, 48)]
    return [(states.boards[g, t], int(states.next_players[g, t])) for g, t in picks if states.next_players[g, t]]


def _relative(board: np.ndarray, player: int) -> torch.Tensor:
    flat = torch.as_tensor(board.reshape(64).astype(np.int64))
    return torch.where(flat == player, 1, torch.where(flat == -player, 2, 0))


def check_relative_board_state(relative_board_state) -> None:
    """06.2: relative_board_state(board [8 8] in {1 black, -1 white, 0}, player) -> int [64] in {0 1 2}."""
    positions = sorted(_positions(), key=lambda position: -position[1])  # black to move first
    black_passed = False
    for board, player in positions:
        before = board.copy()
        got = _run(relative_board_state, board, player)
        if not np.array_equal(before, board):
            raise ExerciseError(f"`{relative_board_state.__name__}` a modifié le plateau reçu en place : "
                                "travaillez sur une copie.")
        colour = "noirs" if player == 1 else "blancs"
        inverted = "Inversé : « à moi » (1) et « à l'adversaire » (2) sont échangés ; « moi » est le joueur `player`"
        if black_passed and player == -1:
            inverted = ("Juste quand les noirs jouent, inversé quand ce sont les blancs : ce sont les couleurs "
                        "absolues (1 noir, 2 blanc) ; codez par rapport au joueur `player`")
        _compare(got, _relative(board, player), ("case",), f"un plateau où les {colour} jouent",
                 relative_board_state.__name__, mistakes=[
            (inverted, lambda b=board, p=player: _relative(b, -p)),
            ("Lignes et colonnes échangées : aplatissez le plateau ligne par ligne, `board.reshape(64)`",
             lambda b=board, p=player: _relative(b.T, p)),
        ])
        black_passed |= player == 1
    _passed("06.2", len(positions))


def _legal(board: np.ndarray, player: int) -> torch.Tensor:
    position = OthelloBoard()
    position.board = board.copy()
    position.player = player
    mask = torch.zeros(64, dtype=torch.bool)
    mask[position.legal_moves(player)] = True
    return mask


def check_legal_move_mask(legal_move_mask) -> None:
    """06.1: legal_move_mask(board [8 8], player) -> bool [64]."""
    positions = _positions()
    for board, player in positions:
        before = board.copy()
        got = _as_tensor(_run(legal_move_mask, board, player), legal_move_mask.__name__)
        if not np.array_equal(before, board):
            raise ExerciseError(f"`{legal_move_mask.__name__}` a modifié le plateau reçu en place : "
                                "travaillez sur une copie.")
        expected = _legal(board, player)
        case = f"un plateau où les {'noirs' if player == 1 else 'blancs'} jouent"
        if got.shape != expected.shape:
            _compare(got, expected, ("case",), case, legal_move_mask.__name__)
        got = got.bool()
        if torch.equal(got, expected):
            continue
        occupied = torch.as_tensor(board.reshape(64) != 0)
        extra = (got & ~expected).nonzero().flatten().tolist()
        missing = (expected & ~got).nonzero().flatten().tolist()
        if torch.equal(got, _legal(board, -player)):
            message = "Joueur inversé : ce sont les coups légaux de l'adversaire"
        elif torch.equal(got, expected.view(8, 8).T.reshape(64)):
            message = "Lignes et colonnes échangées : la case s est en ligne s // 8, colonne s % 8"
        elif extra and all(occupied[s] for s in extra):
            message = "Des cases déjà occupées sont marquées légales : un coup se joue sur une case vide"
        else:
            message = "Résultat inexact"
        raise ExerciseError(
            f"{message} ({case}). Légales à tort : {', '.join(square_label(s) for s in extra) or '-'} ; oubliées : "
            f"{', '.join(square_label(s) for s in missing) or '-'} (rappel : il faut encadrer au moins un pion "
            "adverse, dans l'une des 8 directions, diagonales comprises).")
    _passed("06.1", len(positions))


def check_occupied_accuracy(occupied_accuracy, pred: torch.Tensor, target: torch.Tensor) -> None:
    """06.3: occupied_accuracy(pred [n 64], target [n 64]) -> scalar, accuracy on the occupied squares."""
    generator = torch.Generator().manual_seed(0)
    random_target = torch.randint(0, 3, (40, 64), generator=generator)
    random_target[:20, :40] = 0  # rows with many empty squares: per-row means differ from the global mean
    random_pred = torch.where(torch.rand(40, 64, generator=generator) < 0.7, random_target,
                              torch.randint(0, 3, (40, 64), generator=generator))
    cases = [("les prédictions de la sonde du notebook", pred, target), ("prédictions aléatoires", random_pred,
                                                                          random_target)]
    for case, p, t in cases:
        got = _run_pure(occupied_accuracy, ("pred", "target"), p, t)
        correct = (p == t).float()
        occupied = t > 0
        per_row = torch.stack([c[o].mean() for c, o in zip(correct, occupied, strict=True) if o.any()]).mean()
        _compare(got, correct[occupied].mean(), (), case, occupied_accuracy.__name__, mistakes=[
            ("Précision sur toutes les cases, vides comprises : ne gardez que les cases où `target > 0`",
             lambda c=correct: c.mean()),
            ("Précision sur les cases VIDES : les cases occupées sont celles où `target > 0`",
             lambda c=correct, o=occupied: c[~o].mean()),
            ("Moyenne sur la mauvaise dimension : vous moyennez d'abord par position puis entre positions ; "
             "prenez la moyenne sur toutes les cases occupées à la fois", lambda r=per_row: r),
        ], atol=1e-5)
    _passed("06.3", len(cases))


def check_flip_delta(flip_delta, resid: torch.Tensor, w_dir: torch.Tensor, b_dir: torch.Tensor) -> None:
    """06.4: flip_delta(resid [n d_model], w_dir [d_model], b_dir) -> [n d_model], to add to reverse the reading."""
    generator = torch.Generator().manual_seed(0)
    cases = [("le flux résiduel du notebook", resid, w_dir, b_dir),
             ("vecteurs aléatoires", torch.randn(4, 16, generator=generator), torch.randn(16, generator=generator),
              torch.tensor(0.7))]
    for case, r, w, b in cases:
        gap = r @ w + b  # [n]
        expected = -2 * gap[:, None] * w / w.norm() ** 2
        got = _run_pure(flip_delta, ("resid", "w_dir", "b_dir"), r, w, b)
        _compare(got, expected, ("n", "d_model"), case, flip_delta.__name__, mistakes=[
            ("Vous renvoyez le flux résiduel modifié ; la fonction doit renvoyer le seul déplacement à ajouter",
             lambda r=r, e=expected: r + e),
            ("Mal normalisé : divisez par `w_dir.norm() ** 2` (le carré), pour que l'écart lu par la sonde "
             "change exactement de -2e", lambda g=gap, w=w: -2 * g[:, None] * w / w.norm()),
            ("Non normalisé : divisez par `w_dir.norm() ** 2`", lambda g=gap, w=w: -2 * g[:, None] * w),
            ("L'écart est annulé au lieu d'être renversé : le facteur est -2, pas -1",
             lambda e=expected: e / 2),
        ], atol=1e-4)
    _passed("06.4", len(cases))


# ---------------------------------------------------------------------------------------------------
# 07 — patching avancé
# ---------------------------------------------------------------------------------------------------


def check_attribution_estimate(attribution_estimate, clean: torch.Tensor, corrupted: torch.Tensor,
                               grad: torch.Tensor) -> None:
    """07.1: attribution_estimate(clean, corrupted, grad [layer batch pos d_model]) -> [layer pos]."""
    generator = torch.Generator().manual_seed(0)
    cases = [("les activations du notebook", clean, corrupted, grad),
             ("piles aléatoires", *torch.randn(3, 3, 2, 5, 8, generator=generator).unbind(0))]
    for case, c, a, g in cases:
        got = _run_pure(attribution_estimate, ("clean", "corrupted", "grad"), c, a, g)
        _compare(got, ((c - a) * g).sum((1, 3)), ("layer", "pos"), case, attribution_estimate.__name__, mistakes=[
            ("Seule l'activation propre est multipliée par le gradient : le patch DÉPLACE l'activation de sa "
             "valeur corrompue à sa valeur propre, multipliez `(clean - corrupted)` par `grad`",
             lambda c=c, g=g: (c * g).sum((1, 3))),
            ("Moyenne sur d_model au lieu de somme : le produit scalaire avec le gradient est une somme",
             lambda c=c, a=a, g=g: ((c - a) * g).mean(3).sum(1)),
            ("Moyenne sur le lot au lieu de somme : la métrique est déjà une moyenne sur le lot, son gradient "
             "porte le 1/batch ; sommez sur le lot", lambda c=c, a=a, g=g: ((c - a) * g).sum(3).mean(1)),
        ], atol=1e-4, rtol=1e-3)
    _passed("07.1", len(cases))


def check_map_correlation(map_correlation, exact: torch.Tensor, approx: torch.Tensor) -> None:
    """07.2: map_correlation(a, b) -> scalar, the Pearson correlation between all entries of two maps."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=generator) + 1.5
    y = 0.5 * x + torch.randn(4, 6, generator=generator) + 2.0
    z = torch.randn(3, 5, 2, generator=generator)
    cases = [("les cartes du notebook", exact, approx), ("cartes aléatoires [layer, pos]", x, y),
             ("cartes aléatoires à trois axes", z, z ** 2 - z)]
    for case, a, b in cases:
        got = _run_pure(map_correlation, ("a", "b"), a, b)
        u, v = a.flatten().double(), b.flatten().double()
        du, dv = u - u.mean(), v - v.mean()
        _compare(got, (du @ dv / (du.norm() * dv.norm())).float(), (), case, map_correlation.__name__, mistakes=[
            ("Non centré : c'est la similarité cosinus ; retirez d'abord à chaque carte sa moyenne",
             lambda u=u, v=v: u @ v / (u.norm() * v.norm())),
            ("Non normalisé : c'est la covariance ; divisez par le produit des deux écarts-types",
             lambda du=du, dv=dv: du @ dv / len(du)),
            ("Non normalisé : c'est la covariance ; divisez par le produit des deux écarts-types",
             lambda du=du, dv=dv: du @ dv / (len(du) - 1)),
            ("Dénominateurs incohérents : la covariance et les écarts-types doivent diviser par le même nombre "
             "(n ou n - 1 ; `torch.std` divise par n - 1)",
             lambda du=du, dv=dv: du @ dv / len(du) / (du.std() * dv.std())),
            ("Dénominateurs incohérents : la covariance et les écarts-types doivent diviser par le même nombre "
             "(n ou n - 1 ; `torch.std` divise par n - 1)",
             lambda du=du, dv=dv: du @ dv / (len(du) - 1) / (du.std(correction=0) * dv.std(correction=0))),
            ("Corrélations calculées couche par couche puis moyennées : aplatissez les cartes entières "
             "(`.flatten()`) et calculez une seule corrélation",
             lambda a=a, b=b: torch.stack([torch.corrcoef(torch.stack([r.flatten(), s.flatten()]))[0, 1]
                                           for r, s in zip(a, b, strict=True)]).mean()),
        ], atol=1e-4)
    _passed("07.2", len(cases))
