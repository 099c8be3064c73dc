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

Two relatives return the same PatchingResult: ``attribution_patching`` estimates every patch of a map
at once to first order, from one corrupted forward pass and one backward pass (fast, approximate: to scan
before confirming with activation patching); ``path_patching`` measures, for every sender head, the effect
that flows only through chosen receiver heads' queries, keys or values (or straight to the logits).

Shapes: ``batch`` is the number of corrupted prompts, ``pos`` their length, ``copies`` the number of
patched copies of the batch in one forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from helpers import checks, utils
from helpers.activation_cache import ActivationCache
from helpers.past_key_value_caching import HookedTransformerKeyValueCache, HookedTransformerKeyValueCacheEntry

Metric = Callable[[Float[torch.Tensor, "batch pos d_vocab"]], torch.Tensor]
Tokens = Int[torch.Tensor, "batch pos"]
Clean = ActivationCache | Tokens  # the clean run's cache, or its tokens (then cached here)

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


def _layer_names(model, act: str) -> list[str]:
    """The hook name of activation ``act`` in every layer, in layer order."""
    return [utils.get_act_name(act, layer) for layer in range(model.cfg.n_layers)]


def _check_tokens(model, tokens, what: str) -> Tokens:
    tokens = checks.token_ids(tokens, model.cfg.d_vocab, what)
    return tokens if tokens.ndim == 2 else tokens[None]


def _check_inputs(model, corrupted_tokens, metric, usage: str) -> Tokens:
    """The checks every engine makes first (``usage`` shows its call); returns the corrupted tokens
    [batch pos] on the model's device."""
    checks.is_model(model, usage)
    if not callable(metric):
        raise TypeError(f"metric must be a function logits -> scalar tensor, got {type(metric).__name__}.")
    return _check_tokens(model, corrupted_tokens, "corrupted_tokens").to(model.cfg.device)


def _copies_per_pass(max_batch, batch: int) -> int:
    """How many patched copies of the batch one forward pass carries: at most ``max_batch`` sequences,
    and at least one copy."""
    if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}.")
    return max(1, max_batch // batch)


def _check_kind(model, kind: str) -> None:
    if kind not in PATCH_KINDS:
        raise ValueError(f"Unknown patching kind {kind!r}; the kinds are {list(PATCH_KINDS)}.")
    cfg = model.cfg
    act = _act_name(kind)
    if act in ("resid_mid", "mlp_out") and cfg.attn_only:
        raise ValueError(f"Kind {kind!r} needs MLP layers, but this model is attention-only.")
    if act == "resid_mid" and cfg.parallel_attn_mlp:
        raise ValueError(f"Kind {kind!r}: attention and MLP run in parallel in this model (GPT-NeoX), so there is no "
                         "resid_mid; patch resid_pre, attn_out or mlp_out.")
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


def _clean_activations(model, clean, corrupted_tokens: torch.Tensor, kind: str) -> list[torch.Tensor]:
    """The clean activation of every layer for ``kind``, each [batch pos ...] like the corrupted run's.

    ``clean`` is an ActivationCache (or a dict {hook name: tensor}) of the clean run, or the clean tokens.
    """
    act = _act_name(kind)
    names = _layer_names(model, act)
    if isinstance(clean, torch.Tensor):
        clean_tokens = _check_tokens(model, clean, "clean")
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


def _axes(model, kind: str, n_pos: int, pos_labels: list[str] | None) -> dict[str, list[str]]:
    """The axes of a map of ``kind``: name -> labels ("L0", the position labels, "H0")."""
    if pos_labels is None:
        pos_labels = [str(i) for i in range(n_pos)]
    elif len(pos_labels) != n_pos:
        raise ValueError(f"pos_labels has {len(pos_labels)} labels for {n_pos} positions.")
    labels = {"layer": [f"L{i}" for i in range(model.cfg.n_layers)], "pos": list(pos_labels),
              "head": [f"H{i}" for i in range(model.cfg.n_heads)]}
    return {a: labels[a] for a in PATCH_KINDS[kind]}


# ------------------------------------------------------------------------------------------------
# The batched passes, shared by the engines
# ------------------------------------------------------------------------------------------------


def _grid(shape: list[int]) -> Int[torch.Tensor, "n_patches n_axes"]:
    """Every index of a map of this shape, one row each (layer first), in the order of the map's entries."""
    grids = torch.meshgrid(*[torch.arange(size) for size in shape], indexing="ij")
    return torch.stack([g.flatten() for g in grids], dim=1)


def _passes(layers: torch.Tensor, per_pass: int) -> list[tuple[int, torch.Tensor]]:
    """(layer, rows) for each forward pass: the patches of one layer (layers in ascending order), at most
    ``per_pass`` of them, by their row numbers [copies]. layers: [n_patches], each patch's layer."""
    return [(layer, rows) for layer in layers.unique().tolist()
            for rows in (layers == layer).nonzero().flatten().split(per_pass)]


def _corrupted_resid(model, corrupted_tokens: torch.Tensor) -> ActivationCache:
    """The corrupted residual stream entering each layer, where the passes start (no logits needed)."""
    _, cache = model.run_with_cache(corrupted_tokens, names_filter=_layer_names(model, "resid_pre"),
                                    stop_at_layer=model.cfg.n_layers)
    return cache


def _start(corrupted: ActivationCache, layer: int, n_copies: int) -> Float[torch.Tensor, "copies*batch pos d_model"]:
    """The corrupted residual stream entering ``layer``, once per patched copy of the batch."""
    return corrupted["resid_pre", layer].repeat(n_copies, 1, 1)


def _make_hook(clean: torch.Tensor, index: Int[torch.Tensor, "copies n_axes"], axes: tuple[str, ...],
               offset: int = 0):
    """A hook that, in copy ``i`` of the batch, writes the clean activation at the position and head of
    ``index[i]`` (a row of a map with these axes: every position where "pos" is not an axis, every head
    where "head" is not), for every copy at once.

    clean: [batch pos d] or [batch pos head d]. ``offset``: the pass runs positions ``offset`` onwards (``clean``
    holds those positions only), so position p is at p - offset. The clean values and the indices follow the
    activation to its device (a model spread over devices).
    """
    n_copies = len(index)
    where = dict(zip(axes, index.unbind(1), strict=True))
    pos, head = where.get("pos"), where.get("head")
    pos = None if pos is None else pos - offset
    on_device = {}

    def patch_hook(activation: torch.Tensor, hook) -> torch.Tensor:
        if activation.device not in on_device:
            on_device[activation.device] = [None if t is None else t.to(activation.device)
                                            for t in (clean, torch.arange(n_copies), pos, head)]
        clean_, copies, pos_, head_ = on_device[activation.device]
        # [copies*batch pos ...] -> [copies batch pos ...], a view: the writes below edit the activation.
        acts = activation.unflatten(0, (n_copies, clean_.shape[0]))
        if head_ is None:  # acts [copies batch pos d]; the indexed dims come first: [copies batch d]
            acts[copies, :, pos_] = clean_[:, pos_].transpose(0, 1)
        elif pos_ is None:  # acts [copies batch pos head d] -> [copies batch pos d]
            acts[copies, :, :, head_] = clean_[:, :, head_].permute(2, 0, 1, 3)
        else:  # acts [copies batch pos head d] -> [copies batch d]
            acts[copies, :, pos_, head_] = clean_[:, pos_, head_].transpose(0, 1)
        return activation

    return patch_hook


def _scalar(value, where: str) -> float:
    value = torch.as_tensor(value)
    if value.numel() != 1:
        raise ValueError(f"The metric must return a scalar, but returned shape {tuple(value.shape)} on "
                         f"{where} (average over the batch inside the metric).")
    return float(value)


def _score(values: torch.Tensor, rows: torch.Tensor, logits: torch.Tensor, metric: Metric, index: torch.Tensor) -> None:
    """values[row] = the metric of that row's patched copy, for the rows of one pass.

    logits: [copies*batch pos d_vocab], copy i patched by row ``rows[i]`` of ``index`` [n_patches n_axes].
    """
    for row, copy_logits in zip(rows.tolist(), logits.unflatten(0, (len(rows), -1)), strict=True):
        values[row] = _scalar(metric(copy_logits), f"patch {tuple(index[row].tolist())}")


# ------------------------------------------------------------------------------------------------
# The patching map
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def activation_patching(model, corrupted_tokens: Tokens, clean: Clean, metric: Metric, kind: str = "resid_pre", *,
                        max_batch: int = 64, logit_positions: int | list[int] | None = None,
                        pos_labels: list[str] | None = None, progress: bool = False,
                        reuse_prefix: bool = True) -> PatchingResult:
    """The patching map of ``kind``: the metric after each single patch, computed in batched passes.

    model: a HookedTransformer.
    corrupted_tokens: [batch pos] token ids of the corrupted prompts.
    clean: the clean run's ActivationCache (with a batch dimension, same [batch pos] as the corrupted
        tokens, holding the hooks of ``kind``), or the clean tokens [batch pos] (then cached here).
    metric: ``metric(logits) -> scalar tensor``, where logits [batch pos d_vocab] are those of ONE
        patched copy of the whole corrupted batch (so it usually averages over the batch). It is called
        on each patch's logits, once for all the patches that change nothing (see reuse_prefix).
    kind: what is patched (see ``PATCH_KINDS``): "resid_pre", "resid_mid", "resid_post", "attn_out",
        "mlp_out" (one layer, one position: map [n_layers pos]); "z" or "result" (one head's output at
        every position: map [n_layers n_heads]); "z_by_pos" or "result_by_pos" (one head at one
        position: map [n_layers pos n_heads]). "result" needs ``model.cfg.use_attn_result``.
    max_batch: at most this many sequences per forward pass, i.e. ``max(1, max_batch // batch)`` patched
        copies of the batch per pass (one copy per pass when the batch alone is larger); with reuse_prefix,
        as many positions: more copies when only the end of the sequences is run.
    logit_positions: compute the logits at these positions only (an int such as -1, or a list), and give
        the metric logits [batch n_positions d_vocab] in that order: with -1 it gets [batch 1 d_vocab], so
        ``logits[:, -1]`` still reads the last position. With a large vocabulary the unembedding is most
        of the cost of a small model, so this is much faster when the metric reads few positions; the last
        block, too, runs its queries and MLP from the first of these positions on (``last_positions``).
        Default None: every position, [batch pos d_vocab].
    pos_labels: one label per position for ``axes["pos"]`` (default: "0", "1", ...).
    progress: show a tqdm bar over the forward passes.
    reuse_prefix: in a causal model, a patch whose first change is at position p leaves every position
        before p as the corrupted run computed it (activations and logits). With True (the default) those
        positions are taken from the corrupted run, through a key/value cache of its keys and values
        (helpers.past_key_value_caching), and only positions p onwards are run; a patch that changes nothing
        (clean equal to corrupted where it writes, e.g. before the first token that differs) gets the corrupted
        run's metric. False runs every position of every patch (the same map, to float rounding).

    Returns a PatchingResult: ``values`` (float32, CPU) with one entry per patch, and ``axes``.

    Patch p sets, in copy p only, the activation at its (layer, position and/or head) to the clean
    one; each pass patches one layer and starts there, from the corrupted residual stream.
    """
    corrupted_tokens = _check_inputs(model, corrupted_tokens, metric,
                                     "activation_patching(model, corrupted_tokens, clean, metric, kind=...)")
    _check_kind(model, kind)
    batch, n_pos = corrupted_tokens.shape
    per_pass = _copies_per_pass(max_batch, batch)
    axes = _axes(model, kind, n_pos, pos_labels)
    logit_index = None
    if logit_positions is not None:
        wanted = [logit_positions] if isinstance(logit_positions, int) else list(logit_positions)
        if not wanted or not all(isinstance(p, int) and -n_pos <= p < n_pos for p in wanted):
            raise ValueError(f"logit_positions must be positions in [-{n_pos}, {n_pos}) (an int or a "
                             f"non-empty list of ints), got {logit_positions!r}.")
        logit_index = torch.tensor(wanted, device=model.cfg.device)
        first_logit = min(p % n_pos for p in wanted)
    names = _layer_names(model, _act_name(kind))
    clean_acts = _clean_activations(model, clean, corrupted_tokens, kind)
    run = _CorruptedRun(model, corrupted_tokens, names if reuse_prefix else [], keep_kv=reuse_prefix)

    shape = [len(labels) for labels in axes.values()]
    patches = _grid(shape)  # [n_patches n_axes]: layer, pos and/or head
    starts = (_first_changes(model, patches, tuple(axes), clean_acts, [run.cache[n] for n in names]) if reuse_prefix
              else torch.zeros(len(patches), dtype=torch.long))
    passes = _suffix_passes(patches[:, 0], starts, n_pos, per_pass, batch)
    if progress:
        passes = tqdm(passes, desc=f"patching {kind}")
    values, finals = torch.zeros(len(patches)), []
    unchanged = (starts == n_pos).nonzero().flatten()
    if len(unchanged):  # patches that change nothing: the corrupted run's metric
        where = f"patch {tuple(patches[unchanged[0]].tolist())}, which changes nothing: the corrupted run"
        logits = run.logits if logit_index is None else _unembed(model, run.final[:, logit_index])
        values[unchanged] = _scalar(metric(logits), where)
    for layer, rows, start in passes:
        hook = _make_hook(clean_acts[layer][:, start:], patches[rows].to(model.cfg.device), tuple(axes), start)
        resid = run.resid_pre(layer, start, len(rows))
        cache = run.prefix_cache(start, len(rows), layer)
        if logit_index is None:
            logits = model.run_with_hooks(resid, start_at_layer=layer, fwd_hooks=[(names[layer], hook)],
                                          past_kv_cache=cache)
            _score(values, rows, run.with_prefix(logits, start, len(rows), "logits"), metric, patches)
        else:  # keep the final residual stream where logits are needed; unembed after the loop
            # A patch before the last block: that block runs its queries and MLP from the first logit position on.
            last = n_pos - max(start, first_logit) if layer < model.cfg.n_layers - 1 else None
            final = model.run_with_hooks(resid, start_at_layer=layer, stop_at_layer=model.cfg.n_layers,
                                         fwd_hooks=[(names[layer], hook)], past_kv_cache=cache, last_positions=last)
            computed_from = start if last is None else n_pos - last
            finals.append((rows, run.with_prefix(final, computed_from, len(rows), "final")[:, logit_index]))
    if finals:
        # One unembedding for many passes: reading W_U [d_model d_vocab] once per max_batch sequences,
        # rather than once per pass, is most of the saving when few positions are unembedded.
        rows_done = torch.cat([rows for rows, _ in finals])
        for rows, final in zip(rows_done.split(per_pass), torch.cat([f for _, f in finals]).split(per_pass * batch),
                               strict=True):
            _score(values, rows, _unembed(model, final), metric, patches)
    return PatchingResult(values.reshape(shape), axes, kind)


def _unembed(model, final: torch.Tensor) -> torch.Tensor:
    return model.unembed(model.ln_final(final))


class _CorruptedRun:
    """The corrupted run, once: its residual stream entering each layer, its final residual stream and logits, the
    activations ``names`` (to find where each patch first changes something) and, with ``keep_kv``, every layer's
    keys and values (the prefix of every patched pass)."""

    def __init__(self, model, tokens: torch.Tensor, names: list[str], keep_kv: bool):
        self.model, self.batch = model, tokens.shape[0]
        n = model.cfg.n_layers
        last = utils.get_act_name("resid_post", n - 1)
        self.kv = None
        if keep_kv:
            self.kv = HookedTransformerKeyValueCache.init_cache(model.cfg, model.cfg.device, self.batch)
        wanted = list(dict.fromkeys([*_layer_names(model, "resid_pre"), last, *names]))
        self.logits, self.cache = model.run_with_cache(tokens, names_filter=wanted, past_kv_cache=self.kv)
        self.final = self.cache[last]

    def resid_pre(self, layer: int, start: int, n_copies: int) -> torch.Tensor:
        """The corrupted residual stream entering ``layer`` from position ``start`` on, once per patched copy."""
        return self.cache["resid_pre", layer][:, start:].repeat(n_copies, 1, 1)

    def prefix_cache(self, start: int, n_copies: int, layer: int):
        """A frozen key/value cache of positions [0, start) for ``n_copies`` copies of the batch (layers from
        ``layer`` on: the pass starts there); None when there is no prefix."""
        if start == 0:
            return None
        entries = [HookedTransformerKeyValueCacheEntry(e.past_keys[:, :start].repeat(n_copies, 1, 1, 1),
                                                       e.past_values[:, :start].repeat(n_copies, 1, 1, 1), frozen=True)
                   if i >= layer else HookedTransformerKeyValueCacheEntry(e.past_keys[:0, :0], e.past_values[:0, :0])
                   for i, e in enumerate(self.kv.entries)]
        mask = torch.ones((n_copies * self.batch, start), dtype=torch.int,
                          device=self.kv.previous_attention_mask.device)
        return HookedTransformerKeyValueCache(entries, mask, frozen=True)

    def with_prefix(self, suffix: torch.Tensor, start: int, n_copies: int, what: str) -> torch.Tensor:
        """``suffix`` [copies*batch pos-start ...] (logits or final residual stream of positions start on) with the
        corrupted run's positions [0, start) before it: [copies*batch pos ...]."""
        if start == 0:
            return suffix
        full = self.logits if what == "logits" else self.final
        out = suffix.new_empty((n_copies, *full.shape))
        out[:, :, :start] = full[:, :start].to(suffix.device)
        out[:, :, start:] = suffix.unflatten(0, (n_copies, self.batch))
        return out.flatten(0, 1)


def _first_changes(model, patches: torch.Tensor, axes: tuple[str, ...], clean_acts: list[torch.Tensor],
                   corrupted_acts: list[torch.Tensor]) -> Int[torch.Tensor, " n_patches"]:
    """The first position each patch changes: where its clean values differ from the corrupted run's (pos when the
    map has a pos axis, the first differing position of its head or of the stream otherwise); ``pos`` (the
    sequence length) for a patch that changes nothing. Bidirectional attention: 0 or pos (no prefix to keep)."""
    n_pos = clean_acts[0].shape[1]
    starts = torch.full((len(patches),), n_pos, dtype=torch.long)
    for layer, clean in enumerate(clean_acts):
        rows = (patches[:, 0] == layer).nonzero().flatten()
        if not len(rows):
            continue
        corrupted = corrupted_acts[layer]
        differs = clean.to(corrupted.device) != corrupted  # [batch pos d] or [batch pos head d]
        differs = differs.any(0).any(-1).cpu()  # [pos] or [pos head]
        index = dict(zip(axes, patches[rows].unbind(1), strict=True))
        pos, head = index.get("pos"), index.get("head")
        grid = differs if head is None else differs[:, head]  # [pos] or [pos rows]
        if pos is not None:  # one position: it, if it changes anything
            changed = grid[pos] if head is None else grid[pos, torch.arange(len(rows))]
            first = torch.where(changed, pos, n_pos)
        else:  # every position: the first that changes
            grid = grid if grid.ndim == 2 else grid[:, None].expand(-1, len(rows))
            positions = torch.arange(n_pos)[:, None].expand_as(grid)
            first = torch.where(grid, positions, n_pos).min(0).values
        starts[rows] = first
    if model.cfg.attention_dir != "causal":
        starts[starts < n_pos] = 0
    return starts


#: What a forward pass costs beyond its positions, in positions of one sequence (the weights are read once per
#: pass: about 70 ms on GPT-2 small's shapes, as much as 24 more positions, measured on the course's CPU).
_PASS_COST = 24


def _suffix_passes(layers: torch.Tensor, starts: torch.Tensor, n_pos: int, per_pass: int,
                   batch: int) -> list[tuple[int, torch.Tensor, int]]:
    """(layer, rows, start) for each forward pass: the patches of one layer that change something, in passes that
    run positions ``start`` onwards of each patched copy (``start`` the earliest first change of the pass's rows),
    at most ``per_pass`` copies of the whole sequence's positions per pass. Within a layer the rows go by first
    change, latest first, cut where the total cost (the positions run, plus ``_PASS_COST`` per pass) is least."""
    passes = []
    for layer in layers.unique().tolist():
        rows = ((layers == layer) & (starts < n_pos)).nonzero().flatten()
        rows = rows[starts[rows].argsort(descending=True, stable=True)]
        length = (n_pos - starts[rows]).tolist()  # non-decreasing: the length a pass ending at that row runs
        best, cut = [0.0] + [float("inf")] * len(rows), [0] * (len(rows) + 1)
        for end in range(1, len(rows) + 1):  # best[end]: the cheapest passes for rows[:end]
            for begin in range(end - 1, -1, -1):
                if (end - begin) * length[end - 1] > per_pass * n_pos and end - begin > 1:
                    break
                cost = best[begin] + _PASS_COST + (end - begin) * length[end - 1] * batch
                if cost < best[end]:
                    best[end], cut[end] = cost, begin
        chunks, end = [], len(rows)
        while end > 0:
            chunks.append(rows[cut[end]:end])
            end = cut[end]
        passes += [(layer, chunk, int(starts[chunk].min())) for chunk in reversed(chunks)]
    return passes


# ------------------------------------------------------------------------------------------------
# Attribution patching: every patch at once, to first order
# ------------------------------------------------------------------------------------------------


def attribution_patching(model, corrupted_tokens: Tokens, clean: Clean, metric: Metric, kind: str = "resid_pre", *,
                         pos_labels: list[str] | None = None) -> PatchingResult:
    """The linear approximation of the patching map of ``kind``, from one forward and one backward pass.

    Same arguments and result as ``activation_patching`` (``metric`` must be differentiable: torch
    operations on the logits, no ``.item()``). Each entry estimates the metric after its patch by the
    first-order Taylor expansion around the corrupted run:

        metric(corrupted) + sum over the patched entries of (clean - corrupted) * d metric / d activation

    with the gradient taken once on the corrupted run, for every activation of ``kind`` at once. It is
    exact when the model is linear between the patched activation and the metric; LayerNorm scales and
    saturated attention softmaxes are where it is not.
    """
    corrupted_tokens = _check_inputs(model, corrupted_tokens, metric,
                                     "attribution_patching(model, corrupted_tokens, clean, metric, kind=...)")
    _check_kind(model, kind)
    axes = _axes(model, kind, corrupted_tokens.shape[1], pos_labels)
    clean_acts = _clean_activations(model, clean, corrupted_tokens, kind)
    names = _layer_names(model, _act_name(kind))
    corrupted_acts, offsets = [], []

    def add_offset(activation: torch.Tensor, hook) -> torch.Tensor:
        # activation + 0: the gradient with respect to the zero offset is the activation's gradient.
        corrupted_acts.append(activation.detach())
        offsets.append(torch.zeros_like(activation, requires_grad=True))
        return activation + offsets[-1]

    with torch.enable_grad():
        value = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(n, add_offset) for n in names]))
        if not (isinstance(value, torch.Tensor) and value.requires_grad):
            raise TypeError("attribution_patching differentiates the metric: it must return a tensor computed "
                            "from the logits with torch operations (not a Python float or .item()).")
        _scalar(value.detach(), "the corrupted run")
        grads = torch.autograd.grad(value, offsets)
    # Sum (clean - corrupted) * grad over the batch, d, and whatever one patch covers (pos or head).
    summed = {("layer", "pos"): (0, 2), ("layer", "head"): (0, 1, 3), ("layer", "pos", "head"): (0, 3)}
    dims = summed[PATCH_KINDS[kind]]
    deltas = torch.stack([((c - a) * g).sum(dims)
                          for c, a, g in zip(clean_acts, corrupted_acts, grads, strict=True)])
    return PatchingResult((value.detach() + deltas).float().cpu(), axes, kind)



# ------------------------------------------------------------------------------------------------
# Path patching: one sender's effect through chosen receivers only
# ------------------------------------------------------------------------------------------------

#: The inputs of a receiver head that path patching can replace (hook_q, hook_k, hook_v of its layer).
RECEIVER_INPUTS = ("q", "k", "v")


def _check_receivers(model, receivers, receiver_input) -> dict[int, list[int]]:
    """receivers [(layer, head), ...] -> {layer: [heads]}; {} for the final residual stream (None)."""
    cfg = model.cfg
    if receivers is None:
        if receiver_input is not None:
            raise ValueError(f"receiver_input={receiver_input!r} needs receiver heads; with receivers=None "
                             "the path ends in the final residual stream (leave receiver_input=None).")
        return {}
    if receiver_input not in RECEIVER_INPUTS:
        raise ValueError(f"receiver_input must be one of {RECEIVER_INPUTS} for receiver heads, got "
                         f"{receiver_input!r}.")
    by_layer: dict[int, list[int]] = {}
    for item in receivers:
        if not (isinstance(item, tuple | list) and len(item) == 2
                and 0 <= item[0] < cfg.n_layers and 0 <= item[1] < cfg.n_heads):
            raise ValueError(f"receivers must be (layer, head) pairs with layer < {cfg.n_layers} and head < "
                             f"{cfg.n_heads}, got {item!r} in {receivers!r}.")
        by_layer.setdefault(int(item[0]), []).append(int(item[1]))
    if not by_layer:
        raise ValueError("receivers is empty: give (layer, head) pairs, or None for the final residual stream.")
    return by_layer



@torch.no_grad()
def path_patching(model, corrupted_tokens: Tokens, clean: Clean, metric: Metric,
                  receivers: list[tuple[int, int]] | None = None, receiver_input: str | None = None, *,
                  max_batch: int = 64) -> PatchingResult:
    """Path patching: for every sender head, the metric when its clean output reaches the receivers only.

    Arguments as in ``activation_patching``; the run that is patched, and to which the rest of the model
    is frozen, is the corrupted one (to patch the other way, swap the two runs).
    receivers: heads [(layer, head), ...] whose input ``receiver_input`` ("q", "k" or "v": hook_q, hook_k
        or hook_v) receives the path; None: the path ends in the final residual stream (the logits).
    max_batch: at most this many sequences per forward pass (as in ``activation_patching``).

    For each sender, on the corrupted tokens:
      1. the sender's z is set to its clean value and every other head's z is frozen to its corrupted
         value (MLPs and LayerNorms are recomputed, so paths through MLPs count). With receivers=None the
         metric is read on this run's logits; otherwise the receivers' q, k or v are kept;
      2. a second run sets only the receivers' q, k or v to those values, the rest runs freely, and the
         metric is read.
    Senders go through in batched copies, as patches do in ``activation_patching``. Returns a
    PatchingResult of kind "z" (one sender head per entry, [n_layers n_heads]); a sender in a layer at or
    after every receiver's has no path to them, and its entry is the corrupted run's metric.
    """
    corrupted_tokens = _check_inputs(model, corrupted_tokens, metric, "path_patching(model, corrupted_tokens, "
                                     "clean, metric, receivers=[(layer, head), ...], receiver_input='q')")
    batch, n_pos = corrupted_tokens.shape
    per_pass = _copies_per_pass(max_batch, batch)
    targets = _check_receivers(model, receivers, receiver_input)
    cfg = model.cfg
    axes = _axes(model, "z", n_pos, pos_labels=None)
    clean_z = _clean_activations(model, clean, corrupted_tokens, "z")
    z_names = _layer_names(model, "z")
    corrupted_logits, corrupted = model.run_with_cache(corrupted_tokens,
                                                       names_filter=z_names + _layer_names(model, "resid_pre"))
    senders = _grid([cfg.n_layers, cfg.n_heads])  # [n_senders 2]: layer, head
    values = torch.full((len(senders),), _scalar(metric(corrupted_logits), "the corrupted run"))

    # Senders with a path: every head below the last receiver's layer (every head for the logits).
    end = max(targets) if targets else cfg.n_layers
    passes = [(layer, rows) for layer, rows in _passes(senders[:, 0], per_pass) if layer < end]
    in_names = {layer: utils.get_act_name(receiver_input or "q", layer) for layer in targets}

    def freeze(activation, hook):  # every head of a later layer keeps its corrupted output, in every copy
        return corrupted[hook.name].repeat(activation.shape[0] // batch, 1, 1, 1)

    kept = {}  # receiver input name -> [copies*batch pos receiver_heads d_head], from the first run

    def keep(activation, hook):
        kept[hook.name] = activation[:, :, targets[hook.layer()]].clone()

    def put(activation, hook):
        if hook.name in kept:  # receivers below the sender's layer keep their corrupted input
            activation[:, :, targets[hook.layer()]] = kept[hook.name]
        return activation

    for layer, rows in passes:
        hooks = [(z_names[layer], _make_hook(clean_z[layer], senders[rows].to(cfg.device), tuple(axes)))]
        hooks += [(z_names[later], freeze) for later in range(layer + 1, end)]
        start = _start(corrupted, layer, len(rows))
        if not targets:
            _score(values, rows, model.run_with_hooks(start, start_at_layer=layer, fwd_hooks=hooks), metric, senders)
            continue
        kept.clear()
        hooks += [(in_names[r], keep) for r in targets if r >= layer]
        model.run_with_hooks(start, start_at_layer=layer, stop_at_layer=end + 1, fwd_hooks=hooks)
        first = min(targets)
        logits = model.run_with_hooks(_start(corrupted, first, len(rows)), start_at_layer=first,
                                      fwd_hooks=[(n, put) for n in in_names.values()])
        _score(values, rows, logits, metric, senders)
    return PatchingResult(values.reshape(cfg.n_layers, cfg.n_heads), axes, "z")


# ------------------------------------------------------------------------------------------------
# The classic names (transformer_lens.patching), as thin layers over the batched implementation
# ------------------------------------------------------------------------------------------------
#
# Same arguments, same return shapes and axis order as the classic functions: a float tensor of the metric
# after each patch, on the model's device. Those that patch a residual stream, a layer output or a head's z
# call ``activation_patching``; the others (q, k, v, attention patterns, any patch setter) go through
# ``generic_activation_patch``, which also batches the patches but applies a Python setter per patched copy.




def _named(function, name: str, doc: str):
    """``function`` under its public name (``__name__`` and ``__qualname__``), with the docstring ``doc``."""
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    return function


def _setter(name: str, index_axes: str, activation_axes: str):
    """The classic patch setter ``name``: for an index over ``index_axes`` (layer first), it copies the clean
    activation [batch *activation_axes] into the corrupted one at the index's values of the axes they share,
    at every value of the others."""
    named = index_axes.split()[1:]
    dims = activation_axes.split()

    def setter(corrupted_activation, index, clean_activation):
        value = dict(zip(named, index[1:], strict=True))
        at = (slice(None), *[value.get(dim, slice(None)) for dim in dims])
        corrupted_activation[at] = clean_activation[at]
        return corrupted_activation

    return _named(setter, name, f"index ({', '.join(index_axes.split())}): copies the clean activation "
                                f"[batch {activation_axes}] at the index's {', '.join(named)} into the corrupted one "
                                "(its other axes whole), in place.")


_VECTOR, _PATTERN = "pos head_index d_head", "head_index dest_pos src_pos"  # the axes of q, k, v, z and of a pattern
layer_pos_patch_setter = _setter("layer_pos_patch_setter", "layer pos", "pos ...")
layer_pos_head_vector_patch_setter = _setter("layer_pos_head_vector_patch_setter", "layer pos head_index", _VECTOR)
layer_head_vector_patch_setter = _setter("layer_head_vector_patch_setter", "layer head_index", _VECTOR)
layer_head_pattern_patch_setter = _setter("layer_head_pattern_patch_setter", "layer head_index", _PATTERN)
layer_head_pos_pattern_patch_setter = _setter("layer_head_pos_pattern_patch_setter", "layer head_index dest_pos",
                                              _PATTERN)
layer_head_dest_src_pos_pattern_patch_setter = _setter("layer_head_dest_src_pos_pattern_patch_setter",
                                                       "layer head_index dest_pos src_pos", _PATTERN)


def _axis_size(model, axis: str, n_pos: int) -> int:
    sizes = {"layer": model.cfg.n_layers, "pos": n_pos, "dest_pos": n_pos, "src_pos": n_pos,
             "head": model.cfg.n_heads, "head_index": model.cfg.n_heads}
    if axis not in sizes:
        raise ValueError(f"index_axis_names: unknown axis {axis!r}; the axes are {list(sizes)} (layer first).")
    return sizes[axis]


def _setter_hook(patch_setter, clean: torch.Tensor, index: Int[torch.Tensor, "copies n_axes"]):
    """A hook that applies ``patch_setter(copy, index[i], clean)`` to copy ``i`` of the batch, for every copy."""

    def setter_hook(activation: torch.Tensor, hook) -> torch.Tensor:
        for copy, row in zip(activation.unflatten(0, (len(index), -1)), index.tolist(), strict=True):
            patched = patch_setter(copy, row, clean)
            if patched is not copy:
                copy.copy_(patched)
        return activation

    return setter_hook


@torch.no_grad()
def generic_activation_patch(model, corrupted_tokens: Tokens, clean_cache, patching_metric,
                             patch_setter, activation_name: str, index_axis_names=None, index_df=None,
                             return_index_df: bool = False, max_batch: int = 64):
    """The metric after each patch ``patch_setter(corrupted_activation, index, clean_activation)`` of the
    activation ``activation_name`` of layer ``index[0]``, for every index of ``index_axis_names`` (a grid, the
    result has one dim per axis) or for every row of ``index_df`` (a pandas DataFrame; the result is flat).

    As ``activation_patching``, the corrupted batch is repeated once per patch (at most ``max_batch``
    sequences per pass) and each pass starts at the patched layer from the corrupted residual stream.
    With ``return_index_df`` also returns the DataFrame of indices (needs pandas).
    """
    corrupted_tokens = _check_inputs(model, corrupted_tokens, patching_metric, "generic_activation_patch(model, "
                                     "corrupted_tokens, clean_cache, patching_metric, patch_setter, activation_name, "
                                     "index_axis_names=...)")
    batch, n_pos = corrupted_tokens.shape
    per_pass = _copies_per_pass(max_batch, batch)
    if (index_df is None) == (index_axis_names is None):
        raise ValueError("generic_activation_patch: pass exactly one of index_axis_names (e.g. ('layer', 'pos')) "
                         "and index_df (a DataFrame of indices, layer in its first column).")
    if index_df is None:
        shape = [_axis_size(model, a, n_pos) for a in index_axis_names]
        index = _grid(shape)  # [n_patches n_axes], row-major
    else:
        index = torch.tensor(index_df.to_numpy(), dtype=torch.long)
        shape = [len(index)]
    names = _layer_names(model, activation_name)
    clean = {layer: clean_cache[names[layer]].to(model.cfg.device) for layer in index[:, 0].unique().tolist()}
    corrupted = _corrupted_resid(model, corrupted_tokens)
    values = torch.zeros(len(index))
    for layer, rows in _passes(index[:, 0], per_pass):
        hooks = [(names[layer], _setter_hook(patch_setter, clean[layer], index[rows]))]
        logits = model.run_with_hooks(_start(corrupted, layer, len(rows)), start_at_layer=layer, fwd_hooks=hooks)
        _score(values, rows, logits, patching_metric, index)
    values = values.reshape(shape).to(model.cfg.device)
    if not return_index_df:
        return values
    if index_df is None:
        import pandas as pd  # optional: only this return value needs it

        index_df = pd.DataFrame(index.numpy(), columns=list(index_axis_names))
    return values, index_df


def _classic_map(name: str, kind: str):
    """The classic function ``name``: the ``kind`` map of ``activation_patching``."""

    def patch(model, corrupted_tokens, clean_cache, patching_metric):
        result = activation_patching(model, corrupted_tokens, clean_cache, patching_metric, kind=kind)
        return result.values.to(model.cfg.device)

    return _named(patch, name, f"Classic name: the '{kind}' map of ``activation_patching``, a tensor "
                               f"[{' '.join(PATCH_KINDS[kind])}] on the model's device.")


def _classic_generic(name: str, activation_name: str, setter, axes: tuple[str, ...]):
    """The classic function ``name``: ``generic_activation_patch`` of ``activation_name`` over ``axes``."""

    def patch(model, corrupted_tokens, clean_cache, patching_metric):
        return generic_activation_patch(model, corrupted_tokens, clean_cache, patching_metric, setter,
                                        activation_name, index_axis_names=axes)

    return _named(patch, name, f"Classic name: patch '{activation_name}' for each ({', '.join(axes)}); a tensor "
                               "of that shape on the model's device.")


get_act_patch_resid_pre = _classic_map("get_act_patch_resid_pre", "resid_pre")
get_act_patch_resid_mid = _classic_map("get_act_patch_resid_mid", "resid_mid")
get_act_patch_attn_out = _classic_map("get_act_patch_attn_out", "attn_out")
get_act_patch_mlp_out = _classic_map("get_act_patch_mlp_out", "mlp_out")
get_act_patch_attn_head_out_by_pos = _classic_map("get_act_patch_attn_head_out_by_pos", "z_by_pos")
get_act_patch_attn_head_out_all_pos = _classic_map("get_act_patch_attn_head_out_all_pos", "z")
get_act_patch_attn_head_q_by_pos = _classic_generic("get_act_patch_attn_head_q_by_pos", "q",
                                                    layer_pos_head_vector_patch_setter, ("layer", "pos", "head"))
get_act_patch_attn_head_k_by_pos = _classic_generic("get_act_patch_attn_head_k_by_pos", "k",
                                                    layer_pos_head_vector_patch_setter, ("layer", "pos", "head"))
get_act_patch_attn_head_v_by_pos = _classic_generic("get_act_patch_attn_head_v_by_pos", "v",
                                                    layer_pos_head_vector_patch_setter, ("layer", "pos", "head"))
get_act_patch_attn_head_q_all_pos = _classic_generic("get_act_patch_attn_head_q_all_pos", "q",
                                                     layer_head_vector_patch_setter, ("layer", "head"))
get_act_patch_attn_head_k_all_pos = _classic_generic("get_act_patch_attn_head_k_all_pos", "k",
                                                     layer_head_vector_patch_setter, ("layer", "head"))
get_act_patch_attn_head_v_all_pos = _classic_generic("get_act_patch_attn_head_v_all_pos", "v",
                                                     layer_head_vector_patch_setter, ("layer", "head"))
get_act_patch_attn_head_pattern_all_pos = _classic_generic("get_act_patch_attn_head_pattern_all_pos", "pattern",
                                                           layer_head_pattern_patch_setter, ("layer", "head_index"))
get_act_patch_attn_head_pattern_by_pos = _classic_generic("get_act_patch_attn_head_pattern_by_pos", "pattern",
                                                          layer_head_pos_pattern_patch_setter,
                                                          ("layer", "head_index", "dest_pos"))
get_act_patch_attn_head_pattern_dest_src_pos = _classic_generic(
    "get_act_patch_attn_head_pattern_dest_src_pos", "pattern", layer_head_dest_src_pos_pattern_patch_setter,
    ("layer", "head_index", "dest_pos", "src_pos"))


def get_act_patch_attn_head_all_pos_every(model, corrupted_tokens, clean_cache, metric
                                          ) -> Float[torch.Tensor, "5 layer head"]:
    """Every head at every position, for its output, q, k, v and pattern: [5 n_layers n_heads] in that order."""
    maps = (get_act_patch_attn_head_out_all_pos, get_act_patch_attn_head_q_all_pos,
            get_act_patch_attn_head_k_all_pos, get_act_patch_attn_head_v_all_pos,
            get_act_patch_attn_head_pattern_all_pos)
    return torch.stack([f(model, corrupted_tokens, clean_cache, metric) for f in maps])


def get_act_patch_attn_head_by_pos_every(model, corrupted_tokens, clean_cache, metric
                                         ) -> Float[torch.Tensor, "5 layer pos head"]:
    """Every head at each position, for its output, q, k, v and pattern (its destination row):
    [5 n_layers pos n_heads] in that order."""
    maps = [f(model, corrupted_tokens, clean_cache, metric) for f in (
        get_act_patch_attn_head_out_by_pos, get_act_patch_attn_head_q_by_pos,
        get_act_patch_attn_head_k_by_pos, get_act_patch_attn_head_v_by_pos)]
    pattern = get_act_patch_attn_head_pattern_by_pos(model, corrupted_tokens, clean_cache, metric)
    return torch.stack(maps + [pattern.transpose(1, 2)])  # pattern [layer head pos] -> [layer pos head]


def get_act_patch_block_every(model, corrupted_tokens, clean_cache, metric) -> Float[torch.Tensor, "3 layer pos"]:
    """The residual stream before each block, each attention output and each MLP output, per position:
    [3 n_layers pos] in that order."""
    return torch.stack([f(model, corrupted_tokens, clean_cache, metric) for f in (
        get_act_patch_resid_pre, get_act_patch_attn_out, get_act_patch_mlp_out)])
