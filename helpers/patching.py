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
    checks.is_model(model, "activation_patching(model, corrupted_tokens, clean, metric, kind=...)")
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


def _check_tokens(model, tokens, what: str) -> Int[torch.Tensor, "batch pos"]:
    tokens = checks.token_ids(tokens, model.cfg.d_vocab, what)
    return tokens if tokens.ndim == 2 else tokens[None]


def _clean_activations(model, clean, corrupted_tokens: torch.Tensor, kind: str) -> list[torch.Tensor]:
    """The clean activation of every layer for ``kind``, each [batch pos ...] like the corrupted run's.

    ``clean`` is an ActivationCache (or a dict {hook name: tensor}) of the clean run, or the clean tokens.
    """
    act = _act_name(kind)
    names = [utils.get_act_name(act, layer) for layer in range(model.cfg.n_layers)]
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


def _axes(model, kind: str, n_pos: int, pos_labels: list[str] | None) -> dict[str, list[str]]:
    """The axes of a map of ``kind``: name -> labels ("L0", the position labels, "H0")."""
    if pos_labels is None:
        pos_labels = [str(i) for i in range(n_pos)]
    elif len(pos_labels) != n_pos:
        raise ValueError(f"pos_labels has {len(pos_labels)} labels for {n_pos} positions.")
    labels = {"layer": [f"L{i}" for i in range(model.cfg.n_layers)], "pos": list(pos_labels),
              "head": [f"H{i}" for i in range(model.cfg.n_heads)]}
    return {a: labels[a] for a in PATCH_KINDS[kind]}


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
    corrupted_tokens = _check_tokens(model, corrupted_tokens, "corrupted_tokens").to(model.cfg.device)
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}.")
    if not callable(metric):
        raise TypeError(f"metric must be a function logits -> scalar tensor, got {type(metric).__name__}.")
    batch, n_pos = corrupted_tokens.shape
    axes = _axes(model, kind, n_pos, pos_labels)
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

    shape = tuple(len(v) for v in axes.values())
    return PatchingResult(torch.tensor(values, dtype=torch.float32).reshape(shape), axes, kind)


# ------------------------------------------------------------------------------------------------
# Attribution patching: every patch at once, to first order
# ------------------------------------------------------------------------------------------------


def attribution_patching(
    model,
    corrupted_tokens: Int[torch.Tensor, "batch pos"],
    clean: ActivationCache | Int[torch.Tensor, "batch pos"],
    metric: Metric,
    kind: str = "resid_pre",
    *,
    pos_labels: list[str] | None = None,
) -> PatchingResult:
    """The linear approximation of the patching map of ``kind``, from one forward and one backward pass.

    Same arguments and result as ``activation_patching`` (``metric`` must be differentiable: torch
    operations on the logits, no ``.item()``). Each entry estimates the metric after its patch by the
    first-order Taylor expansion around the corrupted run:

        metric(corrupted) + sum over the patched entries of (clean - corrupted) * d metric / d activation

    with the gradient taken once on the corrupted run, for every activation of ``kind`` at once. It is
    exact when the model is linear between the patched activation and the metric; LayerNorm scales and
    saturated attention softmaxes are where it is not.
    """
    _check_kind(model, kind)
    corrupted_tokens = _check_tokens(model, corrupted_tokens, "corrupted_tokens").to(model.cfg.device)
    if not callable(metric):
        raise TypeError("metric must be a function logits -> scalar tensor.")
    axes = _axes(model, kind, corrupted_tokens.shape[1], pos_labels)
    clean_acts = _clean_activations(model, clean, corrupted_tokens, kind)
    names = [utils.get_act_name(_act_name(kind), layer) for layer in range(model.cfg.n_layers)]
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
def path_patching(
    model,
    corrupted_tokens: Int[torch.Tensor, "batch pos"],
    clean: ActivationCache | Int[torch.Tensor, "batch pos"],
    metric: Metric,
    receivers: list[tuple[int, int]] | None = None,
    receiver_input: str | None = None,
    *,
    max_batch: int = 64,
) -> PatchingResult:
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
    corrupted_tokens = _check_tokens(model, corrupted_tokens, "corrupted_tokens").to(model.cfg.device)
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}.")
    if not callable(metric):
        raise TypeError("metric must be a function logits -> scalar tensor.")
    targets = _check_receivers(model, receivers, receiver_input)
    cfg = model.cfg
    batch, n_pos = corrupted_tokens.shape
    axes = _axes(model, "z", n_pos, None)
    clean_z = _clean_activations(model, clean, corrupted_tokens, "z")
    z_names = [utils.get_act_name("z", layer) for layer in range(cfg.n_layers)]
    resid_names = [utils.get_act_name("resid_pre", layer) for layer in range(cfg.n_layers)]
    corrupted_logits, corrupted = model.run_with_cache(corrupted_tokens, names_filter=z_names + resid_names)
    values = torch.full((cfg.n_layers, cfg.n_heads), _scalar(metric(corrupted_logits), "the corrupted run"))

    # Senders with a path: every head below the last receiver's layer (every head for the logits).
    end = max(targets) if targets else cfg.n_layers
    senders = _patch_grid(model, "z", n_pos)
    senders = senders[senders[:, 0] < end]
    per_pass = max(1, max_batch // batch)
    _, per_layer = senders[:, 0].unique_consecutive(return_counts=True)
    chunks = [chunk for rows in senders.split(per_layer.tolist()) for chunk in rows.split(per_pass)]
    in_names = {layer: utils.get_act_name(receiver_input or "q", layer) for layer in targets}

    def score(logits: torch.Tensor, rows: torch.Tensor) -> None:
        for (layer, _, head), copy_logits in zip(rows.tolist(), logits.unflatten(0, (len(rows), batch)),
                                                 strict=True):
            values[layer, head] = _scalar(metric(copy_logits), f"sender L{layer}H{head}")

    def freeze(activation, hook):  # every head of a later layer keeps its corrupted output, in every copy
        return corrupted[hook.name].repeat(activation.shape[0] // batch, 1, 1, 1)

    kept = {}  # receiver input name -> [copies*batch pos receiver_heads d_head], from the first run

    def keep(activation, hook):
        kept[hook.name] = activation[:, :, targets[hook.layer()]].clone()

    def put(activation, hook):
        if hook.name in kept:  # receivers below the sender's layer keep their corrupted input
            activation[:, :, targets[hook.layer()]] = kept[hook.name]
        return activation

    for chunk in chunks:
        n_copies, layer = chunk.shape[0], int(chunk[0, 0])
        _, pos, head = chunk.to(cfg.device).unbind(1)
        hooks = [(z_names[layer], _make_hook(clean_z[layer], pos, head))]
        hooks += [(z_names[later], freeze) for later in range(layer + 1, end)]
        start = corrupted["resid_pre", layer].repeat(n_copies, 1, 1)  # [copies*batch pos d_model]
        if not targets:
            score(model.run_with_hooks(start, start_at_layer=layer, fwd_hooks=hooks), chunk)
            continue
        kept.clear()
        hooks += [(in_names[r], keep) for r in targets if r >= layer]
        model.run_with_hooks(start, start_at_layer=layer, stop_at_layer=end + 1, fwd_hooks=hooks)
        first = min(targets)
        start = corrupted["resid_pre", first].repeat(n_copies, 1, 1)
        score(model.run_with_hooks(start, start_at_layer=first, fwd_hooks=[(n, put) for n in in_names.values()]),
              chunk)
    return PatchingResult(values, axes, "z")


# ------------------------------------------------------------------------------------------------
# The classic names (transformer_lens.patching), as thin layers over the batched implementation
# ------------------------------------------------------------------------------------------------
#
# Same arguments, same return shapes and axis order as the classic functions: a float tensor of the metric
# after each patch, on the model's device. Those that patch a residual stream, a layer output or a head's z
# call ``activation_patching``; the others (q, k, v, attention patterns, any patch setter) go through
# ``generic_activation_patch``, which also batches the patches but applies a Python setter per patched copy.


def layer_pos_patch_setter(corrupted_activation, index, clean_activation):
    """index (layer, pos): copy the clean activation at that position, activation [batch pos ...]."""
    _, pos = index
    corrupted_activation[:, pos] = clean_activation[:, pos]
    return corrupted_activation


def layer_pos_head_vector_patch_setter(corrupted_activation, index, clean_activation):
    """index (layer, pos, head): one head at one position, activation [batch pos head_index d_head]."""
    _, pos, head = index
    corrupted_activation[:, pos, head] = clean_activation[:, pos, head]
    return corrupted_activation


def layer_head_vector_patch_setter(corrupted_activation, index, clean_activation):
    """index (layer, head): one head at every position, activation [batch pos head_index d_head]."""
    _, head = index
    corrupted_activation[:, :, head] = clean_activation[:, :, head]
    return corrupted_activation


def layer_head_pattern_patch_setter(corrupted_activation, index, clean_activation):
    """index (layer, head): a head's whole pattern, activation [batch head_index dest_pos src_pos]."""
    _, head = index
    corrupted_activation[:, head] = clean_activation[:, head]
    return corrupted_activation


def layer_head_pos_pattern_patch_setter(corrupted_activation, index, clean_activation):
    """index (layer, head, dest_pos): one row of a head's pattern, activation [batch head_index dest_pos src_pos]."""
    _, head, dest = index
    corrupted_activation[:, head, dest] = clean_activation[:, head, dest]
    return corrupted_activation


def layer_head_dest_src_pos_pattern_patch_setter(corrupted_activation, index, clean_activation):
    """index (layer, head, dest_pos, src_pos): one entry of a head's pattern."""
    _, head, dest, src = index
    corrupted_activation[:, head, dest, src] = clean_activation[:, head, dest, src]
    return corrupted_activation


def _axis_size(model, axis: str, n_pos: int) -> int:
    sizes = {"layer": model.cfg.n_layers, "pos": n_pos, "dest_pos": n_pos, "src_pos": n_pos,
             "head": model.cfg.n_heads, "head_index": model.cfg.n_heads}
    if axis not in sizes:
        raise ValueError(f"index_axis_names: unknown axis {axis!r}; the axes are {list(sizes)} (layer first).")
    return sizes[axis]


@torch.no_grad()
def generic_activation_patch(model, corrupted_tokens: Int[torch.Tensor, "batch pos"], clean_cache, patching_metric,
                             patch_setter, activation_name: str, index_axis_names=None, index_df=None,
                             return_index_df: bool = False, max_batch: int = 64):
    """The metric after each patch ``patch_setter(corrupted_activation, index, clean_activation)`` of the
    activation ``activation_name`` of layer ``index[0]``, for every index of ``index_axis_names`` (a grid, the
    result has one dim per axis) or for every row of ``index_df`` (a pandas DataFrame; the result is flat).

    As ``activation_patching``, the corrupted batch is repeated once per patch (at most ``max_batch``
    sequences per pass) and each pass starts at the patched layer from the corrupted residual stream.
    With ``return_index_df`` also returns the DataFrame of indices (needs pandas).
    """
    corrupted_tokens = _check_tokens(model, corrupted_tokens, "corrupted_tokens").to(model.cfg.device)
    batch, n_pos = corrupted_tokens.shape
    if (index_df is None) == (index_axis_names is None):
        raise ValueError("generic_activation_patch: pass exactly one of index_axis_names (e.g. ('layer', 'pos')) "
                         "and index_df (a DataFrame of indices, layer in its first column).")
    if index_df is None:
        shape = [_axis_size(model, a, n_pos) for a in index_axis_names]
        grids = torch.meshgrid(*[torch.arange(s) for s in shape], indexing="ij")
        index = torch.stack([g.flatten() for g in grids], dim=1)  # [n_patches n_axes], row-major
    else:
        index = torch.tensor(index_df.to_numpy(), dtype=torch.long)
        shape = [len(index)]
    resid_names = [utils.get_act_name("resid_pre", layer) for layer in range(model.cfg.n_layers)]
    _, corrupted_cache = model.run_with_cache(corrupted_tokens, names_filter=resid_names,
                                              stop_at_layer=model.cfg.n_layers)
    per_pass = max(1, max_batch // batch)
    values = torch.zeros(len(index))
    for layer in index[:, 0].unique().tolist():
        name = utils.get_act_name(activation_name, layer)
        clean = clean_cache[name].to(model.cfg.device)
        for rows in (index[:, 0] == layer).nonzero().flatten().split(per_pass):

            def hook(activation, hook, rows=rows, clean=clean):
                for copy, row in zip(activation.unflatten(0, (len(rows), batch)), rows.tolist(), strict=True):
                    patched = patch_setter(copy, index[row].tolist(), clean)
                    if patched is not copy:
                        copy.copy_(patched)
                return activation

            resid = corrupted_cache["resid_pre", layer].repeat(len(rows), 1, 1)
            logits = model.run_with_hooks(resid, start_at_layer=layer, fwd_hooks=[(name, hook)])
            for copy_logits, row in zip(logits.unflatten(0, (len(rows), batch)), rows.tolist(), strict=True):
                values[row] = _scalar(patching_metric(copy_logits), f"patch {tuple(index[row].tolist())}")
    values = values.reshape(shape).to(model.cfg.device)
    if not return_index_df:
        return values
    if index_df is None:
        import pandas as pd  # optional: only this return value needs it

        index_df = pd.DataFrame(index.numpy(), columns=list(index_axis_names))
    return values, index_df


def _patch(kind: str):
    def patch(model, corrupted_tokens, clean_cache, patching_metric):
        result = activation_patching(model, corrupted_tokens, clean_cache, patching_metric, kind=kind)
        return result.values.to(model.cfg.device)

    patch.__doc__ = (f"Classic name: the '{kind}' map of ``activation_patching``, a tensor "
                     f"[{' '.join(PATCH_KINDS[kind])}] on the model's device.")
    return patch


def _generic(activation_name: str, setter, axes: tuple[str, ...]):
    def patch(model, corrupted_tokens, clean_cache, patching_metric):
        return generic_activation_patch(model, corrupted_tokens, clean_cache, patching_metric, setter,
                                        activation_name, index_axis_names=axes)

    patch.__doc__ = f"Classic name: patch '{activation_name}' for each ({', '.join(axes)}); a tensor of that shape."
    return patch


get_act_patch_resid_pre = _patch("resid_pre")
get_act_patch_resid_mid = _patch("resid_mid")
get_act_patch_attn_out = _patch("attn_out")
get_act_patch_mlp_out = _patch("mlp_out")
get_act_patch_attn_head_out_by_pos = _patch("z_by_pos")
get_act_patch_attn_head_out_all_pos = _patch("z")
get_act_patch_attn_head_q_by_pos = _generic("q", layer_pos_head_vector_patch_setter, ("layer", "pos", "head"))
get_act_patch_attn_head_k_by_pos = _generic("k", layer_pos_head_vector_patch_setter, ("layer", "pos", "head"))
get_act_patch_attn_head_v_by_pos = _generic("v", layer_pos_head_vector_patch_setter, ("layer", "pos", "head"))
get_act_patch_attn_head_q_all_pos = _generic("q", layer_head_vector_patch_setter, ("layer", "head"))
get_act_patch_attn_head_k_all_pos = _generic("k", layer_head_vector_patch_setter, ("layer", "head"))
get_act_patch_attn_head_v_all_pos = _generic("v", layer_head_vector_patch_setter, ("layer", "head"))
get_act_patch_attn_head_pattern_all_pos = _generic("pattern", layer_head_pattern_patch_setter, ("layer", "head_index"))
get_act_patch_attn_head_pattern_by_pos = _generic("pattern", layer_head_pos_pattern_patch_setter,
                                                  ("layer", "head_index", "dest_pos"))
get_act_patch_attn_head_pattern_dest_src_pos = _generic("pattern", layer_head_dest_src_pos_pattern_patch_setter,
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
