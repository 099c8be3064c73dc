"""Checks of notebook 10's exercises (sparse autoencoders), in the style of helpers.exercises: each runs the
learner's function on the notebook's data and on unseen inputs, and names the likely mistake in French."""

from __future__ import annotations

import torch

from helpers.exercises import _call, _compare, _each, _exercise, _rng


def _topk(pre: torch.Tensor, k: int, relu: bool = True, largest: bool = True) -> torch.Tensor:
    top = pre.topk(k, dim=-1, largest=largest)
    return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu() if relu else top.values)


@_exercise("10.1")
def check_topk_activation(topk_activation, pre: torch.Tensor, k: int) -> int:
    """10.1: topk_activation(pre [... d_sae], k) -> [... d_sae], the k largest kept (ReLU'd), 0 elsewhere."""
    generator = _rng()
    batched = torch.randn(4, 5, 12, generator=generator)
    negative = torch.randn(6, 10, generator=generator) - 2  # mostly negative: the ReLU matters

    def check_case(case, x, kk):
        got = _call(topk_activation, ("pre", "k"), x, kk)
        _compare(got, _topk(x, kk), ("batch", "pos", "feature")[-x.ndim:], case, topk_activation.__name__, mistakes=[
            ("Les k plus grandes sont gardées sans ReLU : une pré-activation négative parmi elles doit devenir 0 "
             "(`.relu()` sur les valeurs gardées)", lambda: _topk(x, kk, relu=False)),
            ("Ce sont les k plus PETITES valeurs : `topk` prend les plus grandes par défaut",
             lambda: _topk(x, kk, largest=False)),
            ("Un ReLU sans sélection : toutes les features positives restent actives ; gardez les k plus grandes "
             "(`torch.topk(pre, k, dim=-1)`) puis remettez-les à leur place (`scatter`)", lambda: x.relu()),
            ("k + 1 features gardées au lieu de k", lambda: _topk(x, kk + 1)),
        ], atol=1e-6)

    return _each(check_case, [("les pré-activations du notebook", pre, k),
                              ("pré-activations aléatoires [batch pos feature], k=3", batched, 3),
                              ("pré-activations surtout négatives, k=4", negative, 4)])


def _explained_variance(x: torch.Tensor, recons: torch.Tensor) -> torch.Tensor:
    return 1 - (x - recons).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


@_exercise("10.2")
def check_variance_explained(variance_explained, x: torch.Tensor, recons: torch.Tensor) -> int:
    """10.2: variance_explained(x [n d], recons [n d]) -> scalar tensor."""
    generator = _rng()
    shifted = torch.randn(50, 8, generator=generator) + 5  # far from 0: forgetting the mean shows
    noisy = shifted + 0.3 * torch.randn(50, 8, generator=generator)

    def check_case(case, a, r):
        got = _call(variance_explained, ("x", "recons"), a, r)
        _compare(got, _explained_variance(a, r), (), case, variance_explained.__name__, mistakes=[
            ("La variance est prise autour de 0 et non de la moyenne : retirez `x.mean(0)` avant d'élever au carré",
             lambda: 1 - (a - r).pow(2).sum() / a.pow(2).sum()),
            ("C'est la part NON expliquée (erreur / variance) : la variance expliquée est 1 moins ce rapport",
             lambda: 1 - _explained_variance(a, r)),
            ("La moyenne est prise sur la mauvaise dimension : `x.mean(0)`, la moyenne sur les tokens",
             lambda: 1 - (a - r).pow(2).sum() / (a - a.mean(-1, keepdim=True)).pow(2).sum()),
        ], atol=1e-5)

    return _each(check_case, [("les activations du notebook", x, recons),
                              ("activations décalées loin de 0", shifted, noisy)])


def _masked_l0(feature_acts: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (feature_acts > 0).float().sum(-1)[mask].mean()


@_exercise("10.3")
def check_masked_l0(masked_l0, feature_acts: torch.Tensor, mask: torch.Tensor) -> int:
    """10.3: masked_l0(feature_acts [batch pos d_sae], mask [batch pos] bool) -> scalar tensor."""
    generator = _rng()
    acts = torch.randn(3, 7, 20, generator=generator).relu()
    acts[:, 0] = (torch.randn(3, 20, generator=generator) + 2).relu()  # a dense BOS, as in a real model
    unseen_mask = torch.ones(3, 7, dtype=torch.bool)
    unseen_mask[:, 0] = False
    unseen_mask[1, 4:] = unseen_mask[2, 2:] = False
    acts[1, 4:] = acts[2, 2:] = (torch.randn(20, generator=generator) + 1).relu()  # padding: all the same token

    def check_case(case, a, m):
        got = _call(masked_l0, ("feature_acts", "mask"), a, m)
        _compare(got, _masked_l0(a, m), (), case, masked_l0.__name__, mistakes=[
            ("Le masque est ignoré : le BOS et le padding comptent dans la moyenne",
             lambda: (a > 0).float().sum(-1).mean()),
            ("Le masque est appliqué mais la somme est divisée par toutes les positions : divisez par le nombre de "
             "tokens qui comptent (`mask.sum()`)", lambda: ((a > 0).float().sum(-1) * m).sum() / m.numel()),
            ("C'est une somme d'activations, pas un nombre de features actives : comptez `(feature_acts > 0)`",
             lambda: a.sum(-1)[m].mean()),
            ("C'est la fraction de features actives, pas leur nombre : sommez sur `d_sae` au lieu d'en faire la "
             "moyenne", lambda: (a > 0).float().mean(-1)[m].mean()),
        ], atol=1e-5)

    return _each(check_case, [("les activations du notebook", feature_acts, mask),
                              ("activations et masque inédits", acts, unseen_mask)])


def _difference_of_means(resid_a, mask_a, resid_b, mask_b) -> torch.Tensor:
    return resid_a[mask_a].mean(0) - resid_b[mask_b].mean(0)


def _mean_of_prompt_means(resid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.stack([r[m].mean(0) for r, m in zip(resid, mask, strict=True)]).mean(0)


@_exercise("10.4")
def check_difference_of_means(difference_of_means, resid_a: torch.Tensor, mask_a: torch.Tensor,
                              resid_b: torch.Tensor, mask_b: torch.Tensor) -> int:
    """10.4: difference_of_means(resid_a [batch pos d], mask_a [batch pos], resid_b, mask_b) -> [d]."""
    generator = _rng()
    ra, rb = torch.randn(2, 6, 5, generator=generator), torch.randn(3, 4, 5, generator=generator) + 1
    ma, mb = torch.ones(2, 6, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool)
    ma[:, 0] = mb[:, 0] = False
    ma[0, 3:] = mb[2, 2:] = False  # prompts of different lengths

    def check_case(case, a, m, b, n):
        got = _call(difference_of_means, ("resid_a", "mask_a", "resid_b", "mask_b"), a, m, b, n)
        _compare(got, _difference_of_means(a, m, b, n), ("d_model",), case, difference_of_means.__name__, mistakes=[
            ("Le masque est ignoré : le BOS et le padding entrent dans les moyennes",
             lambda: a.flatten(0, 1).mean(0) - b.flatten(0, 1).mean(0)),
            ("Moyenne des moyennes par prompt : un prompt court pèserait autant qu'un long ; moyennez directement "
             "sur tous les tokens qui comptent (`resid[mask].mean(0)`)",
             lambda: _mean_of_prompt_means(a, m) - _mean_of_prompt_means(b, n)),
        ], atol=1e-5)

    return _each(check_case, [("les prompts du notebook", resid_a, mask_a, resid_b, mask_b),
                              ("entrées inédites", ra, ma, rb, mb)])
