"""Evaluations of a model, all offline.

The classic ``transformer_lens.evals`` names: ``induction_loss``, the rough induction test of the TransformerLens
demo (the loss on the second half of random tokens repeated twice: a model with induction heads predicts it well);
``ioi_eval``, the Indirect Object Identification task on the course's generated IOI prompts (the held-out test
templates); ``sanity_check``, the loss on one paragraph of English.

The metrics of the shipped course models, run by the tests and written to data/models/*/metrics.json: induction
(losses on repeated random tokens, each head's induction score), IOI (logit difference on the prompt sets of
helpers.ioi), the loss on held-out text, and Othello-GPT's rate of legal moves.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from helpers import utils
from helpers.ioi import IOIPrompt, famous_ioi_prompt, ioi_eval_prompts
from helpers.model import HookedTransformer
from helpers.othello import N_CTX, generate_games, legal_move_masks, to_token, top1_legal_rate
from helpers.tokenizer import END_OF_TEXT_ID

RANDOM_LOW, RANDOM_HIGH = 1000, 10000  # random tokens are drawn from ids 1000..9999 (training uses them too)
SANITY_TEXT = ("Many important transition points in the history of science have been moments when science "
               "'zoomed in.' At these points, we develop a visualization or tool that allows us to see the world in "
               "a new level of detail, and a new field of science develops to study the world through this lens.")


@torch.no_grad()
def sanity_check(model: HookedTransformer) -> torch.Tensor:
    """The model's loss on a paragraph of English: below 5 the model is probably fine, above 7 something is wrong
    (for models trained on English web text; the course models see generated stories)."""
    return model(SANITY_TEXT, return_type="loss")


@torch.no_grad()
def induction_loss(model: HookedTransformer, tokenizer=None, batch_size: int = 4, subseq_len: int = 384,
                   prepend_bos: bool | None = None, device=None) -> torch.Tensor:
    """Mean loss on the second half of ``batch_size`` sequences of ``subseq_len`` random tokens repeated twice;
    the first token is BOS unless ``prepend_bos`` is False (default: the model's ``cfg.default_prepend_bos``).
    The random tokens come from torch's global generator (seed it for a fixed batch). A model without induction
    heads scores about ln(9000) = 9.1 or more; copying scores near 0. The classic function draws ids 100 to
    19999; here they are 1000 to 9999, the ids the course models saw repeated in training (outside the ids of
    their corpus, the course models' logits carry a -100 bias).

    subseq_len is cut to n_ctx // 2 when 2 * subseq_len does not fit the model's context (with a warning).
    """
    n_ctx = model.cfg.n_ctx
    if 2 * subseq_len > n_ctx:
        warnings.warn(f"induction_loss: subseq_len={subseq_len} repeated twice does not fit this model's context "
                      f"(n_ctx={n_ctx}); using subseq_len={n_ctx // 2}.", stacklevel=3)  # 3: past torch.no_grad
        subseq_len = n_ctx // 2
    device = model.cfg.device if device is None else device
    first_half = torch.randint(RANDOM_LOW, RANDOM_HIGH, (batch_size, subseq_len))
    tokens = first_half.repeat(1, 2).to(device)
    if model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos:
        tokens[:, 0] = (tokenizer or model.tokenizer).bos_token_id
    loss = utils.lm_cross_entropy_loss(model(tokens), tokens, per_token=True)  # [batch 2*subseq_len-1]
    return loss[:, subseq_len:].mean()  # the predictions of the second half's tokens 2.. (the first is random)


@torch.no_grad()
def ioi_eval(model: HookedTransformer, dataset: Sequence[IOIPrompt] | None = None, batch_size: int = 8,
             num_samples: int = 1000) -> dict[str, float]:
    """Mean logit difference (indirect object minus subject, at the last position) and accuracy (share of prompts
    where it is positive) on IOI prompts: ``dataset`` (a list of ``IOIPrompt``) or ``num_samples`` of the course's
    held-out test prompts (``ioi.ioi_eval_prompts``). Prompts are right-padded into batches of ``batch_size``;
    the causal mask keeps padding from changing the positions read."""
    prompts = list(ioi_eval_prompts(num_samples, seed=1)) if dataset is None else list(dataset)
    if not prompts:
        raise ValueError("ioi_eval: the dataset is empty; pass IOIPrompt objects (ioi.ioi_eval_prompts).")
    diffs = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        tokens = [model.to_tokens(p.prompt)[0] for p in chunk]
        lengths = torch.tensor([len(t) for t in tokens], device=model.cfg.device)
        padded = torch.stack([F.pad(t, (0, int(lengths.max()) - len(t))) for t in tokens])
        logits = model(padded)[torch.arange(len(chunk)), lengths - 1]  # [batch d_vocab]
        io = torch.tensor([model.to_single_token(p.io) for p in chunk], device=logits.device)
        subject = torch.tensor([model.to_single_token(p.subject) for p in chunk], device=logits.device)
        diffs.append(logits.gather(1, io[:, None]) - logits.gather(1, subject[:, None]))
    diffs = torch.cat(diffs).flatten()
    return {"Logit Difference": diffs.mean().item(), "Accuracy": (diffs > 0).float().mean().item()}



def repeated_random_tokens(model: HookedTransformer, seq_len: int = 50, batch: int = 20,
                           seed: int = 0) -> torch.Tensor:
    """BOS + seq_len random tokens (ids 1000..9999) + the same tokens again: [batch 1+2*seq_len]."""
    generator = torch.Generator().manual_seed(seed)
    random = torch.randint(RANDOM_LOW, RANDOM_HIGH, (batch, seq_len), generator=generator)
    bos = torch.full((batch, 1), model.tokenizer.bos_token_id)
    return torch.cat([bos, random, random], dim=1).to(model.cfg.device)


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


def _logit_diff(model: HookedTransformer, prompt) -> float:
    logits = model(prompt.prompt)[0, -1]
    return float(logits[model.to_single_token(prompt.io)] - logits[model.to_single_token(prompt.subject)])


@torch.no_grad()
def ioi_metrics(model: HookedTransformer, n_prompts: int = 200, split: str = "test") -> dict:
    """Logit difference (indirect object minus subject) on held-out IOI prompts (and, for the test split,
    on the famous prompt). The validation split's keys start with ``val_``."""
    diffs = np.array([_logit_diff(model, p) for p in ioi_eval_prompts(n_prompts, seed=1, split=split)])
    if split == "validation":
        return {"val_ioi_mean_logit_diff": float(diffs.mean()), "val_ioi_accuracy": float((diffs > 0).mean())}
    return {
        "ioi_mean_logit_diff": float(diffs.mean()),
        "ioi_accuracy": float((diffs > 0).mean()),
        "ioi_n_prompts": len(diffs),
        "famous_prompt_logit_diff": _logit_diff(model, famous_ioi_prompt()),
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


@torch.no_grad()
def othello_metrics(model: HookedTransformer, n_games: int = 1000) -> dict:
    """Share of positions where the top-1 move is legal, on held-out random games."""
    games = generate_games(n_games, seed=987_654)  # never a training seed (those are 1_000_003 * k + block)
    tokens = torch.from_numpy(to_token(games))
    logits = model(tokens[:, :N_CTX])
    return {"top1_legal_rate": top1_legal_rate(logits, legal_move_masks(games)), "n_held_out_games": n_games}
