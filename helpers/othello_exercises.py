"""Checks of notebook 08's exercises (Othello-GPT's research questions), in the style of helpers.exercises: each
runs the learner's function on the notebook's data and on unseen inputs, and names the likely mistake in French."""

from __future__ import annotations

import torch

from helpers.exercises import _call, _compare, _each, _exercise, _rng


def _black_white(relative: torch.Tensor, black_to_move: torch.Tensor) -> torch.Tensor:
    swapped = torch.where(relative == 0, 0, 3 - relative)
    return torch.where(black_to_move[:, None], relative, swapped)


@_exercise("08.1")
def check_to_black_white(to_black_white, relative: torch.Tensor, black_to_move: torch.Tensor,
                         absolute: torch.Tensor) -> int:
    """08.1: to_black_white(relative [n 64] in {0 1 2}, black_to_move [n] bool) -> [n 64] in {0 empty, 1 black,
    2 white}; on the notebook's data it must give ``absolute``."""
    if not torch.equal(_black_white(relative, black_to_move), absolute):
        raise ValueError("check_to_black_white: `absolute` is not the black/white encoding of `relative` and "
                         "`black_to_move`; pass the notebook's rel_test, black_test and abs_test")
    generator = _rng()
    unseen = torch.randint(0, 3, (12, 64), generator=generator)
    unseen_black = torch.arange(12) % 3 == 0  # white to move more often than black

    def check_case(case, rel, black):
        got = _call(to_black_white, ("relative", "black_to_move"), rel, black)
        expected = _black_white(rel, black)
        _compare(got, expected, ("position", "case"), case, to_black_white.__name__, mistakes=[
            ("Les couleurs sont inversées : quand les noirs jouent, « à moi » (1) est noir (1), et quand les blancs "
             "jouent, « à moi » est blanc (2)", lambda: _black_white(rel, ~black)),
            ("Le joueur qui doit jouer est ignoré : les codes sont recopiés tels quels, ce qui n'est juste que "
             "quand les noirs jouent", lambda: rel.clone()),
            ("Les cases vides deviennent des pions : échangez 1 et 2 seulement sur les cases occupées "
             "(`3 - relative` donne 3 sur une case vide)", lambda: torch.where(black[:, None], rel, 3 - rel)),
        ])

    return _each(check_case, [("les positions de test du notebook", relative, black_to_move),
                              ("positions inédites", unseen, unseen_black)])


def _balanced(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (pred[labels].double().mean() + (~pred[~labels]).double().mean()) / 2


@_exercise("08.2")
def check_balanced_accuracy(balanced_accuracy_of, pred: torch.Tensor, labels: torch.Tensor) -> int:
    """08.2: balanced_accuracy_of(pred bool [...], labels bool [...]) -> scalar, the mean of the hit rates on the
    true and on the false entries."""
    generator = _rng()
    rare = torch.rand(30, 16, generator=generator) < 0.1  # a rare property: plain accuracy is far from balanced
    guess = torch.where(torch.rand(30, 16, generator=generator) < 0.8, rare, ~rare)

    def check_case(case, p, y):
        got = _call(balanced_accuracy_of, ("pred", "labels"), p, y)
        _compare(got, _balanced(p, y), (), case, balanced_accuracy_of.__name__, mistakes=[
            ("C'est la précision ordinaire : sur une propriété rare, elle récompense la réponse « toujours faux » ; "
             "moyennez séparément sur les entrées vraies et sur les fausses", lambda: (p == y).double().mean()),
            ("C'est le seul taux de réussite sur les entrées vraies (le rappel) : ajoutez celui sur les entrées "
             "fausses et faites la moyenne des deux", lambda: p[y].double().mean()),
            ("C'est le seul taux de réussite sur les entrées fausses : ajoutez celui sur les entrées vraies et "
             "faites la moyenne des deux", lambda: (~p[~y]).double().mean()),
            ("Sur les entrées fausses, une réussite est `pred` FAUX : comptez `~pred[~labels]`",
             lambda: (p[y].double().mean() + p[~y].double().mean()) / 2),
            ("Non normalisé : c'est la somme des deux taux, divisez par 2",
             lambda: p[y].double().mean() + (~p[~y]).double().mean()),
        ], atol=1e-6)

    return _each(check_case, [("la sonde « retournée » du notebook", pred, labels),
                              ("une propriété rare, inédite", guess, rare)])


def _dla(vectors, W_U, scale, moves, centre: bool = True):
    centred = vectors - vectors.mean(-1, keepdim=True) if centre else vectors
    directions = moves.double() @ W_U.double().T / moves.sum(-1, keepdim=True)
    return (centred.double() * directions).sum(-1) / scale[:, 0].double()


@_exercise("08.3")
def check_dla_onto_moves(dla_onto_moves, vectors: torch.Tensor, W_U: torch.Tensor, scale: torch.Tensor,
                         moves: torch.Tensor) -> int:
    """08.3: dla_onto_moves(vectors [n d_model], W_U [d_model d_vocab], scale [n 1], moves bool [n d_vocab]) -> [n],
    the direct effect of each vector on the mean logit of its moves through the final LayerNorm."""
    generator = _rng()
    W_U_new = torch.randn(8, 7, generator=generator)
    vectors_new = torch.randn(5, 8, generator=generator) + 2  # far from centred: forgetting to centre shows
    scale_new = torch.rand(5, 1, generator=generator) + 0.5
    moves_new = torch.rand(5, 7, generator=generator) < 0.4
    moves_new[:, 1] = True  # at least one move per case

    def check_case(case, v, w, s, m):
        got = _call(dla_onto_moves, ("vectors", "W_U", "scale", "moves"), v, w, s, m)
        summed = _dla(v, w, s, m) * m.sum(-1)
        _compare(got, _dla(v, w, s, m), ("n",), case, dla_onto_moves.__name__, mistakes=[
            ("Les vecteurs ne sont pas centrés : la LayerNorm finale retire d'abord la moyenne sur `d_model`",
             lambda: _dla(v, w, s, m, centre=False)),
            ("L'échelle de la LayerNorm est oubliée : divisez par `scale`", lambda: _dla(v, w, s, m) * s[:, 0]),
            ("C'est la somme des logits des coups, pas leur moyenne : divisez par le nombre de coups de chaque cas",
             lambda: summed),
            ("L'échelle multiplie au lieu de diviser", lambda: _dla(v, w, s, m) * s[:, 0] ** 2),
        ], atol=1e-3, rtol=1e-3)

    return _each(check_case, [("les changements des MLP du notebook", vectors, W_U, scale, moves),
                              ("vecteurs inédits", vectors_new, W_U_new, scale_new, moves_new)])


def _move_logits(W_out: torch.Tensor, W_U: torch.Tensor) -> torch.Tensor:
    weights = W_out @ W_U[:, 1:]
    return weights - weights.mean(-1, keepdim=True)


@_exercise("08.4")
def check_neuron_move_logits(neuron_move_logits, W_out: torch.Tensor, W_U: torch.Tensor) -> int:
    """08.4: neuron_move_logits(W_out [d_mlp d_model], W_U [d_model 61]) -> [d_mlp 60], centred over the moves."""
    generator = _rng()
    W_out_new = torch.randn(6, 8, generator=generator)
    W_U_new = torch.randn(8, 61, generator=generator) + 1  # not centred: forgetting to centre shows

    def check_case(case, w_out, w_u):
        got = _call(neuron_move_logits, ("W_out", "W_U"), w_out, w_u)
        full = w_out @ w_u
        _compare(got, _move_logits(w_out, w_u), ("neurone", "coup"), case, neuron_move_logits.__name__, mistakes=[
            ("Pas centré : retirez à chaque neurone sa moyenne sur les 60 coups", lambda: w_out @ w_u[:, 1:]),
            ("Le token 0 (« passe ») est gardé : ce n'est pas un coup, prenez `W_U[:, 1:]`",
             lambda: full - full.mean(-1, keepdim=True)),
            ("Centré en comptant le token 0 : prenez d'abord `W_U[:, 1:]`, puis centrez sur les 60 coups",
             lambda: (full - full.mean(-1, keepdim=True))[:, 1:]),
            ("Centré sur la mauvaise dimension : la moyenne se prend sur les coups (`dim=-1`), pour chaque neurone",
             lambda: (w_out @ w_u[:, 1:]) - (w_out @ w_u[:, 1:]).mean(0, keepdim=True)),
        ], atol=1e-4)

    return _each(check_case, [("les poids de la couche du notebook", W_out, W_U),
                              ("poids inédits", W_out_new, W_U_new)])
