"""Evaluations of a model, all offline: the classic ``transformer_lens.evals`` names.

``induction_loss``, the rough induction test of the TransformerLens demo (the loss on the second half of random
tokens repeated twice: a model with induction heads predicts it well); ``ioi_eval``, the Indirect Object
Identification task on the course's generated IOI prompts (the held-out test templates); ``sanity_check``, the
loss on one paragraph of English; and ``repeated_random_tokens``, the batch notebook 04 studies induction on.

The metrics of the shipped course models (written to data/models/*/metrics.json) are in training/metrics.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from helpers import utils
from helpers.ioi import IOIPrompt, ioi_eval_prompts
from helpers.model import HookedTransformer

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
    if utils.override_or_use_default_value(model.cfg.default_prepend_bos, prepend_bos):
        tokens[:, 0] = (tokenizer or model.tokenizer).bos_token_id
    loss = utils.lm_cross_entropy_loss(model(tokens), tokens, per_token=True)  # [batch 2*subseq_len-1]
    return loss[:, subseq_len:].mean()  # the predictions of the second half's tokens 2.. (the first is random)


@torch.no_grad()
def ioi_logit_diffs(model: HookedTransformer, prompts, batch_size: int | None = None) -> np.ndarray:
    """Logit of the indirect object minus that of the subject after each prompt: [n_prompts].

    Prompts of the same number of tokens run together (no padding), at most ``batch_size`` at a time."""
    tokens = [model.to_tokens(p.prompt)[0] for p in prompts]
    answers = torch.tensor([[model.to_single_token(p.io), model.to_single_token(p.subject)] for p in prompts],
                           device=model.cfg.device)  # [n, 2]
    diffs = torch.empty(len(prompts))
    for length in sorted({len(t) for t in tokens}):
        same = [i for i, t in enumerate(tokens) if len(t) == length]
        for start in range(0, len(same), batch_size or len(same)):
            idx = same[start:start + (batch_size or len(same))]
            logits = model(torch.stack([tokens[i] for i in idx]))[:, -1]  # [batch, d_vocab]
            pair = logits.gather(-1, answers[idx])  # [batch, 2]
            diffs[idx] = (pair[:, 0] - pair[:, 1]).float().cpu()
    return diffs.numpy()


@torch.no_grad()
def ioi_eval(model: HookedTransformer, dataset: Sequence[IOIPrompt] | None = None, batch_size: int = 8,
             num_samples: int = 1000) -> dict[str, float]:
    """Mean logit difference (indirect object minus subject, at the last position) and accuracy (share of prompts
    where it is positive) on IOI prompts: ``dataset`` (a list of ``IOIPrompt``) or ``num_samples`` of the course's
    held-out test prompts (``ioi.ioi_eval_prompts``). Prompts of the same length run in batches of at most
    ``batch_size``."""
    prompts = list(ioi_eval_prompts(num_samples, seed=1)) if dataset is None else list(dataset)
    if not prompts:
        raise ValueError("ioi_eval: the dataset is empty; pass IOIPrompt objects (ioi.ioi_eval_prompts).")
    diffs = torch.from_numpy(ioi_logit_diffs(model, prompts, batch_size))
    return {"Logit Difference": diffs.mean().item(), "Accuracy": (diffs > 0).float().mean().item()}


def repeated_random_tokens(model: HookedTransformer, seq_len: int = 50, batch: int = 20,
                           seed: int = 0) -> torch.Tensor:
    """BOS + seq_len random tokens (ids 1000..9999) + the same tokens again: [batch 1+2*seq_len]."""
    generator = torch.Generator().manual_seed(seed)
    random = torch.randint(RANDOM_LOW, RANDOM_HIGH, (batch, seq_len), generator=generator)
    bos = torch.full((batch, 1), model.tokenizer.bos_token_id)
    return torch.cat([bos, random, random], dim=1).to(model.cfg.device)
