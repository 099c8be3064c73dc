"""Quick evaluations with the classic ``transformer_lens.evals`` names, all offline.

``induction_loss`` is the rough induction test of the TransformerLens demo: the loss on the second half of random
tokens repeated twice (a model with induction heads predicts it well). ``ioi_eval`` measures the Indirect Object
Identification task on the course's generated IOI prompts (the held-out test templates). ``sanity_check`` is the
loss on one paragraph of English.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from helpers import utils
from helpers.corpus import IOIPrompt, ioi_eval_prompts

RANDOM_LOW, RANDOM_HIGH = 1000, 10000  # random tokens are drawn from ids 1000..9999 (training uses them too)
SANITY_TEXT = ("Many important transition points in the history of science have been moments when science "
               "'zoomed in.' At these points, we develop a visualization or tool that allows us to see the world in "
               "a new level of detail, and a new field of science develops to study the world through this lens.")


@torch.no_grad()
def sanity_check(model) -> torch.Tensor:
    """The model's loss on a paragraph of English: below 5 the model is probably fine, above 7 something is wrong
    (for models trained on English web text; the course models see generated stories)."""
    return model(SANITY_TEXT, return_type="loss")


@torch.no_grad()
def induction_loss(model, tokenizer=None, batch_size: int = 4, subseq_len: int = 384, prepend_bos: bool | None = None,
                   device=None) -> torch.Tensor:
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
def ioi_eval(model, dataset: Sequence[IOIPrompt] | None = None, batch_size: int = 8,
             num_samples: int = 1000) -> dict[str, float]:
    """Mean logit difference (indirect object minus subject, at the last position) and accuracy (share of prompts
    where it is positive) on IOI prompts: ``dataset`` (a list of ``IOIPrompt``) or ``num_samples`` of the course's
    held-out test prompts (``corpus.ioi_eval_prompts``). Prompts are right-padded into batches of ``batch_size``;
    the causal mask keeps padding from changing the positions read."""
    prompts = list(ioi_eval_prompts(num_samples, seed=1)) if dataset is None else list(dataset)
    if not prompts:
        raise ValueError("ioi_eval: the dataset is empty; pass IOIPrompt objects (corpus.ioi_eval_prompts).")
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
