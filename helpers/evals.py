"""Metrics of the shipped course models, run by the tests and written to data/models/*/metrics.json.

Induction (losses on repeated random tokens, each head's induction score), IOI (logit difference on
the prompt sets of helpers.ioi), the loss on held-out text, and Othello-GPT's rate of legal moves.
"""

from __future__ import annotations

import numpy as np
import torch

from helpers.ioi import OUT_OF_STRUCTURE_TEMPLATES, famous_ioi_prompt, ioi_eval_prompts
from helpers.model import HookedTransformer
from helpers.othello import N_CTX, generate_games, legal_move_masks, to_token, top1_legal_rate
from helpers.tokenizer import END_OF_TEXT_ID

RANDOM_LOW, RANDOM_HIGH = 1000, 10000  # random tokens are drawn from ids 1000..9999 (training uses them too)


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


@torch.no_grad()
def _logit_diffs(model: HookedTransformer, prompts) -> np.ndarray:
    """Logit of the indirect object minus that of the subject after each prompt: [n_prompts].

    Prompts of the same number of tokens run in one batch (no padding)."""
    tokens = [model.to_tokens(p.prompt)[0] for p in prompts]
    answers = torch.tensor([[model.to_single_token(p.io), model.to_single_token(p.subject)] for p in prompts],
                           device=model.cfg.device)  # [n, 2]
    diffs = torch.empty(len(prompts))
    for length in sorted({len(t) for t in tokens}):
        idx = [i for i, t in enumerate(tokens) if len(t) == length]
        logits = model(torch.stack([tokens[i] for i in idx]))[:, -1]  # [batch, d_vocab]
        pair = logits.gather(-1, answers[idx])  # [batch, 2]
        diffs[idx] = (pair[:, 0] - pair[:, 1]).float().cpu()
    return diffs.numpy()


#: Out-of-structure prompts measured with the test split: 20 per template, 10 in each name order.
N_OUT_OF_STRUCTURE_PROMPTS = 20 * len(OUT_OF_STRUCTURE_TEMPLATES)


@torch.no_grad()
def ioi_metrics(model: HookedTransformer, n_prompts: int = 200, split: str = "test") -> dict:
    """Logit difference (indirect object minus subject) on held-out IOI prompts.

    The validation split's keys start with ``val_``. The test split comes with the famous prompt and with
    the out-of-structure prompts (keys ``oos_``; ``oos_ioi_by_template``: accuracy and mean logit difference
    of each template)."""
    diffs = _logit_diffs(model, ioi_eval_prompts(n_prompts, seed=1, split=split))
    if split == "validation":
        return {"val_ioi_mean_logit_diff": float(diffs.mean()), "val_ioi_accuracy": float((diffs > 0).mean())}
    oos = ioi_eval_prompts(N_OUT_OF_STRUCTURE_PROMPTS, seed=1, split="out_of_structure")
    oos_diffs = _logit_diffs(model, oos)
    by_template = {}
    for template in OUT_OF_STRUCTURE_TEMPLATES:
        d = oos_diffs[[p.template == template for p in oos]]
        by_template[template] = {"accuracy": float((d > 0).mean()), "mean_logit_diff": round(float(d.mean()), 4)}
    return {
        "ioi_mean_logit_diff": float(diffs.mean()),
        "ioi_accuracy": float((diffs > 0).mean()),
        "ioi_n_prompts": len(diffs),
        "famous_prompt_logit_diff": float(_logit_diffs(model, [famous_ioi_prompt()])[0]),
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


@torch.no_grad()
def othello_metrics(model: HookedTransformer, n_games: int = 1000) -> dict:
    """Share of positions where the top-1 move is legal, on held-out random games."""
    games = generate_games(n_games, seed=987_654)  # never a training seed (those are 1_000_003 * k + block)
    tokens = torch.from_numpy(to_token(games))
    logits = model(tokens[:, :N_CTX])
    return {"top1_legal_rate": top1_legal_rate(logits, legal_move_masks(games)), "n_held_out_games": n_games}
