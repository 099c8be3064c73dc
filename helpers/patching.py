"""Batched activation patching: a whole patching map in a few forward passes.

Activation patching runs the model on a *corrupted* batch of prompts, replaces ("patches") one
activation by its value on the *clean* batch, and measures with a metric how much of the clean
behaviour comes back. A patching map does this for every layer and position (or head): the
straightforward way is one forward pass per patch. Here the corrupted batch is repeated once per
patch along the batch dimension, so that copy ``p`` of the batch carries patch ``p``, and a single
hook writes the clean activations into every copy that needs them, with index tensors. Each pass
patches one layer and starts there, from the corrupted residual stream (the layers below are the
same in every copy); its copies go through the model in chunks of at most ``max_batch`` sequences.

Example (IOI, normalised logit difference)::

    result = activation_patching(model, corrupted_tokens, clean_cache, metric, kind="resid_pre")
    result.values          # [n_layers pos]
    result.axes["pos"]     # position labels, for the heatmap's x axis

Shapes: ``batch`` is the number of corrupted prompts, ``pos`` their length, ``copies`` the number of
patched copies of the batch in one forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from helpers import utils
from helpers.activation_cache import ActivationCache

Metric = Callable[[Float[torch.Tensor, "batch pos d_vocab"]], torch.Tensor]

#: The kinds of patching map, and the axes of each map in order. For the ``*_by_pos`` kinds one head is
#: patched at one position; for ``z`` and ``result`` one head is patched at every position.
PATCH_KINDS: dict[str, tuple[str, ...]] = {
    "resid_pre": ("layer", "pos"),
    "resid_mid": ("layer", "pos"),
    "resid_post": ("layer", "pos"),
    "attn_out": ("layer", "pos"),
    "mlp_out": ("layer", "pos"),
    "z": ("layer", "head"),
    "result": ("layer", "head"),
    "z_by_pos": ("layer", "pos", "head"),
    "result_by_pos": ("layer", "pos", "head"),
}


@dataclass(frozen=True)
class PatchingResult:
    """A patching map and the labels of its axes.

    values: the metric after each patch, a float tensor on the CPU whose dimensions follow ``axes``:
        [n_layers pos] for the residual stream, attn_out and mlp_out; [n_layers n_heads] for ``z`` and
        ``result``; [n_layers pos n_heads] for ``z_by_pos`` and ``result_by_pos``.
    axes: axis name -> one label per index, in the order of the dimensions of ``values``
        (names among "layer", "pos", "head"; labels like "L0", "H3", and the position labels).
    kind: the kind of map (a key of ``PATCH_KINDS``).
    """

    values: torch.Tensor
    axes: dict[str, list[str]]
    kind: str

    @property
    def shape(self) -> torch.Size:
        return self.values.shape


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------


def _act_name(kind: str) -> str:
    """The activation a kind patches: "z_by_pos" -> "z"."""
    return kind.removesuffix("_by_pos")


def _check_kind(model, kind: str) -> None:
    if kind not in PATCH_KINDS:
        raise ValueError(f"Unknown patching kind {kind!r}; the kinds are {list(PATCH_KINDS)}.")
    cfg = model.cfg
    act = _act_name(kind)
    if act in ("resid_mid", "mlp_out") and cfg.attn_only:
        raise ValueError(f"Kind {kind!r} needs MLP layers, but this model is attention-only.")
    if act == "result" and not cfg.use_attn_result:
        raise ValueError(f"Kind {kind!r} patches hook_result, which only runs with "
                         "model.cfg.use_attn_result = True (or patch 'z' instead: same effect).")


def _trailing_shape(model, act: str) -> tuple[int, ...]:
    """Shape of one position's activation: [d_model], [n_heads d_head] (z) or [n_heads d_model] (result)."""
    cfg = model.cfg
    if act == "z":
        return (cfg.n_heads, cfg.d_head)
    if act == "result":
        return (cfg.n_heads, cfg.d_model)
    return (cfg.d_model,)


def _check_tokens(tokens, what: str) -> Int[torch.Tensor, "batch pos"]:
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{what} must be a tensor of token ids [batch pos], not {type(tokens).__name__} "
                        "(use model.to_tokens on strings first).")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"{what} must hold integer token ids, not {tokens.dtype}.")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise ValueError(f"{what} must have shape [batch pos], got {tuple(tokens.shape)}.")
    return tokens


def _clean_activations(model, clean, corrupted_tokens: torch.Tensor, kind: str) -> list[torch.Tensor]:
    """The clean activation of every layer for ``kind``, each [batch pos ...] like the corrupted run's.

    ``clean`` is an ActivationCache (or a dict {hook name: tensor}) of the clean run, or the clean tokens.
    """
    act = _act_name(kind)
    names = [utils.get_act_name(act, layer) for layer in range(model.cfg.n_layers)]
    if isinstance(clean, torch.Tensor):
        clean_tokens = _check_tokens(clean, "clean tokens")
        if clean_tokens.shape != corrupted_tokens.shape:
            raise ValueError(f"Clean tokens have shape {tuple(clean_tokens.shape)} but the corrupted tokens "
                             f"have shape {tuple(corrupted_tokens.shape)}: they must match (same prompts "
                             "count, same length).")
        with torch.no_grad():
            _, clean = model.run_with_cache(clean_tokens.to(model.cfg.device), names_filter=names)
    elif not isinstance(clean, ActivationCache | dict):
        raise TypeError(f"clean must be an ActivationCache of the clean run, or the clean tokens, "
                        f"not {type(clean).__name__}.")
    expected = (*corrupted_tokens.shape, *_trailing_shape(model, act))
    out = []
    for name in names:
        if name not in clean:
            raise KeyError(f"The clean cache has no {name!r}: cache it (check names_filter), or pass the "
                           "clean tokens instead.")
        value = clean[name]
        if tuple(value.shape) != expected:
            raise ValueError(f"Clean activation {name} has shape {tuple(value.shape)}, but the corrupted "
                             f"run's is {expected}: the clean and corrupted batches must have the same shape "
                             "(and the cache a batch dimension).")
        out.append(value.to(model.cfg.device))
    return out


# ------------------------------------------------------------------------------------------------
# The patches and the hook that applies them
# ------------------------------------------------------------------------------------------------


def _patch_grid(model, kind: str, n_pos: int) -> Int[torch.Tensor, "n_patches 3"]:
    """One row (layer, pos, head) per patch, in the order of the map's entries (row-major over its axes).
    pos or head is -1 where the kind patches every position or every head."""
    cfg = model.cfg
    axes = PATCH_KINDS[kind]
    sizes = {"layer": cfg.n_layers, "pos": n_pos, "head": cfg.n_heads}
    grids = torch.meshgrid(*[torch.arange(sizes[a]) for a in axes], indexing="ij")
    columns = {a: g.flatten() for a, g in zip(axes, grids, strict=True)}
    n = columns["layer"].numel()
    full = torch.full((n,), -1, dtype=torch.long)
    return torch.stack([columns["layer"], columns.get("pos", full), columns.get("head", full)], dim=1)


def _make_hook(clean: torch.Tensor, pos: torch.Tensor, head: torch.Tensor):
    """A hook that, in copy ``i`` of the batch, writes the clean activation at position ``pos[i]`` and
    head ``head[i]`` (-1: all), for every copy at once.

    clean: [batch pos d] or [batch pos head d]; pos, head: [copies] long tensors.
    """
    n_copies = len(pos)
    copies = torch.arange(n_copies, device=pos.device)
    by_pos = bool((pos >= 0).all())
    by_head = bool((head >= 0).all())

    def patch_hook(activation: torch.Tensor, hook) -> torch.Tensor:
        # [copies*batch pos ...] -> [copies batch pos ...], a view: the writes below edit the activation.
        acts = activation.unflatten(0, (n_copies, clean.shape[0]))
        if by_pos and by_head:  # acts [copies batch pos head d]; the indexed dims come first: [copies batch d]
            acts[copies, :, pos, head] = clean[:, pos, head].transpose(0, 1)
        elif by_pos:  # acts [copies batch pos d] -> [copies batch d]
            acts[copies, :, pos] = clean[:, pos].transpose(0, 1)
        elif by_head:  # acts [copies batch pos head d] -> [copies batch pos d]
            acts[copies, :, :, head] = clean[:, :, head].permute(2, 0, 1, 3)
        else:  # pragma: no cover - every kind patches a position or a head
            raise AssertionError("a patch must choose a position or a head")
        return activation

    return patch_hook


def _scalar(value, where: str) -> float:
    value = torch.as_tensor(value)
    if value.numel() != 1:
        raise ValueError(f"The metric must return a scalar, but returned shape {tuple(value.shape)} on "
                         f"{where} (average over the batch inside the metric).")
    return float(value)


# ------------------------------------------------------------------------------------------------
# The patching map
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def activation_patching(
    model,
    corrupted_tokens: Int[torch.Tensor, "batch pos"],
    clean: ActivationCache | Int[torch.Tensor, "batch pos"],
    metric: Metric,
    kind: str = "resid_pre",
    *,
    max_batch: int = 64,
    logit_positions: int | list[int] | None = None,
    pos_labels: list[str] | None = None,
    progress: bool = False,
) -> PatchingResult:
    """The patching map of ``kind``: the metric after each single patch, computed in batched passes.

    model: a HookedTransformer.
    corrupted_tokens: [batch pos] token ids of the corrupted prompts.
    clean: the clean run's ActivationCache (with a batch dimension, same [batch pos] as the corrupted
        tokens, holding the hooks of ``kind``), or the clean tokens [batch pos] (then cached here).
    metric: ``metric(logits) -> scalar tensor``, where logits [batch pos d_vocab] are those of ONE
        patched copy of the whole corrupted batch (so it usually averages over the batch). It is called
        once per patch, in the order of the map's entries.
    kind: what is patched (see ``PATCH_KINDS``): "resid_pre", "resid_mid", "resid_post", "attn_out",
        "mlp_out" (one layer, one position: map [n_layers pos]); "z" or "result" (one head's output at
        every position: map [n_layers n_heads]); "z_by_pos" or "result_by_pos" (one head at one
        position: map [n_layers pos n_heads]). "result" needs ``model.cfg.use_attn_result``.
    max_batch: at most this many sequences per forward pass, i.e. ``max(1, max_batch // batch)`` patched
        copies of the batch per pass (one copy per pass when the batch alone is larger).
    logit_positions: compute the logits at these positions only (an int such as -1, or a list), and give
        the metric logits [batch n_positions d_vocab] in that order: with -1 it gets [batch 1 d_vocab], so
        ``logits[:, -1]`` still reads the last position. With a large vocabulary the unembedding is most
        of the cost of a small model, so this is much faster when the metric reads few positions.
        Default None: every position, [batch pos d_vocab].
    pos_labels: one label per position for ``axes["pos"]`` (default: "0", "1", ...).
    progress: show a tqdm bar over the forward passes.

    Returns a PatchingResult: ``values`` (float32, CPU) with one entry per patch, and ``axes``.

    Patch p sets, in copy p only, the activation at its (layer, position and/or head) to the clean
    one; each pass patches one layer and starts there, from the corrupted residual stream.
    """
    _check_kind(model, kind)
    corrupted_tokens = _check_tokens(corrupted_tokens, "corrupted_tokens").to(model.cfg.device)
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}.")
    if not callable(metric):
        raise TypeError("metric must be a function logits -> scalar tensor.")
    batch, n_pos = corrupted_tokens.shape
    if pos_labels is None:
        pos_labels = [str(i) for i in range(n_pos)]
    elif len(pos_labels) != n_pos:
        raise ValueError(f"pos_labels has {len(pos_labels)} labels for {n_pos} positions.")
    if logit_positions is not None:
        wanted = [logit_positions] if isinstance(logit_positions, int) else list(logit_positions)
        if not wanted or not all(isinstance(p, int) and -n_pos <= p < n_pos for p in wanted):
            raise ValueError(f"logit_positions must be positions in [-{n_pos}, {n_pos}) (an int or a "
                             f"non-empty list of ints), got {logit_positions!r}.")
        logit_index = torch.tensor(wanted, device=model.cfg.device)
    act = _act_name(kind)
    clean_acts = _clean_activations(model, clean, corrupted_tokens, kind)

    # The corrupted residual stream entering each layer, where the passes start (no logits needed).
    resid_names = [utils.get_act_name("resid_pre", layer) for layer in range(model.cfg.n_layers)]
    _, corrupted_cache = model.run_with_cache(corrupted_tokens, names_filter=resid_names,
                                              stop_at_layer=model.cfg.n_layers)

    patches = _patch_grid(model, kind, n_pos)  # [n_patches 3]: layer, pos, head; rows sorted by layer
    per_pass = max(1, max_batch // batch)
    _, per_layer = patches[:, 0].unique_consecutive(return_counts=True)
    chunks = [chunk for rows in patches.split(per_layer.tolist()) for chunk in rows.split(per_pass)]
    if progress:
        chunks = tqdm(chunks, desc=f"patching {kind}")
    values, finals = [], []

    def score(logits: torch.Tensor, rows: torch.Tensor) -> None:
        """The metric of each patched copy in logits [copies*batch pos d_vocab]; rows: their patches."""
        for c, copy_logits in enumerate(logits.unflatten(0, (len(rows), batch))):
            values.append(_scalar(metric(copy_logits), f"patch {tuple(rows[c].tolist())}"))

    for chunk in chunks:
        n_copies = chunk.shape[0]
        layer = int(chunk[0, 0])
        _, pos, head = chunk.to(model.cfg.device).unbind(1)
        hooks = [(utils.get_act_name(act, layer), _make_hook(clean_acts[layer], pos, head))]
        resid = corrupted_cache["resid_pre", layer].repeat(n_copies, 1, 1)  # [copies*batch pos d_model]
        if logit_positions is None:
            score(model.run_with_hooks(resid, start_at_layer=layer, fwd_hooks=hooks), chunk)
        else:  # keep the final residual stream where logits are needed; unembed after the loop
            final = model.run_with_hooks(resid, start_at_layer=layer, stop_at_layer=model.cfg.n_layers,
                                         fwd_hooks=hooks)
            finals.append(final[:, logit_index])
    if finals:
        # One unembedding for many passes: reading W_U [d_model d_vocab] once per max_batch sequences,
        # rather than once per pass, is most of the saving when few positions are unembedded.
        for rows, final in zip(patches.split(per_pass), torch.cat(finals).split(per_pass * batch), strict=True):
            score(model.unembed(model.ln_final(final)), rows)

    cfg = model.cfg
    labels = {"layer": [f"L{i}" for i in range(cfg.n_layers)], "pos": list(pos_labels),
              "head": [f"H{i}" for i in range(cfg.n_heads)]}
    axes = {a: labels[a] for a in PATCH_KINDS[kind]}
    shape = tuple(len(v) for v in axes.values())
    return PatchingResult(torch.tensor(values, dtype=torch.float32).reshape(shape), axes, kind)
