"""Bigger models: a chosen precision, one copy of the weights in memory while loading, and the modules spread over
devices, the CPU or the disk with Hugging Face accelerate. ``HookedTransformer.from_pretrained`` loads through here.

Loading, in order:

1. the config (from the registry or the model's ``config.json``);
2. the weights that are not in a block (embeddings, final LayerNorm, unembedding), read, converted to classic names
   and processed (fold_ln...) in float32 (on copies of a 16-bit piece, changed in place), then cast to ``dtype``;
3. the model, built on the meta device (its parameters take no memory and are not initialised);
4. its placement: one device (``device``), or ``device_map`` (a dict over the model's module names in accelerate's
   format, e.g. ``{"embed": 0, "pos_embed": 0, "blocks.0": 0, ..., "ln_final": 1, "unembed": 1}``, or "auto" /
   "balanced" / "sequential", which accelerate computes from ``max_memory``, a block being never split);
5. each block in turn: its tensors read, converted, processed, cast, and given to the model where it lives (on its
   device; for ``"disk"``, written to ``offload_folder`` and read back at each forward pass, by accelerate).

Each tensor reaches the model once: the peak memory is the model's parameters plus one block (or the globals) in
float32. Safetensors files (one, or the shards of an index) are read one tensor at a time with plain reads
(``hub.SafetensorsReader``), straight into the pieces: the globals, then each layer, converted when that piece is
processed, so neither the file nor a whole state dict is ever in memory. The other sources (classic ``.pth`` files,
``pytorch_model.bin``, the course's models, a transformers model in memory) give their whole state dict first,
which is then processed and handed over block by block, each piece leaving the state dict as it goes.

The processing steps (``helpers.weights``) act on each block apart and on the globals apart, so they are run on
each piece with a one-block (or zero-block) config; the globals a step also reads when it processes a block
(``ln_final``, ``unembed``...) are stood in for by small zero tensors whose results are dropped.

With a ``device_map`` the residual stream moves only at block boundaries: accelerate's hooks on the embeddings,
each block, ``ln_final`` and ``unembed`` move their inputs to their device; the model's output comes back to the
input's device. Hook functions receive activations on the device where they are computed; a tensor a hook
returns is moved there (``checks.hook_output``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import torch

from helpers import checks, hub, loading, weights
from helpers.config import HookedTransformerConfig
from helpers.conversion import gpt2
from helpers.hub import DamagedFileError, SafetensorsReader

#: The precisions from_pretrained loads in, and the names it accepts for them.
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}
#: accelerate's names for the ways it computes a device map.
AUTO_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
NO_SPLIT = ["TransformerBlock"]  # a device map never cuts a block: the residual stream moves between blocks only

_LAYER = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")  # the first integer segment of a weight's name: its layer


def resolve_dtype(dtype) -> torch.dtype:
    """``dtype`` as a torch dtype (torch.float32 / float16 / bfloat16 / float64, or a name of ``DTYPES``)."""
    if isinstance(dtype, str):
        key = dtype.removeprefix("torch.").lower()
        if key in DTYPES:
            return DTYPES[key]
    elif dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        return dtype
    raise ValueError(f"dtype={dtype!r} is not a precision helpers loads in: use torch.float32 (the default), "
                     "torch.bfloat16 or torch.float16 (half the memory; bfloat16 keeps float32's range), or "
                     "torch.float64.")


def layer_of(name: str) -> int | None:
    """The layer a weight belongs to, read from its name (``h.3.attn.c_attn.weight``, ``blocks.3.mlp.W_in``: 3);
    None for the weights outside the blocks."""
    match = _LAYER.search(name)
    return None if match is None else int(match.group(1))


def _rename_layer(name: str, new: int) -> str:
    match = _LAYER.search(name)
    return name[:match.start(1)] + str(new) + name[match.end(1):]


def _stand_in(shape: tuple[int, ...], dtype: torch.dtype, d_model: int) -> torch.Tensor:
    """Zeros shaped like a weight outside the blocks, with every dimension but d_model cut to 1: what the conversion
    and processing of one block read of the globals, for results that are dropped."""
    return torch.zeros([s if s == d_model else 1 for s in shape], dtype=dtype)


class _LayerView(Mapping):
    """The weights of one layer of a source (renamed to layer 0) with stand-ins for the weights outside the blocks;
    ``layer=None``: the weights outside the blocks only, as they are. Each tensor is read in ``dtype``."""

    def __init__(self, source: SafetensorsReader, layer: int | None, d_model: int, dtype: torch.dtype):
        self.source, self.layer, self.d_model, self.dtype = source, layer, d_model, dtype
        self.names = {(n if layer is None or layer_of(n) is None else _rename_layer(n, 0)): n
                      for n in source if layer_of(n) == layer or (layer is not None and layer_of(n) is None)}

    def __getitem__(self, name: str) -> torch.Tensor:
        original = self.names[name]
        if self.layer is not None and layer_of(original) is None:
            return _stand_in(self.source.shape(original), self.dtype, self.d_model)
        return self.source[original].to(self.dtype)  # no copy when the file holds that precision

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


# ================================================================================================
# The pieces of a model: groups of the globals, then each block, in classic names
# ================================================================================================
#
# A piece is handed over in a list (``[dict]``) that the next step empties: whoever processes a piece holds its
# only reference, so that each tensor a processing step replaces is freed as soon as the step is done with it.

Piece = dict[str, torch.Tensor]
# (None, [a group of the globals with stand-ins for the others], the group's names) ..., then (layer, [block], None)
Pieces = Iterator[tuple[int | None, list[Piece], list[str] | None]]


def _layer_config(cfg: HookedTransformerConfig, layer: int | None) -> HookedTransformerConfig:
    """The config of a model made of block ``layer`` alone (of no block for the globals, ``layer`` None)."""
    blocks = slice(0, 0) if layer is None else slice(layer, layer + 1)
    attn_types = None if cfg.attn_types is None else cfg.attn_types[blocks]
    return dataclasses.replace(cfg, n_layers=len(range(cfg.n_layers)[blocks]), attn_types=attn_types)


def _cast_(piece: Piece, dtype: torch.dtype) -> Piece:
    """Cast the float tensors of ``piece`` to ``dtype``, replacing them one at a time (in the dict)."""
    for name in list(piece):
        if piece[name].is_floating_point():
            piece[name] = piece.pop(name).to(dtype)
    _release_freed_memory()
    return piece


def _global_groups(names) -> list[list[str]]:
    """The globals in the groups they are processed in: ``ln_final`` with ``unembed`` (folding reads both), every
    other module (embed, pos_embed...) alone; one large matrix at a time."""
    groups: dict[str, list[str]] = {}
    for name in names:
        module = name.split(".")[0]
        groups.setdefault("unembed" if module == "ln_final" else module, []).append(name)
    return list(groups.values())


def _split_globals(globals_: Piece, d_model: int) -> Pieces:
    """Each group of the globals as a piece, with stand-ins for the other globals (emptying ``globals_``)."""
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in globals_.items()}
    for group in _global_groups(list(globals_)):
        holder = [{k: _stand_in(shape, dtype, d_model) for k, (shape, dtype) in shapes.items() if k not in group}]
        holder[0].update((k, globals_.pop(k)) for k in group)
        yield None, holder, group


def _streamed_pieces(source: SafetensorsReader, cfg: HookedTransformerConfig, dtype: torch.dtype,
                     convert: Callable[[Mapping, HookedTransformerConfig], Piece]) -> Pieces:
    """The pieces of a model converted from ``source`` one layer at a time by ``convert(source, cfg)`` (a conversion
    of helpers.conversion, run with a config of 0 layers for the globals and of 1 layer for each block). Each tensor
    is read in ``dtype``, as if the file held that precision: ``convert`` only moves numbers (GPT-2's renames,
    splits and transposes), so this is its result cast to ``dtype``, and a 16-bit load never holds a float32
    embedding beside its converted unembedding."""
    globals_ = convert(_LayerView(source, None, cfg.d_model, dtype), _layer_config(cfg, None))
    _release_freed_memory()  # the float32 tensors read
    yield from _split_globals(globals_, cfg.d_model)
    one = _layer_config(cfg, 0)
    for layer in range(cfg.n_layers):
        yield layer, [convert(_LayerView(source, layer, cfg.d_model, dtype), one)], None


def _pieces(take: Callable[[int | None], Piece], cfg: HookedTransformerConfig, dtype: torch.dtype) -> Pieces:
    """The pieces of a model whose classic tensors ``take(layer)`` gives one block at a time (``take(None)``: those
    outside the blocks, first)."""
    globals_ = _cast_(take(None), dtype)
    stand_ins = {k: _stand_in(tuple(v.shape), v.dtype, cfg.d_model) for k, v in globals_.items()}
    yield from _split_globals(globals_, cfg.d_model)
    for layer in range(cfg.n_layers):
        prefix = f"blocks.{layer}."
        holder = [{"blocks.0." + k.removeprefix(prefix): v for k, v in take(layer).items()}]
        holder[0].update(stand_ins)
        yield layer, [_cast_(holder.pop(), dtype)], None


def _taker(sd: dict[str, torch.Tensor]) -> Callable[[int | None], Piece]:
    """``take(layer)`` of a whole classic state dict: the tensors of block ``layer`` (None: those outside the
    blocks), taken out of it (the dict is emptied as they go)."""
    def take(layer: int | None) -> Piece:
        if layer is None:
            names = [k for k in sd if not k.startswith("blocks.")]
        else:
            names = [k for k in sd if k.startswith(f"blocks.{layer}.")]
        return {k: sd.pop(k) for k in names}

    return take


_FLAGS = ("fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases", "refactor_factored_attn_matrices")


def _process(holder: list[Piece], layer: int | None, group: list[str] | None, cfg: HookedTransformerConfig,
             processing: dict, dtype: torch.dtype) -> tuple[Piece, str | None]:
    """The piece in ``holder`` (taken out of it: the processing steps hold its only reference) after the processing
    steps, computed in float32, with its real names (the block's, or the group's of the globals), and the
    normalization type they leave. The piece is in ``dtype``: in any other than float32, its float32 tensors are
    fresh copies, which the steps change in place."""
    cfg, in_place = _layer_config(cfg, layer), dtype != torch.float32
    if set(weights.PROCESSING) == set(_FLAGS):
        # Keywords written out: a call with **flags keeps its positional arguments (the piece) alive until it returns.
        f = processing
        processed, normalization = weights.process_state_dict(
            _cast_(holder.pop(), torch.float32), cfg, in_place, fold_ln=f["fold_ln"],
            center_writing_weights=f[_FLAGS[1]], center_unembed=f["center_unembed"],
            fold_value_biases=f["fold_value_biases"], refactor_factored_attn_matrices=f[_FLAGS[4]])
    else:  # a processing step this module does not know: the same result, with the piece in memory twice
        processed, normalization = weights.process_state_dict(_cast_(holder.pop(), torch.float32), cfg, in_place,
                                                              **processing)
    if layer is None:
        return {k: v for k, v in processed.items() if k in group}, normalization
    return {f"blocks.{layer}." + k.removeprefix("blocks.0."): v for k, v in processed.items()
            if k.startswith("blocks.0.")}, normalization


# ================================================================================================
# Where the weights come from
# ================================================================================================


def _gpt2_source(model_name: str, hf_model, checkpoint_index, checkpoint_value, dtype: torch.dtype,
                 cfg_overrides: dict):
    """(config, pieces, tokenizer) of a GPT-2 whose weights are a safetensors file (a Hub repository or a
    save_pretrained directory), read one layer at a time; None for any other source."""
    user_model, name, spec = loading._check_request(model_name, hf_model, checkpoint_index, checkpoint_value,
                                                    cfg_overrides)
    if hf_model is not None or not (user_model or spec.family == "hf-gpt2"):
        return None
    if user_model and loading._user_raw_config(model_name, None) is not None:
        return None  # a directory of another family: loading converts it whole
    if user_model:
        directory = Path(model_name).expanduser()
        config_file, weights_file = directory / "config.json", directory / "model.safetensors"
        if not (config_file.is_file() and weights_file.is_file()):
            return None  # loading's own path gives the errors (and reads pytorch_model.bin)
        repair = loading._user_dir_repair(directory)
    else:
        try:
            config_file = hub._hub_file(spec.repo, "config.json")
            weights_file = hub._hub_file(spec.repo, "model.safetensors", optional=True)
        except hub._NotAvailable:
            return None  # loading's own path gives the offline message
        if weights_file is None:
            return None

        def repair(filename: str) -> str:
            return hub._repair(spec.repo, filename)
    hf_config = loading._read_gpt2_config(config_file, repair)
    source = SafetensorsReader(weights_file, repair(Path(weights_file).name))
    _check_gpt2(source, hf_config, config_file, repair)
    shown = directory.name if user_model else name
    config = loading._final_config(gpt2.gpt2_config(hf_config, shown), name, user_model, dict(cfg_overrides))
    if user_model:
        tokenizer = loading._tokenizer_from_dir(directory)
    else:
        tokenizer = loading._gpt2_tokenizer_of(name, spec, config.tokenizer_name)
    return config, _streamed_pieces(source, config, dtype, _gpt2_convert), tokenizer


def _gpt2_convert(source: Mapping, cfg: HookedTransformerConfig) -> Piece:
    return gpt2.convert_gpt2_weights(source, cfg)


class _Unprefixed(Mapping):
    """A GPT-2 source with the names ``loading`` checks: without ``transformer.``."""

    def __init__(self, source: SafetensorsReader):
        self.source = source
        self.names = {n.removeprefix("transformer."): n for n in source}

    def __getitem__(self, name):
        return self.source[self.names[name]]

    def __iter__(self):
        return iter(self.names)

    def __len__(self):
        return len(self.names)


def _check_gpt2(source: SafetensorsReader, hf_config, config_file, repair: Callable[[str], str]) -> None:
    """The checks loading makes of a GPT-2's weights (every tensor there, of its config's shape, float, finite), one
    tensor in memory at a time; ``repair(file name)`` says how to get a file again."""
    plain = _Unprefixed(source)
    loading._check_tensors(plain, gpt2.gpt2_shapes(hf_config), source.path, f"its config.json ({config_file})",
                           repair(Path(source.path).name))
    extra = sorted({layer_of(k) for k in plain if re.match(r"h\.\d+\.", k)} - set(range(hf_config.n_layer)))
    if extra:
        raise DamagedFileError(f"The weights file {source.path} holds layer {extra[0]}, but its config.json "
                               f"({config_file}) says n_layer={hf_config.n_layer}: the two files do not match; "
                               f"{repair('config.json')}.")


def _source(model_name, checkpoint_index, checkpoint_value, hf_model, dtype: torch.dtype, cfg_overrides: dict):
    """(config, pieces, tokenizer): streamed when the weights files allow it, else from loading's whole state dict."""
    streamed = _gpt2_source(model_name, hf_model, checkpoint_index, checkpoint_value, dtype, cfg_overrides)
    if streamed is not None:
        return streamed
    cfg, loaded, tokenizer = loading._load(model_name, checkpoint_index, checkpoint_value, hf_model,
                                           torch.float32 if dtype.itemsize >= 4 else dtype, True, cfg_overrides)
    return cfg, _pieces(loaded if callable(loaded) else _taker(loaded), cfg, dtype), tokenizer


# ================================================================================================
# Building the model and placing its weights
# ================================================================================================


def _device_map(model, device_map, max_memory, dtype: torch.dtype) -> dict[str, object]:
    """accelerate's device map of ``model`` (a meta model): the given dict, checked, or the one accelerate computes
    for "auto" / "balanced" / "balanced_low_0" / "sequential" within ``max_memory``."""
    from accelerate.utils import check_device_map, get_balanced_memory, infer_auto_device_map  # heavy: on demand

    if isinstance(device_map, str):
        if device_map not in AUTO_MAPS:
            raise ValueError(f"device_map={device_map!r}: give a dict {{module name: device}} (e.g. {{'embed': 0, "
                             f"'blocks.0': 0, ..., 'unembed': 1}}) or one of {AUTO_MAPS}.")
        if device_map != "sequential":
            max_memory = get_balanced_memory(model, max_memory=max_memory, no_split_module_classes=NO_SPLIT,
                                             dtype=dtype, low_zero=device_map == "balanced_low_0")
        return dict(infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=NO_SPLIT,
                                          dtype=dtype))
    if not isinstance(device_map, Mapping):
        raise TypeError(f"device_map must be a dict {{module name: device}} or one of {AUTO_MAPS}, "
                        f"got {type(device_map).__name__}.")
    names = {n for n, _ in model.named_modules()}
    unknown = [k for k in device_map if k not in names]
    if unknown:
        raise ValueError(f"device_map names {unknown}, which are not modules of this model. Its modules are "
                         f"'' (all), 'embed', 'pos_embed', 'blocks', 'blocks.0' ... 'blocks.{model.cfg.n_layers - 1}', "
                         "'ln_final', 'unembed' (and their submodules: 'blocks.0.attn', ...).")
    for device in device_map.values():
        if device != "disk":
            checks.device(f"cuda:{device}" if isinstance(device, int) else device)
    device_map = dict(device_map)
    check_device_map(model, device_map)
    return device_map


def _where(name: str, device_map: dict) -> object:
    """The device of a weight: that of the longest module name of ``device_map`` that contains it."""
    parts = name.split(".")
    for end in range(len(parts), -1, -1):
        key = ".".join(parts[:end])
        if key in device_map:
            device = device_map[key]
            return f"cuda:{device}" if isinstance(device, int) else device
    raise KeyError(name)


def _main_device(device_map: dict) -> str:
    """Where inputs go: the first device of the map that is not the CPU or the disk (the CPU if none)."""
    devices = [d for d in device_map.values() if d not in ("cpu", "disk")]
    device = devices[0] if devices else "cpu"
    return f"cuda:{device}" if isinstance(device, int) else str(device)


def from_pretrained(cls, model_name: str, checkpoint_index=None, checkpoint_value=None, hf_model=None, tokenizer=None,
                    processing: dict | None = None, device_map=None, max_memory=None, offload_folder=None,
                    **cfg_overrides):
    """A ``cls`` (HookedTransformer) loaded as described in this module's docstring."""
    dtype = resolve_dtype(cfg_overrides.pop("dtype", torch.float32))
    if device_map is not None and cfg_overrides.get("device") is not None:
        raise ValueError("Give device (one device for the whole model) or device_map (a device per module), not both.")
    if device_map is None and (max_memory is not None or offload_folder is not None):
        raise ValueError("max_memory and offload_folder go with device_map (e.g. device_map='auto').")
    cfg, pieces, own_tokenizer = _source(model_name, checkpoint_index, checkpoint_value, hf_model, dtype,
                                         cfg_overrides)
    source_cfg = cfg  # the processing steps read the normalization the weights come with
    processing = weights.valid_processing(cfg, **(processing or {}))  # once: a step left off is said once
    layer, holder, group = next(pieces)  # a group of the globals: it tells the normalization the model needs
    done, normalization = _process(holder, layer, group, source_cfg, processing, dtype)
    cfg = dataclasses.replace(cfg, dtype=dtype, normalization_type=normalization)
    model = _empty_model(cls, cfg, tokenizer if tokenizer is not None else own_tokenizer)

    if device_map is None:
        checks.device(cfg.device)
        placement = {"": cfg.device}
    else:
        placement = _device_map(model, device_map, max_memory, dtype)
        model.cfg.device = cfg.device = _main_device(placement)
    offload_index = {} if "disk" in placement.values() else None
    if offload_index is not None:
        if offload_folder is None:
            raise ValueError("device_map puts modules on the disk: give offload_folder=<a directory> to hold them.")
        os.makedirs(offload_folder, exist_ok=True)
    given = _give(model, done, placement, dtype, offload_folder, offload_index)
    del done
    _release_freed_memory()
    for layer, holder, group in pieces:
        processed = _process(holder, layer, group, source_cfg, processing, dtype)[0]
        given |= _give(model, processed, placement, dtype, offload_folder, offload_index)
        del processed
        _release_freed_memory()
    missing = [name for name, _ in model.named_parameters() if name not in given]
    if missing:
        raise KeyError(f"The weights file gives no value for {missing}.")
    if device_map is None:
        model.to(cfg.device)  # the buffers (the causal mask), built on the CPU; the weights are there already
    else:
        _dispatch(model, placement, offload_folder, offload_index)
    model.eval()
    return model


def _release_freed_memory() -> None:
    """Give the memory of the tensors freed so far back to the system. glibc's allocator keeps freed blocks of a
    few MB (a block's weights) for later use, so the process would otherwise grow by some of every piece."""
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None


def _empty_model(cls, cfg: HookedTransformerConfig, tokenizer):
    """``cls(cfg)`` with its parameters on the meta device (no memory, not initialised); buffers are real."""
    from accelerate import init_empty_weights  # heavy: on demand

    with init_empty_weights(include_buffers=False):
        return cls(cfg, tokenizer=tokenizer, move_to_device=False)


def _give(model, piece: Piece, placement: dict, dtype: torch.dtype, offload_folder, offload_index) -> set[str]:
    """Put the tensors of ``piece`` in the model, cast to ``dtype``, each on its device (or on the disk); their
    names."""
    from accelerate.utils import offload_weight  # heavy: on demand

    here = {}
    for name, tensor in piece.items():
        device = _where(name, placement)
        tensor = tensor.to(dtype) if tensor.is_floating_point() else tensor
        if device == "disk":
            offload_weight(tensor, name, offload_folder, index=offload_index)
        else:
            here[name] = tensor.to(device)
    _, unexpected = model.load_state_dict(here, strict=False, assign=True)
    if unexpected:
        raise KeyError(f"The converted weights hold tensors the model does not have: {unexpected}.")
    return set(piece)


def _dispatch(model, device_map: dict, offload_folder, offload_index) -> None:
    """accelerate's hooks: each module of the map runs on its device (its inputs moved there), weights on the disk
    are read at each forward pass."""
    from accelerate import dispatch_model  # heavy: on demand
    from accelerate.utils import save_offload_index

    if offload_index:
        save_offload_index(offload_index, offload_folder)
    dispatch_model(model, device_map, main_device=model.cfg.device, offload_dir=offload_folder,
                   offload_index=offload_index or None)
