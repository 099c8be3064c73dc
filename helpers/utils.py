"""Small utilities with the classic names: hook names, activation functions, devices, losses, sampling,
test_prompt, download_file_from_hf; ``Slice``, the selection syntax of ActivationCache's ``pos_slice``; tensor
checks and corners; the classic weight initialisations; tokenize_and_concatenate for a datasets.Dataset."""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import re

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import nn

from helpers import checks
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


def get_corner(tensor, n: int = 3):
    """The first ``n`` entries of every dim: a peek at a big tensor (or FactoredMatrix)."""
    return tensor[tuple(slice(n) for _ in range(tensor.ndim))]


def remove_batch_dim(tensor: Float[torch.Tensor, "1 ..."]) -> Float[torch.Tensor, "..."]:
    """``tensor[0]`` when its first dim has size 1 (a batch of one), else the tensor unchanged."""
    return tensor.squeeze(0) if tensor.shape[0] == 1 else tensor


def is_square(x: torch.Tensor) -> bool:
    """Whether ``x`` is a matrix (2 dims) with as many rows as columns."""
    return x.ndim == 2 and x.shape[0] == x.shape[1]


def is_lower_triangular(x: torch.Tensor) -> bool:
    """Whether ``x`` is a square matrix with zeros above its diagonal (a causal pattern's shape)."""
    return is_square(x) and bool((x.triu(diagonal=1) == 0).all())


#: What ``Slice`` accepts (see there).
SliceInput = int | tuple | slice | list | torch.Tensor | np.ndarray | None


class Slice:
    """A selection along one dimension, in the classic syntax of ``pos_slice``, ``batch_slice``...

    - an int picks one index, and the dimension goes (``tensor[i]``);
    - a tuple is a python slice: ``(k,)`` is ``[:k]``, ``(i, j)`` is ``[i:j]``, ``(i, j, step)`` is ``[i:j:step]``
      (a ``slice`` object is taken as it is);
    - a list, tensor or numpy array picks those indices, and the dimension stays (a 0-dim tensor or array
      picks one index, like an int);
    - None selects everything (the identity; it never adds a dimension).
    """

    def __init__(self, input_slice: SliceInput = None):
        if input_slice is None:
            self.slice, self.mode = slice(None), "identity"
        elif isinstance(input_slice, int | np.integer):
            self.slice, self.mode = int(input_slice), "int"
        elif isinstance(input_slice, tuple) and 1 <= len(input_slice) <= 3:
            self.slice, self.mode = slice(*input_slice), "slice"
        elif isinstance(input_slice, slice):
            self.slice, self.mode = input_slice, "slice"
        elif isinstance(input_slice, list | torch.Tensor | np.ndarray):
            self.slice, self.mode = to_numpy(input_slice), "array"
            if not (self.slice.size == 0 or np.issubdtype(self.slice.dtype, np.integer)
                    or self.slice.dtype == bool):
                raise ValueError(f"Slice: the indices must be integers (or a boolean mask), got dtype "
                                 f"{self.slice.dtype}.")
        else:
            raise ValueError(f"Slice takes None, an int, a tuple (stop,) / (start, stop) / (start, stop, step), a "
                             f"slice, or a list / tensor / array of indices; got {input_slice!r}.")

    def apply(self, tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """``tensor`` with this selection applied along ``dim`` (negative counts from the end)."""
        index = [slice(None)] * tensor.ndim
        index[dim] = self.slice
        return tensor[tuple(index)]

    def indices(self, max_ctx: int | None = None) -> np.ndarray:
        """The indices this selection keeps on a dimension of ``max_ctx`` entries, as a numpy array
        (``array([i])`` for an int, which needs no ``max_ctx``)."""
        if self.mode == "int":
            return np.array([self.slice], dtype=np.int64)
        if max_ctx is None:
            raise ValueError(f"Slice.indices needs max_ctx, the size of the dimension, to list the indices of "
                             f"{self.slice!r} (only an int selection does without).")
        return np.arange(max_ctx, dtype=np.int64)[self.slice]

    def __repr__(self) -> str:
        return f"Slice: {self.slice} Mode: {self.mode} "

    @classmethod
    def unwrap(cls, slice_input: Slice | SliceInput) -> Slice:
        """A Slice from a Slice or from what Slice accepts, except that an int becomes ``[int]``: the
        dimension stays."""
        if isinstance(slice_input, Slice):
            return slice_input
        return cls([slice_input] if isinstance(slice_input, int) else slice_input)


# ------------------------------------------------------------------------------------------------
# Initialisations with the classic fan conventions: W_in is [d_in d_out] and W_Q [head d_model d_head],
# where torch's own init functions expect [d_out d_in].
# ------------------------------------------------------------------------------------------------


def calc_fan_in_and_fan_out(tensor: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight in the classic layouts: [n] is a bias (fan_in 1), [d_in d_out] a matrix,
    [head d_model d_head] an attention weight (fan_in d_model, fan_out head * d_head)."""
    shape = tensor.shape
    if len(shape) == 1:
        return 1, shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 3:
        return shape[1], shape[0] * shape[2]
    raise ValueError(f"Fan in and fan out are defined for 1, 2 or 3 dims (bias, matrix, [head d_model d_head]); "
                     f"got shape {tuple(shape)}.")


def _fan(param: torch.Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode={mode!r}: pass 'fan_in' or 'fan_out'.")
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    return fan_in if mode == "fan_in" else fan_out


def init_xavier_uniform_(param: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Fill ``param`` in place from U(-a, a), a = gain sqrt(6 / (fan_in + fan_out)): std gain sqrt(2 / (fan_in +
    fan_out))."""
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return nn.init.uniform_(param, -bound, bound)


def init_xavier_normal_(param: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Fill ``param`` in place from N(0, std), std = gain sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    return nn.init.normal_(param, mean=0.0, std=gain * math.sqrt(2.0 / (fan_in + fan_out)))


def init_kaiming_uniform_(param: torch.Tensor, a: float = 0, nonlinearity: str = "relu", gain: float = 1.0,
                          mode: str = "fan_in") -> torch.Tensor:
    """Fill ``param`` in place with std g / sqrt(fan), uniformly: g is ``gain`` times torch's gain for the
    nonlinearity that precedes the weight (sqrt(2) for relu; ``a`` is leaky_relu's slope), fan its fan_in (or
    fan_out with ``mode="fan_out"``)."""
    bound = gain * nn.init.calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(param, mode))
    return nn.init.uniform_(param, -bound, bound)


def init_kaiming_normal_(param: torch.Tensor, a: float = 0, nonlinearity: str = "relu", gain: float = 1.0,
                         mode: str = "fan_in") -> torch.Tensor:
    """Fill ``param`` in place from N(0, g / sqrt(fan)), g and fan as in init_kaiming_uniform_."""
    std = gain * nn.init.calculate_gain(nonlinearity, a) * math.sqrt(1.0 / _fan(param, mode))
    return nn.init.normal_(param, mean=0.0, std=std)


def override_or_use_default_value(default_flag, override=None):
    """``override`` if it is given (not None), else ``default_flag``: e.g. ``prepend_bos`` against the config's
    ``default_prepend_bos``."""
    return default_flag if override is None else override


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh approximation of GELU."""
    return F.gelu(x, approximate="tanh")


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU, written with its constant sqrt(2 / pi) rounded (0.7978845608)."""
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


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
        checks.warn(f"COURSE_DEVICE={requested}: {device} is not available here; using cpu")
        device = "cpu"
    if device != "cpu" and not _agrees_with_cpu(device):
        checks.warn(f"COURSE_DEVICE={requested}: {device} disagrees with the CPU on a fixed computation; "
                    "using cpu")
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


def _concatenated_rows(texts: list[str], tokenizer, max_length: int, add_bos_token: bool,
                       pad_id: int) -> np.ndarray:
    """The texts tokenized, joined by EOS and cut into rows of ``max_length`` ids ([rows max_length], BOS
    first if ``add_bos_token``); the tokens past the last full row are dropped, unless there is not even one
    row: then the one row is padded with ``pad_id``."""
    seq_len = max_length - 1 if add_bos_token else max_length
    if not texts:
        return np.zeros((0, max_length), dtype=np.int64)
    docs = tokenizer(texts, add_special_tokens=False)["input_ids"]
    ids = [i for doc in docs for i in [tokenizer.eos_token_id, *doc]][1:]  # EOS between documents
    if len(ids) < seq_len:
        ids += [pad_id] * (seq_len - len(ids))
    rows = np.asarray(ids[: len(ids) // seq_len * seq_len], dtype=np.int64).reshape(-1, seq_len)
    if add_bos_token:
        rows = np.concatenate([np.full((len(rows), 1), tokenizer.bos_token_id, dtype=np.int64), rows], axis=1)
    return rows


def tokenize_and_concatenate(dataset, tokenizer, streaming: bool = False, max_length: int = 1024,
                             column_name: str = "text", add_bos_token: bool = True, num_proc: int = 10,
                             set_format: bool = True):
    """A Hugging Face ``datasets.Dataset`` (or ``IterableDataset``) of texts as rows of ``max_length`` token ids,
    in one column ``"tokens"``: each batch of documents is tokenized, joined with EOS between documents, cut into
    rows (BOS first if ``add_bos_token``; the tail shorter than a row is dropped, a batch shorter than one row
    is padded with the pad token, else EOS). Other columns are dropped. ``num_proc`` processes tokenize unless
    ``streaming``; ``set_format`` makes the column torch tensors (pass False for an IterableDataset).

    The tokenizer needs an EOS token; it is not modified.
    """
    if not hasattr(dataset, "map"):
        if importlib.util.find_spec("datasets") is None:
            raise ImportError("tokenize_and_concatenate works on a Hugging Face datasets.Dataset, and the datasets "
                              "library is not installed here (the course does not need it): `pip install "
                              f"datasets`, then pass datasets.Dataset.from_dict({{{column_name!r}: texts}}).")
        raise TypeError(f"tokenize_and_concatenate takes a datasets.Dataset or IterableDataset with a "
                        f"{column_name!r} column, got {type(dataset).__name__}; for a list of strings, pass "
                        f"datasets.Dataset.from_dict({{{column_name!r}: texts}}).")
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenize_and_concatenate joins documents with the EOS token, and this tokenizer has "
                         "none: set tokenizer.eos_token first.")
    pad_id = tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    # Documents longer than the model's context are expected here (they are cut into rows): no warning.
    warned = getattr(tokenizer, "deprecation_warnings", {})
    key = "sequence-length-is-longer-than-the-specified-maximum"
    before = warned.get(key)
    warned[key] = True
    try:
        tokenized = dataset.map(
            lambda batch: {"tokens": _concatenated_rows(batch[column_name], tokenizer, max_length, add_bos_token,
                                                        pad_id)},
            batched=True, remove_columns=list(dataset.column_names or [column_name]),
            **({} if streaming else {"num_proc": num_proc}))
    finally:
        if before is None:
            warned.pop(key, None)
        else:
            warned[key] = before
    if set_format:
        tokenized.set_format(type="torch", columns=["tokens"])
    return tokenized


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
