"""Head detector: how closely each attention head's pattern matches a pattern we expect.

``detect_head(model, seq, "previous_token_head")`` scores every head of the model on one prompt (or the mean over a
list of prompts): a head that attends as the expected pattern says scores near 1. The built-in patterns, each a
lower-triangular [pos pos] matrix (query position, key position) built from the prompt's tokens:

- "previous_token_head": every position attends to the one before it;
- "duplicate_token_head": every position attends to the earlier occurrences of its own token;
- "induction_head": every position attends to the token *after* an earlier occurrence of its own token.

Two scores: "mul" (default), the fraction of the head's attention that falls where the pattern has a 1;
"abs", 1 minus the summed absolute difference per query position (rounded to 3 decimals), which also rewards
predicting how much attention goes where (1: perfect match, down to -1).

Same signature, patterns and scores as the classic ``transformer_lens.head_detector`` (written from scratch).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from jaxtyping import Float, Int

from helpers import checks, utils

#: The built-in patterns, and the two scores (the classic type aliases, for annotations).
HeadName = Literal["previous_token_head", "duplicate_token_head", "induction_head"]
ErrorMeasure = Literal["mul", "abs"]
HEAD_NAMES: tuple[HeadName, ...] = get_args(HeadName)
ERROR_MEASURES: tuple[ErrorMeasure, ...] = get_args(ErrorMeasure)


def get_previous_token_head_detection_pattern(tokens: Int[torch.Tensor, "1 pos"]) -> Float[torch.Tensor, "pos pos"]:
    """1 at (q, q - 1): each position looks at the previous one."""
    n = tokens.shape[-1]
    return torch.diag(torch.ones(n - 1), diagonal=-1)


def get_duplicate_token_head_detection_pattern(tokens: Int[torch.Tensor, "1 pos"]) -> Float[torch.Tensor, "pos pos"]:
    """1 at (q, k) for k < q with the same token: each position looks at the earlier copies of its token."""
    t = tokens.reshape(-1).cpu()
    same = (t[:, None] == t[None, :]).float()
    return torch.tril(same, diagonal=-1)


def get_induction_head_detection_pattern(tokens: Int[torch.Tensor, "1 pos"]) -> Float[torch.Tensor, "pos pos"]:
    """1 at (q, k + 1) for every earlier copy k of token q: each position looks at what followed its token."""
    duplicate = get_duplicate_token_head_detection_pattern(tokens)
    shifted = torch.zeros_like(duplicate)
    shifted[:, 1:] = duplicate[:, :-1]
    return torch.tril(shifted)


def get_supported_heads() -> None:
    """Print the names of the built-in patterns."""
    print(f"Supported heads: {list(HEAD_NAMES)}")


def compute_head_attention_similarity_score(attention_pattern: Float[torch.Tensor, "pos pos"],
                                            detection_pattern: Float[torch.Tensor, "pos pos"], *,
                                            exclude_bos: bool, exclude_current_token: bool,
                                            error_measure: ErrorMeasure) -> float:
    """The score of one head's pattern [query key] against ``detection_pattern`` (the inputs are not modified)."""
    if attention_pattern.ndim != 2 or attention_pattern.shape[0] != attention_pattern.shape[1]:
        raise ValueError(f"attention_pattern must be a square [pos pos] matrix, got shape "
                         f"{tuple(attention_pattern.shape)}.")
    keep = torch.ones_like(attention_pattern)
    if exclude_bos:
        keep[:, 0] = 0
    if exclude_current_token:
        keep.fill_diagonal_(0)
    detection_pattern = detection_pattern.to(attention_pattern)
    if error_measure == "mul":
        attention = attention_pattern * keep
        return ((attention * detection_pattern).sum() / attention.sum()).item()
    abs_diff = (attention_pattern - detection_pattern).abs() * keep
    return 1 - round((abs_diff.sum() / len(abs_diff)).item(), 3)


def _layer_to_heads(model, heads) -> dict[int, list[int]]:
    cfg = model.cfg
    if heads is None:
        return {layer: list(range(cfg.n_heads)) for layer in range(cfg.n_layers)}
    if isinstance(heads, dict):
        pairs = [(layer, head) for layer, hs in heads.items() for head in hs]
    else:
        pairs = [tuple(h) for h in heads]
    for layer, head in pairs:
        if not (0 <= layer < cfg.n_layers and 0 <= head < cfg.n_heads):
            raise ValueError(f"heads: ({layer}, {head}) is not a head of this model ({cfg.n_layers} layers of "
                             f"{cfg.n_heads} heads); give (layer, head) pairs or {{layer: [heads]}}.")
    out: dict[int, list[int]] = {}
    for layer, head in pairs:
        out.setdefault(layer, []).append(head)
    return out


def detect_head(model, seq: str | list[str], detection_pattern: torch.Tensor | HeadName,
                heads: list[tuple[int, int]] | dict[int, list[int]] | None = None, cache=None, *,
                exclude_bos: bool = False, exclude_current_token: bool = False,
                error_measure: ErrorMeasure = "mul") -> Float[torch.Tensor, "n_layers n_heads"]:
    """The score [n_layers n_heads] of every head (or of ``heads`` only; the others get -1) on the prompt ``seq``.

    detection_pattern: one of ``HEAD_NAMES``, or a lower-triangular [pos pos] tensor for the tokens of ``seq``
        (BOS included when the model prepends one).
    seq: a prompt, or a list of prompts: then the scores are averaged over the prompts (each gets its own
        built-in pattern; a tensor pattern must fit every prompt).
    cache: the prompt's ActivationCache, to skip the forward pass (one prompt only).
    exclude_bos, exclude_current_token: leave the attention to the first token, or to the query's own
        position, out of the comparison.
    error_measure: "mul" or "abs" (see the module docstring).
    """
    if error_measure not in ERROR_MEASURES:
        raise ValueError(f"error_measure={error_measure!r}; pass one of {ERROR_MEASURES}.")
    if isinstance(detection_pattern, str) and detection_pattern not in HEAD_NAMES:
        raise ValueError(f"detection_pattern={detection_pattern!r} is not a built-in pattern; pass one of "
                         f"{HEAD_NAMES}, or a [pos pos] tensor.")
    options = dict(heads=heads, exclude_bos=exclude_bos, exclude_current_token=exclude_current_token,
                   error_measure=error_measure)
    if isinstance(seq, list):
        if cache is not None:
            raise ValueError("cache: give a cache for one prompt only (seq is a list of prompts).")
        return torch.stack([detect_head(model, s, detection_pattern, **options) for s in seq]).mean(0)
    cfg = model.cfg
    tokens = model.to_tokens(seq).to(cfg.device)
    n = tokens.shape[-1]
    if not 1 < n < cfg.n_ctx:
        raise ValueError(f"seq has {n} tokens; detect_head needs 2 to {cfg.n_ctx - 1} (the model's context is "
                         f"{cfg.n_ctx}). Use a shorter prompt.")
    if isinstance(detection_pattern, str):
        pattern = globals()[f"get_{detection_pattern}_detection_pattern"](tokens)
    else:
        pattern = detection_pattern
        if tuple(pattern.shape) != (n, n) or not torch.equal(pattern, torch.tril(pattern)):
            raise ValueError(f"detection_pattern must be a lower-triangular [{n} {n}] tensor for the {n} tokens of "
                             f"seq (BOS included), got shape {tuple(pattern.shape)}"
                             f"{'' if tuple(pattern.shape) != (n, n) else ', not lower-triangular'}.")
    if error_measure == "mul" and not set(pattern.unique().tolist()) <= {0, 1}:
        checks.warn("detection_pattern has values other than 0 and 1, which error_measure='mul' reads as "
                    "weights; error_measure='abs' compares amounts of attention.")
    layer_to_heads = _layer_to_heads(model, heads)
    if cache is None:
        names = [utils.get_act_name("pattern", layer) for layer in layer_to_heads]
        _, cache = model.run_with_cache(tokens, names_filter=names)
    scores = -torch.ones(cfg.n_layers, cfg.n_heads, dtype=cfg.dtype)
    for layer, layer_heads in layer_to_heads.items():
        patterns = cache["pattern", layer]
        patterns = patterns[0] if patterns.ndim == 4 else patterns  # [head query key]
        for head in layer_heads:
            scores[layer, head] = compute_head_attention_similarity_score(
                patterns[head], pattern, exclude_bos=exclude_bos, exclude_current_token=exclude_current_token,
                error_measure=error_measure)
    return scores
