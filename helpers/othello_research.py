"""Experiments of notebook 08 on Othello-GPT: probes of several targets, edit sweeps, direct logit attribution
onto moves, neurons that write one move, ablations.

Every fit here is deterministic: linear probes are ridge regressions solved in closed form (one Cholesky
solve per depth), the MLP probes are trained on the full batch with a fixed seed. Positions come from
:func:`helpers.othello.generate_games`; ``depth`` ``k`` is the residual stream after ``k`` layers (``resid_pre``
of layer ``k``, and ``resid_post`` of the last layer for ``k = n_layers``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from helpers import utils
from helpers.model import HookedTransformer
from helpers.othello import BLACK, N_CTX, GameStates, batch_board_states

MINE, THEIRS = 1, 2  # labels of the mine/theirs encoding (0 is empty)


# ---------------------------------------------------------------------------------------------------
# Activations and targets
# ---------------------------------------------------------------------------------------------------


def depth_names(n_layers: int) -> list[str]:
    """Hook names of the residual stream after 0..n_layers layers."""
    return [utils.get_act_name("resid_pre", k) for k in range(n_layers)] + [
        utils.get_act_name("resid_post", n_layers - 1)]


@torch.no_grad()
def residual_by_depth(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The residual stream at every depth: tokens [batch pos] -> [n_layers + 1, batch, pos, d_model]."""
    names = depth_names(model.cfg.n_layers)
    _, cache = model.run_with_cache(tokens, names_filter=names)
    return torch.stack([cache[name] for name in names])


@dataclass
class BoardTargets:
    """What a probe may read at each position, ``[n_games, N_CTX, ...]`` (position ``t``: after move ``t``).

    ``relative``: int64 [..., 64], 0 empty, 1 mine (player to move), 2 theirs; ``absolute``: int64 [..., 64],
    0 empty, 1 black, 2 white; ``flipped``: bool [..., 64], flipped by move ``t``; ``legal``: bool [..., 64],
    legal next moves; ``my_count``: float [...], discs of the player to move; ``black_to_move``: bool [...]."""

    relative: torch.Tensor
    absolute: torch.Tensor
    flipped: torch.Tensor
    legal: torch.Tensor
    my_count: torch.Tensor
    black_to_move: torch.Tensor


def _mover(states: GameStates) -> np.ndarray:
    """Colour to move after each move; at the end of a game, the opponent of the last mover."""
    return np.where(states.next_players == 0, -states.players, states.next_players)


def board_targets(games) -> BoardTargets:
    """The targets of the probes for games ``[n_games, 60]`` (squares), over the model's ``N_CTX`` positions."""
    states: GameStates = batch_board_states(games)
    relative = torch.from_numpy(states.relative()[:, :N_CTX])
    boards = states.boards[:, :N_CTX].reshape(*relative.shape)
    absolute = torch.from_numpy(np.where(boards == -1, 2, boards).astype(np.int64))
    return BoardTargets(
        relative=relative,
        absolute=absolute,
        flipped=torch.from_numpy(states.flipped[:, :N_CTX]),
        legal=torch.from_numpy(states.legal[:, :N_CTX]),
        my_count=(relative == MINE).sum(-1).double(),
        black_to_move=torch.from_numpy(_mover(states)[:, :N_CTX] == BLACK),
    )


# ---------------------------------------------------------------------------------------------------
# Linear probes, in closed form
# ---------------------------------------------------------------------------------------------------


def fit_linear_probes(x: torch.Tensor, target: torch.Tensor, ridge: float = 1e-2,
                      dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression of target on x, one per slice of x, solved in closed form (deterministic).

    x: [n_probes, n, d] activations; target: [n, k] real targets (one-hot labels for a classifier).
    Returns W [n_probes, d, k] and b [n_probes, k]; the probe reads ``x @ W + b``. The ridge is ``ridge`` times
    the mean variance of x, which keeps the Cholesky solve well conditioned whatever the scale of x. Computed in
    ``dtype`` (float64 by default; the course models' metrics use float32).
    """
    if x.ndim != 3 or target.ndim != 2 or target.shape[0] != x.shape[1]:
        raise ValueError(f"x must be [n_probes, n, d] and target [n, k] with the same n, got {tuple(x.shape)} "
                         f"and {tuple(target.shape)}")
    x, target = x.to(dtype), target.to(dtype)
    mean = x.mean(1, keepdim=True)
    xc = x - mean
    cov = xc.transpose(1, 2) @ xc / x.shape[1]  # [n_probes, d, d]
    scale = cov.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None]
    eye = torch.eye(x.shape[2], dtype=x.dtype)
    chol = torch.linalg.cholesky(cov + ridge * scale * eye)
    W = torch.cholesky_solve(torch.einsum("pnd,nk->pdk", xc, target) / x.shape[1], chol)
    b = target.mean(0) - (mean @ W)[:, 0]
    return W, b


def probe_scores(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x [n_probes, n, d] -> the probes' outputs [n_probes, n, k]."""
    return x.double() @ W + b[:, None]


def classifier_accuracy(W, b, x, labels: torch.Tensor, n_classes: int = 3) -> torch.Tensor:
    """Accuracy of one-hot ridge classifiers (argmax of the ``n_classes`` outputs of each square), per probe, on
    the squares whose label is not 0 (the occupied ones): x [n_probes, n, d], labels [n, 64] -> [n_probes]."""
    pred = probe_scores(W, b, x).unflatten(-1, (-1, n_classes)).argmax(-1)
    return (pred == labels).double()[:, labels > 0].mean(1)


def binary_thresholds(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Midpoint between the mean score of the true and of the false entries: scores [n_probes, n, k],
    labels bool [n, k] -> [n_probes] (the threshold that weighs both classes equally, as balanced accuracy)."""
    return (scores[:, labels].mean(1) + scores[:, ~labels].mean(1)) / 2


def balanced_accuracy(scores: torch.Tensor, labels: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Mean of the hit rates on the true and on the false entries: scores [n_probes, n, k], labels bool [n, k],
    threshold [n_probes] -> [n_probes]. Chance is 0.5 however rare the true entries are."""
    pred = scores > threshold[:, None, None]
    return (pred[:, labels].double().mean(1) + (~pred[:, ~labels]).double().mean(1)) / 2


def r_squared(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of the variance of target [n] explained by pred [..., n] -> [...]."""
    return 1 - (pred - target).pow(2).mean(-1) / target.var(unbiased=False)


# ---------------------------------------------------------------------------------------------------
# MLP probes, trained on the full batch
# ---------------------------------------------------------------------------------------------------


@dataclass
class MLPProbes:
    """One-hidden-layer probes, one per slice of x: ``relu(norm(x) @ W1 + b1) @ W2 + b2``, where
    ``norm(x) = (x - mean) / scale``, in float64. Shapes: W1 [n_probes, d, hidden], W2 [n_probes, hidden, k]."""

    mean: torch.Tensor
    scale: torch.Tensor
    W1: torch.Tensor
    b1: torch.Tensor
    W2: torch.Tensor
    b2: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [n_probes, n, d] -> outputs [n_probes, n, k]."""
        hidden = torch.relu((x.double() - self.mean) / self.scale @ self.W1 + self.b1)
        return hidden @ self.W2 + self.b2


def fit_mlp_probes(x: torch.Tensor, labels: torch.Tensor, n_classes: int = 3, hidden: int = 128, steps: int = 200,
                   lr: float = 1e-2, seed: int = 0) -> MLPProbes:
    """Train one MLP probe per slice of x to classify each square: x [n_probes, n, d], labels [n, 64] in
    0..n_classes-1. Full batch, Adam, ``steps`` steps, initial weights drawn from ``seed``: no randomness
    left, so the same inputs give the same probes. In float64: the steps amplify rounding differences, which in
    float32 moved printed accuracies by 0.01 from one CPU to another. Outputs [n_probes, n, 64 * n_classes]."""
    n_probes, n, d = x.shape
    x = x.double()
    mean = x.mean(1, keepdim=True)
    scale = x.std(1, keepdim=True).mean(-1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    W1 = torch.randn(n_probes, d, hidden, generator=generator).double() / d**0.5
    W2 = torch.randn(n_probes, hidden, labels.shape[1] * n_classes, generator=generator).double() / hidden**0.5
    params = [W1, torch.zeros(n_probes, 1, hidden, dtype=torch.float64), W2,
              torch.zeros(n_probes, 1, W2.shape[-1], dtype=torch.float64)]
    for p in params:
        p.requires_grad_(True)
    probes = MLPProbes(mean, scale, *params)
    optimizer = torch.optim.Adam(params, lr=lr)
    flat_labels = labels.expand(n_probes, *labels.shape).flatten(0, 1)  # [n_probes * n, 64]
    with torch.enable_grad():
        for _ in range(steps):
            # classes on dim 1, [n_probes * n, n_classes, 64]: the same loss as [.., n_classes] rows, 2x faster
            logits = probes(x).unflatten(-1, (labels.shape[1], n_classes)).flatten(0, 1).transpose(1, 2)
            loss = F.cross_entropy(logits, flat_labels) * n_probes
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return MLPProbes(mean, scale, *(p.detach() for p in params))


# ---------------------------------------------------------------------------------------------------
# Edits of the board along the difference of means
# ---------------------------------------------------------------------------------------------------


def class_mean_differences(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean activation where each square is mine minus where it is theirs: x [n_probes, n, d],
    labels [n, 64] in {0 empty, 1 mine, 2 theirs} -> [n_probes, 64, d]."""
    mine, theirs = (labels == MINE).double(), (labels == THEIRS).double()
    x = x.double()
    return torch.einsum("pnd,ns->psd", x, mine / mine.sum(0)) - torch.einsum("pnd,ns->psd", x, theirs / theirs.sum(0))


def edit_hooks(n_layers: int, pos: torch.Tensor, edits: dict[int, torch.Tensor]) -> list[tuple]:
    """Hooks adding ``edits[depth]`` [n, d_model] to the residual stream after ``depth`` layers, at ``pos`` [n]
    of each of the n sequences (depth ``n_layers`` is the final residual stream, just before the unembedding)."""
    names, rows = depth_names(n_layers), torch.arange(len(pos))

    def add(resid, hook, delta):
        resid[rows, pos] += delta.to(resid.dtype)
        return resid

    return [(names[depth], lambda resid, hook, d=delta: add(resid, hook, d)) for depth, delta in edits.items()]


@torch.no_grad()
def edited_probs(model: HookedTransformer, tokens: torch.Tensor, pos: torch.Tensor,
                 edits: dict[int, torch.Tensor], resid: torch.Tensor | None = None) -> torch.Tensor:
    """Next-move probabilities [n, d_vocab] at ``pos`` [n] of tokens [n, n_pos] with the edits added. With
    ``resid``, the unedited residual stream of these tokens at every depth (:func:`residual_by_depth`), the run
    starts at the first edited layer instead of the tokens: the same probabilities, bit for bit, for fewer layers."""
    n_layers = model.cfg.n_layers
    hooks = edit_hooks(n_layers, pos, edits)
    if resid is None or not edits:
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
    else:
        start = min(min(edits), n_layers - 1)  # the output depth is hooked at the last block's resid_post
        logits = model.run_with_hooks(resid[start].clone(), start_at_layer=start, tokens=tokens, fwd_hooks=hooks)
    return logits[torch.arange(len(pos)), pos].softmax(-1)


def move_scores(probs: torch.Tensor, legal: np.ndarray, gained: np.ndarray, lost: np.ndarray) -> tuple[float, ...]:
    """(share of top-1 moves legal on the edited board, mean probability on the moves that became legal, on
    those that became illegal): probs [n, 61], the three masks bool [n, 61] (``FlipCases``)."""
    probs = probs.double().numpy()
    top1 = legal[np.arange(len(probs)), probs.argmax(-1)].mean()
    return float(top1), float((probs * gained).sum(-1).mean()), float((probs * lost).sum(-1).mean())


# ---------------------------------------------------------------------------------------------------
# Components and their direct effect on the logits
# ---------------------------------------------------------------------------------------------------


def component_names(n_layers: int) -> list[str]:
    """What :func:`component_outputs` caches: every layer's hook_z and mlp_out, and ln_final's scale."""
    return ([utils.get_act_name("z", layer) for layer in range(n_layers)]
            + [utils.get_act_name("mlp_out", layer) for layer in range(n_layers)] + ["ln_final.hook_scale"])


@torch.no_grad()
def component_outputs(model: HookedTransformer, tokens: torch.Tensor, pos: torch.Tensor,
                      fwd_hooks=()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each head's and each MLP's output at ``pos`` [n] of tokens [n, n_pos], with fwd_hooks active.

    Returns heads [n, n_layers, n_heads, d_model] (z @ W_O, without b_O), mlps [n, n_layers, d_model] and
    the final LayerNorm's scale [n, 1]."""
    n_layers, rows = model.cfg.n_layers, torch.arange(len(pos))
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        _, cache = model.run_with_cache(tokens, names_filter=component_names(n_layers))
    heads = torch.stack([torch.einsum("nhe,hed->nhd", cache["z", layer][rows, pos], model.W_O[layer])
                         for layer in range(n_layers)], dim=1)
    mlps = torch.stack([cache["mlp_out", layer][rows, pos] for layer in range(n_layers)], dim=1)
    return heads, mlps, cache["ln_final.hook_scale"][rows, pos]


def direct_logit_attribution(vectors: torch.Tensor, directions: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """What vectors [n, ..., d_model] add directly to the logit readouts directions [n, d_model] through the final
    LayerNorm (centred, divided by the run's scale [n, 1]) and the unembedding -> [n, ...]."""
    centred = vectors - vectors.mean(-1, keepdim=True)
    shape = (len(vectors),) + (1,) * (vectors.ndim - 2)
    return (centred * directions.reshape(*shape, -1)).sum(-1) / scale.reshape(shape)


def mean_unembed(model: HookedTransformer, masks) -> torch.Tensor:
    """Mean unembedding direction of the tokens of each mask: masks bool [n, d_vocab] -> [n, d_model] (0 for an
    empty mask): the direction whose dot product is the mean logit of those moves."""
    masks = torch.as_tensor(np.asarray(masks), dtype=model.W_U.dtype)
    return masks @ model.W_U.T / masks.sum(-1, keepdim=True).clamp(min=1)


# ---------------------------------------------------------------------------------------------------
# Neurons
# ---------------------------------------------------------------------------------------------------


def neuron_move_weights(model: HookedTransformer) -> torch.Tensor:
    """What one unit of each neuron's activation adds directly to each move's logit, centred over the 60 moves:
    [n_layers, d_mlp, 60] (W_out @ W_U, tokens 1..60, without the final LayerNorm's scale)."""
    weights = model.W_out @ model.W_U[:, 1:]
    return weights - weights.mean(-1, keepdim=True)


def one_move_share(weights: torch.Tensor) -> torch.Tensor:
    """Share of each row's squared norm on its largest entry: [..., 60] -> [...] (1: the neuron writes one move)."""
    return weights.pow(2).max(-1).values / weights.pow(2).sum(-1)
