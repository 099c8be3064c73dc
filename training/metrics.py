"""The metrics of the shipped course models, written to data/models/*/metrics.json by training/ship.py and
checked against their thresholds by tests/course_models/test_course_models.py.

Induction (losses on repeated random tokens, each head's induction score), IOI (logit difference on the prompt
sets of helpers.ioi), the loss on held-out text, and Othello-GPT's rate of legal moves, linear probe of the board
and intervention along the probe (notebook 06's protocol). The classic evaluations (``induction_loss``,
``ioi_eval``...) are in helpers.evals.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from helpers import utils
from helpers.evals import ioi_logit_diffs, repeated_random_tokens
from helpers.ioi import OUT_OF_STRUCTURE_TEMPLATES, famous_ioi_prompt, ioi_eval_prompts
from helpers.model import HookedTransformer
from helpers.othello import (
    N_CTX,
    flip_cases,
    generate_games,
    legal_move_masks,
    relative_board_states,
    to_token,
    top1_legal_rate,
)
from helpers.othello_research import fit_linear_probes
from helpers.tokenizer import END_OF_TEXT_ID

MINE, THEIRS = 1, 2  # labels of relative_board_states (0 is empty)


@torch.no_grad()
def induction_metrics(model: HookedTransformer, seq_len: int = 50) -> dict:
    """Losses on the first and repeated halves of repeated random tokens, and each head's induction score."""
    tokens = repeated_random_tokens(model, seq_len)
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    loss = model.loss_fn(logits, tokens, per_token=True).mean(0)
    scores = torch.stack([
        cache["pattern", layer].diagonal(offset=1 - seq_len, dim1=-2, dim2=-1).mean((0, -1))
        for layer in range(model.cfg.n_layers)
    ])
    best = int(scores.argmax())
    return {
        "loss_first_half": float(loss[:seq_len].mean()),
        "loss_repeated_half": float(loss[seq_len:].mean()),
        "induction_scores": [[round(float(s), 4) for s in row] for row in scores],
        "best_induction_head": f"L{best // model.cfg.n_heads}H{best % model.cfg.n_heads}",
        "best_induction_score": float(scores.max()),
    }


#: Out-of-structure prompts measured with the test split: 20 per template, 10 in each name order.
N_OUT_OF_STRUCTURE_PROMPTS = 20 * len(OUT_OF_STRUCTURE_TEMPLATES)


@torch.no_grad()
def ioi_metrics(model: HookedTransformer, n_prompts: int = 200, split: str = "test") -> dict:
    """Logit difference (indirect object minus subject) on held-out IOI prompts.

    The validation split's keys start with ``val_``. The test split comes with the famous prompt and with
    the out-of-structure prompts (keys ``oos_``; ``oos_ioi_by_template``: accuracy and mean logit difference
    of each template, and its accuracy on each order: ABB, the indirect object named first, BAB, the
    subject named first)."""
    diffs = ioi_logit_diffs(model, ioi_eval_prompts(n_prompts, seed=1, split=split))
    if split == "validation":
        return {"val_ioi_mean_logit_diff": float(diffs.mean()), "val_ioi_accuracy": float((diffs > 0).mean())}
    oos = ioi_eval_prompts(N_OUT_OF_STRUCTURE_PROMPTS, seed=1, split="out_of_structure")
    oos_diffs = ioi_logit_diffs(model, oos)
    by_template = {}
    for template in OUT_OF_STRUCTURE_TEMPLATES:
        d = oos_diffs[[p.template == template for p in oos]]
        by_template[template] = {"accuracy": float((d > 0).mean()), "mean_logit_diff": round(float(d.mean()), 4)}
        for order in ["ABB", "BAB"]:
            d = oos_diffs[[p.template == template and p.order == order for p in oos]]
            by_template[template][f"accuracy_{order}"] = float((d > 0).mean())
    return {
        "ioi_mean_logit_diff": float(diffs.mean()),
        "ioi_accuracy": float((diffs > 0).mean()),
        "ioi_n_prompts": len(diffs),
        "famous_prompt_logit_diff": float(ioi_logit_diffs(model, [famous_ioi_prompt()])[0]),
        "oos_ioi_mean_logit_diff": float(oos_diffs.mean()),
        "oos_ioi_accuracy": float((oos_diffs > 0).mean()),
        "oos_ioi_n_prompts": len(oos_diffs),
        "oos_ioi_by_template": by_template,
    }


@torch.no_grad()
def text_loss(model: HookedTransformer, tokens: np.ndarray, n_ctx: int = 128, n_windows: int = 64) -> float:
    """Mean loss over up to ``n_windows`` consecutive windows of held-out text."""
    n_windows = min(n_windows, len(tokens) // n_ctx)
    if n_windows == 0:
        raise ValueError(f"text_loss needs at least {n_ctx} held-out tokens, got {len(tokens)}")
    windows = torch.from_numpy(tokens[: n_windows * n_ctx].astype(np.int64)).view(n_windows, n_ctx)
    windows[:, 0] = END_OF_TEXT_ID
    return float(model(windows.to(model.cfg.device), return_type="loss"))


BOS_PROMPT = "Claire and Mary went to the shops, then Mary gave a bottle of milk to"  # notebook 01's sentence


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties sharing their mean rank."""
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    return (starts + (counts - 1) / 2)[inverse]


def spearman(a, b) -> float:
    """Spearman's rank correlation (ties at their mean rank)."""
    return float(np.corrcoef(_ranks(np.asarray(a)), _ranks(np.asarray(b)))[0, 1])


@torch.no_grad()
def lesson_metrics(model: HookedTransformer, corpus: np.ndarray, names: list[str]) -> dict:
    """What notebooks 01 and 04 teach, measured on a language model (issue 36's thresholds):

    - ``bias_frequency_spearman``: rank correlation between b_U and the log frequency of each token of ``corpus``
      (token ids of the model's training text);
    - ``name_bias_ratio``: exp(b_U) of the two most frequent of ``names`` (single tokens after a space, each seen
      at least 5 times) over that of the two least frequent (geometric means), with those names and
      ``name_count_ratio``, how much more often the former occur (a bias ratio means nothing without it);
    - ``bos_logit_diff`` / ``no_bos_logit_diff``: logit(' Claire') - logit(' Mary') on BOS_PROMPT with and without
      the BOS;
    - ``first_repeat_loss`` / ``rest_of_repeat_loss``: on repeated random tokens (BOS, 50 tokens, the same 50), the
      loss of the first repeated token and the mean loss of the other 49.
    """
    ids, counts = np.unique(corpus, return_counts=True)
    b_U = model.b_U.detach().cpu().numpy()
    seen = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    singles = [(n, model.to_tokens(" " + n, prepend_bos=False)[0]) for n in names]
    ranked = sorted(((seen[t[0].item()], n, t[0].item()) for n, t in singles
                     if len(t) == 1 and seen.get(t[0].item(), 0) >= 5), reverse=True)
    top, bottom = ranked[:2], ranked[-2:]
    ratio = float(np.exp(np.mean([b_U[t] for _, _, t in top]) - np.mean([b_U[t] for _, _, t in bottom])))
    claire, mary = model.to_single_token(" Claire"), model.to_single_token(" Mary")
    diffs = {}
    for key, bos in (("bos_logit_diff", True), ("no_bos_logit_diff", False)):
        logits = model(model.to_tokens(BOS_PROMPT, prepend_bos=bos))[0, -1]
        diffs[key] = float(logits[claire] - logits[mary])
    tokens = repeated_random_tokens(model, seq_len=50, batch=20)
    losses = -model(tokens).log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0].mean(0)
    return {
        "bias_frequency_spearman": spearman(b_U[ids], np.log(counts)),
        "name_bias_ratio": ratio,
        "name_bias_names": [n for _, n, _ in top + bottom],
        "name_count_ratio": float(np.mean([c for c, _, _ in top]) / np.mean([c for c, _, _ in bottom])),
        **diffs,
        "first_repeat_loss": float(losses[50]),
        "rest_of_repeat_loss": float(losses[51:].mean()),
    }


@torch.no_grad()
def othello_metrics(model: HookedTransformer, n_games: int = 1000) -> dict:
    """Share of positions where the top-1 move is legal, on held-out random games."""
    games = generate_games(n_games, seed=987_654)  # never a training seed (those are 1_000_003 * k + block)
    tokens = torch.from_numpy(to_token(games))
    logits = model(tokens[:, :N_CTX])
    return {"top1_legal_rate": top1_legal_rate(logits, legal_move_masks(games)), "n_held_out_games": n_games}


def fit_board_probes(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear probes "empty / mine / theirs", one per slice of x, in closed form (deterministic).

    x: [n_probes, n, d_model] activations; y: [n, 64] labels in {0, 1, 2}. Returns W [n_probes, d_model, 64, 3]
    and b [n_probes, 64, 3] (in x's dtype) acting on the raw activations; the prediction is the argmax of x @ W + b,
    and (x @ W + b)[mine] - (x @ W + b)[theirs] is the probe's gap. Notebook 06 fits a softmax regression with
    200 AdamW steps on random batches; this is its closed-form relative, the ridge regression of the one-hot
    labels of notebook 08 (helpers.othello_research.fit_linear_probes): no randomness, no iterations.
    """
    W, b = fit_linear_probes(x, F.one_hot(y, 3).flatten(1), ridge, dtype=x.dtype)
    return W.unflatten(-1, (64, 3)), b.unflatten(-1, (64, 3))


@torch.no_grad()
def othello_probe_metrics(model: HookedTransformer) -> dict:
    """Notebook 06's linear probe and interventions, with :func:`fit_board_probes` as the probe fit.

    Probe: on ``generate_games(300, seed=11)``, one probe per depth (the residual stream before each
    layer and after the last), fitted on the first 200 games, scored on the 100 others; its accuracy on
    occupied squares (mine or theirs?) at each depth and the best depth. Interventions, at the position of
    the prediction, on 200 (test game, position 10..49, square of the opponent) drawn with
    ``default_rng(0)`` among those whose flip to "mine" changes the legal moves:

    - ``probe``: after ``n_layers // 2`` layers, add ``(T - e) d / |d|^2`` (d = w_mine - w_theirs of the
      square in that depth's probe, e the probe's gap ``r.d + b_mine - b_theirs``), which sets the gap to
      T, the mean gap of the square on the training positions where it is mine: the probe then reads
      "mine" as it does on real "mine" squares, whatever it read before;
    - ``mean``: at the input of every layer from ``n_layers // 2`` on, add the difference of the mean
      residual vectors of the square's two states, mine minus theirs (training games, that depth);
    - ``random``: the ``mean`` edit with each vector replaced by a random one of the same norm (seed 1).

    For each edit and without one (``none``): the share of top-1 moves legal on the edited board and the
    mean probability on the moves that become legal (``p_gained``) and illegal (``p_lost``), over the 200
    cases and, for ``none`` and ``probe``, split by whether the probe read the square as the opponent's
    before the edit (``_read`` / ``_misread``; ``intervention_read_share`` is the first group's share);
    ``intervention_ideal_p_gained`` is what a model spreading its probability evenly over the legal moves
    of the edited board would put on the moves that become legal (the ceiling of ``p_gained``).
    """
    device, n_layers = model.cfg.device, model.cfg.n_layers
    games = generate_games(300, seed=11)
    n_train = 200
    tokens = torch.from_numpy(to_token(games))[:, :N_CTX].to(device)
    targets = relative_board_states(games, as_tensor=True)[:, :N_CTX].to(device)  # [300, 59, 64]
    names = [utils.get_act_name("resid_pre", layer) for layer in range(n_layers)]
    names.append(utils.get_act_name("resid_post", n_layers - 1))
    _, cache = model.run_with_cache(tokens, names_filter=names)
    resid = torch.stack([cache[name] for name in names])  # [n_layers + 1, 300, 59, d_model]
    x_train, y_train = resid[:, :n_train].flatten(1, 2), targets[:n_train].flatten(0, 1)
    W, b = fit_board_probes(x_train, y_train)
    y_test = targets[n_train:].flatten(0, 1)
    pred = (torch.einsum("pnd,pdsc->pnsc", resid[:, n_train:].flatten(1, 2), W) + b[:, None]).argmax(-1)
    occupied = y_test > 0
    accuracy = (pred == y_test).float()[:, occupied].mean(1)  # [n_layers + 1]
    best = int(accuracy.argmax())
    one_hot = F.one_hot(y_train, 3).float()  # [n, 64, 3]
    means = torch.einsum("pnd,nsc->pdsc", x_train, one_hot) / one_hot.sum(0)  # [n_layers + 1, d_model, 64, 3]

    depth = n_layers // 2
    cases = flip_cases(games, targets, first_game=n_train)
    g_idx, t_idx, sq_idx = cases.game.to(device), cases.pos.to(device), cases.square.to(device)
    legal, gained, lost = cases.legal, cases.gained, cases.lost
    dirs = (W[depth][:, sq_idx, MINE] - W[depth][:, sq_idx, THEIRS]).T  # [200, d_model]
    gaps = (resid[depth, g_idx, t_idx] * dirs).sum(-1) + b[depth, sq_idx, MINE] - b[depth, sq_idx, THEIRS]
    all_dirs = W[depth][:, :, MINE] - W[depth][:, :, THEIRS]  # [d_model, 64]
    all_gaps = x_train[depth] @ all_dirs + b[depth, :, MINE] - b[depth, :, THEIRS]  # [n, 64]
    is_mine = (y_train == MINE).float()  # [n, 64]
    target_gap = (all_gaps * is_mine).sum(0) / is_mine.sum(0)  # [64]: the gap of a square the probe should read mine
    probe_edit = {depth: (target_gap[sq_idx] - gaps)[:, None] * dirs / dirs.norm(dim=-1, keepdim=True) ** 2}
    probe_reading = (torch.einsum("nd,dnc->nc", resid[depth, g_idx, t_idx], W[depth][:, sq_idx])
                     + b[depth, sq_idx]).argmax(-1)  # [200]
    read = (probe_reading == THEIRS).cpu().numpy()  # the probe read the square correctly before the edit
    mean_edit = {k: (means[k][:, sq_idx, MINE] - means[k][:, sq_idx, THEIRS]).T for k in range(depth, n_layers)}
    generator = torch.Generator().manual_seed(1)
    random_edit = {}
    for k, delta in mean_edit.items():
        noise = torch.randn(delta.shape, generator=generator).to(device)
        random_edit[k] = noise * delta.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True)
    rows = torch.arange(200, device=device)

    def edit(resid_stream, hook, delta):
        resid_stream[rows, t_idx] += delta
        return resid_stream

    metrics = {"probe_occupied_accuracy": [round(float(a), 4) for a in accuracy], "probe_best_depth": best,
               "probe_best_occupied_accuracy": float(accuracy[best]), "intervention_depth": depth,
               "intervention_ideal_p_gained": float((gained.sum(-1) / legal.sum(-1)).mean()),
               "intervention_read_share": float(read.mean())}
    for name, deltas in [("none", {}), ("probe", probe_edit), ("mean", mean_edit), ("random", random_edit)]:
        hooks = [(names[k], lambda r, hook, d=delta: edit(r, hook, d)) for k, delta in deltas.items()]
        probs = model.run_with_hooks(tokens[g_idx], fwd_hooks=hooks)[rows, t_idx].softmax(-1).cpu().numpy()
        metrics[f"intervention_{name}_top1_legal"] = float(legal[np.arange(200), probs.argmax(-1)].mean())
        metrics[f"intervention_{name}_p_gained"] = float((probs * gained).sum(-1).mean())
        metrics[f"intervention_{name}_p_lost"] = float((probs * lost).sum(-1).mean())
        if name in ("none", "probe"):
            for group, rows_in in [("read", read), ("misread", ~read)]:
                metrics[f"intervention_{name}_{group}_p_gained"] = float((probs * gained).sum(-1)[rows_in].mean())
                metrics[f"intervention_{name}_{group}_p_lost"] = float((probs * lost).sum(-1)[rows_in].mean())
    return metrics
