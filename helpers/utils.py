"""Small utilities with the classic names: hook names, activation functions, devices, losses, sampling,
test_prompt, download_file_from_hf."""

from __future__ import annotations

import difflib
import os
import re
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int

from helpers.hub import download_file_from_hf as download_file_from_hf  # TransformerLens' place for it

# Short names accepted by get_act_name and by ActivationCache["short", layer].
ACT_ALIASES = {
    "a": "pattern", "attn": "pattern", "pattern": "pattern",
    "attn_logits": "attn_scores", "attn_scores": "attn_scores",
    "k": "k", "q": "q", "v": "v", "z": "z", "result": "result", "key": "k", "query": "q", "value": "v",
    "pre": "pre", "post": "post", "mid": "mid", "mlp_pre": "pre", "mlp_post": "post", "mlp_mid": "mid",
    "resid_pre": "resid_pre", "resid_mid": "resid_mid", "resid_post": "resid_post",
    "attn_out": "attn_out", "mlp_out": "mlp_out", "mlp_in": "mlp_in", "attn_in": "attn_in",
    "q_input": "q_input", "k_input": "k_input", "v_input": "v_input",
    "scale": "scale", "normalized": "normalized", "embed": "embed", "pos_embed": "pos_embed",
}
_ATTN = {"q", "k", "v", "z", "pattern", "attn_scores", "result"}
_MLP = {"pre", "post", "mid"}
_BLOCK = {"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "mlp_in", "attn_in",
          "q_input", "k_input", "v_input"}


def get_act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """Full hook name from a short one: ``get_act_name("pattern", 0) == "blocks.0.attn.hook_pattern"``.

    Also accepts ``"k6"``-style names (``"k6" -> blocks.6.attn.hook_k``, ``"scale4ln1"``) and, for
    ``scale`` / ``normalized``, a layer_type among ``ln1`` (the default), ``ln2`` (``layer=None`` means
    ``ln_final``). Full names are returned unchanged.
    """
    match = re.fullmatch(r"([a-z_]+?)(\d+)([a-z][a-z0-9]*)?", name)
    if layer is None and match and match.group(1) in ACT_ALIASES:
        name, layer, layer_type = match.group(1), int(match.group(2)), match.group(3) or layer_type
    if "." in name or name.startswith("hook_"):
        return name
    if name not in ACT_ALIASES:
        close = difflib.get_close_matches(name, list(ACT_ALIASES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown activation name {name!r}.{hint} Known short names: {sorted(ACT_ALIASES)}; "
                         "full hook names (blocks.0.attn.hook_pattern) are accepted too.")
    act = ACT_ALIASES[name]
    if act in ("embed", "pos_embed"):
        return f"hook_{act}"
    if act in ("scale", "normalized"):
        if layer is None:
            return f"ln_final.hook_{act}"
        return f"blocks.{layer}.{layer_type or 'ln1'}.hook_{act}"
    if layer is None:
        raise ValueError(f"Activation {name!r} lives in a block: give its layer.")
    if act in _ATTN:
        return f"blocks.{layer}.attn.hook_{act}"
    if act in _MLP:
        return f"blocks.{layer}.mlp.hook_{act}"
    if act in _BLOCK:
        return f"blocks.{layer}.hook_{act}"
    raise ValueError(f"Cannot place activation {name!r}.")  # pragma: no cover


def to_numpy(tensor) -> np.ndarray:
    """A tensor, list or number as a numpy array (detached, on the CPU)."""
    if isinstance(tensor, np.ndarray):
        return tensor
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().cpu().numpy()
    return np.array(tensor)


def transpose(tensor: Float[torch.Tensor, "... a b"]) -> Float[torch.Tensor, "... b a"]:
    """Swap the last two dims (``tensor.mT``)."""
    return tensor.transpose(-1, -2)


def override_or_use_default_value(default_flag, override=None):
    """``override`` if it is given (not None), else ``default_flag``: e.g. ``prepend_bos`` against the config's
    ``default_prepend_bos``."""
    return default_flag if override is None else override


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh approximation of GELU."""
    return F.gelu(x, approximate="tanh")


def solu(x: torch.Tensor) -> torch.Tensor:
    """SoLU, x * softmax(x) over the neurons (followed by a LayerNorm in the MLP)."""
    return x * F.softmax(x, dim=-1)


def _fixed_computation(device: str) -> torch.Tensor:
    """A small attention-and-LayerNorm computation with fixed inputs, run on `device`: [4 16 32] on the CPU."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 16, 32, generator=generator).to(device)
    w = torch.randn(32, 32, generator=generator).to(device) / 32**0.5
    scores = (x @ w) @ x.transpose(-1, -2) / 32**0.5
    causal = torch.ones(16, 16, device=device).tril().bool()
    pattern = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
    return F.layer_norm(pattern @ x, (32,)).cpu()


def _agrees_with_cpu(device: str) -> bool:
    """Whether `device` gives the CPU's result on the fixed computation (up to float32 rounding)."""
    return torch.allclose(_fixed_computation(device), _fixed_computation("cpu"), atol=1e-4, rtol=1e-4)


def get_device() -> str:
    """The device for new models: "cpu", unless the environment variable COURSE_DEVICE asks for "cuda",
    "mps" or "auto" (the GPU if there is one). A requested device is used only if it is available and
    agrees with the CPU on a fixed computation (Apple MPS has been seen to invert an IOI logit difference);
    otherwise a warning says why and the CPU is used. The choice is printed when COURSE_DEVICE is set."""
    requested = os.environ.get("COURSE_DEVICE", "cpu").strip().lower()
    if requested == "cpu":
        return "cpu"
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    available = {"cuda": torch.cuda.is_available(), "mps": mps}
    if requested == "auto":
        device = next((name for name, ok in available.items() if ok), "cpu")
    elif requested in available:
        device = requested
    else:
        raise ValueError(f"COURSE_DEVICE={requested!r}: expected cpu, cuda, mps or auto (or leave it unset for cpu)")
    if device != "cpu" and not available[device]:
        warnings.warn(f"COURSE_DEVICE={requested}: {device} is not available here; using cpu", stacklevel=2)
        device = "cpu"
    if device != "cpu" and not _agrees_with_cpu(device):
        warnings.warn(f"COURSE_DEVICE={requested}: {device} disagrees with the CPU on a fixed computation; "
                      "using cpu", stacklevel=2)
        device = "cpu"
    print(f"Appareil : {device} (COURSE_DEVICE={requested}"
          + (", résultats vérifiés contre le CPU)" if device != "cpu" else ")"))
    return device


def lm_cross_entropy_loss(logits: Float[torch.Tensor, "batch pos d_vocab"],
                          tokens: Int[torch.Tensor, "batch pos"], per_token: bool = False) -> torch.Tensor:
    """Cross-entropy of predicting token t+1 from position t: a scalar, or [batch pos-1] if ``per_token``."""
    # Half-precision logits are upcast to float32; float64 ones stay float64.
    log_probs = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    correct = log_probs[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    return -correct if per_token else -correct.mean()


def sample_logits(logits: Float[torch.Tensor, "batch d_vocab"], top_k: int | None = None,
                  top_p: float | None = None, temperature: float = 1.0,
                  generator: torch.Generator | None = None) -> Int[torch.Tensor, " batch"]:
    """Sample one token per row with temperature, top-k and nucleus (top-p) filtering."""
    logits = logits / temperature
    if top_k is not None:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum - sorted_logits.softmax(-1) > top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def test_prompt(prompt: str, answer: str, model, prepend_space_to_answer: bool = True,
                print_details: bool = True, prepend_bos: bool | None = None, top_k: int = 10) -> None:
    """Print how the model tokenizes ``prompt + answer``, then the rank, logit and probability of each
    answer token and the model's top-k predictions at that point."""
    if prepend_space_to_answer and not answer.startswith(" "):
        answer = " " + answer
    prompt_tokens = model.to_tokens(prompt, prepend_bos=prepend_bos)
    answer_tokens = model.to_tokens(answer, prepend_bos=False)
    tokens = torch.cat([prompt_tokens, answer_tokens], dim=1)
    n_prompt = prompt_tokens.shape[1]
    print("Tokenized prompt:", model.to_str_tokens(prompt_tokens[0]))
    print("Tokenized answer:", model.to_str_tokens(answer_tokens[0]))
    with torch.no_grad():
        logits = model(tokens)[0]
    probs = logits.softmax(-1)
    ranks = []
    for i, token in enumerate(answer_tokens[0].tolist()):
        pos = n_prompt + i - 1  # the position that predicts answer token i
        rank = int((logits[pos] > logits[pos, token]).sum())  # 0 = the model's top prediction
        ranks.append(rank)
        print(f"Performance on answer token:\nRank: {rank:<8} Logit: {logits[pos, token]:5.2f} "
              f"Prob: {probs[pos, token]:6.2%} Token: |{model.to_string(token)}|")
        if print_details:
            top = probs[pos].topk(top_k)
            for j, (p, t) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True)):
                print(f"Top {j}th token. Logit: {logits[pos, t]:5.2f} Prob: {p:6.2%} "
                      f"Token: |{model.to_string(t)}|")
    answer_str_tokens = model.to_str_tokens(answer_tokens[0])
    print(f"Ranks of the answer tokens: {list(zip(answer_str_tokens, ranks, strict=True))}")


test_prompt.__test__ = False  # not a pytest test
