"""Find a model by name and read its config, weights and tokenizer; ``HookedTransformer.from_pretrained``
builds the model from what ``load_pretrained`` returns.

Where the weights come from:

- GPT-2 (gpt2 / gpt2-small, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2): the model's Hugging Face
  repository (``config.json`` and ``model.safetensors``), converted by helpers.conversion.gpt2.
- Neel Nanda's toy models (attn-only-1l..4l, gelu-1l..4l, solu-1l..4l, each with ~160 training checkpoints)
  and othello-gpt: state dicts already in the classic format (``blocks.0.attn.W_Q`` ...), in
  ``NeelNanda/...`` repositories; their configurations are known here.
- The course's own models (course-gpt2, course-attn-only-2l, course-othello-gpt): ``data/models``,
  with no network at all (see helpers.course_models).
- The families beyond GPT-2 (family "hf": Qwen/Qwen2.5-0.5B, Qwen/Qwen3-0.6B, EleutherAI/pythia-70m and -160m with
  their checkpoints, the revisions ``step<N>``, meta-llama/Llama-3.2-1B, mistralai/Mistral-7B-v0.1,
  google/gemma-2-2b, google/gemma-3-270m, -1b-pt and -4b-pt, allenai/OLMo-2-0425-1B): the repository's
  ``config.json``, its weights (``model.safetensors``, or the shards an index names, read one at a time; a
  checkpoint's ``pytorch_model.bin``) and its tokenizer, converted by the family's module of helpers.conversion.
  ARENA's attn_only_2L_half is a classic state dict.
- Any other Hub repository ("owner/name") of a supported architecture (helpers.conversion.SUPPORTED_ARCHITECTURES):
  read as its family's registered models are (its config.json first: another architecture is refused before any
  weights are downloaded), with the repository's own tokenizer.
- A user's own model of any supported architecture:
  ``from_pretrained(name, hf_model=model)`` (a transformers model in memory) or ``from_pretrained("path/to/dir")``
  (a directory written by ``save_pretrained``); neither touches the network.

``get_pretrained_model_config`` gives a model's config without its weights; ``fill_missing_keys`` completes a state
dict with a model's own tensors (the classic names of both).

Files from the Hub go through helpers.hub: read from the local Hugging Face cache when they are there
(``HF_HOME``, ``HF_HUB_OFFLINE=1`` are honoured) and downloaded otherwise. When the Hub cannot be reached, loading
fails within seconds with a message that says how to pre-download the files and which course model
can stand in. Nothing downloaded is unpickled as code: ``.pth`` files load with
``torch.load(weights_only=True)``, and safetensors files are used wherever a repository has them.

What is read is checked (``DamagedFileError`` names the file, the tensor or field, and the repair, e.g.
``hf download gpt2 model.safetensors --force-download``): a cached blob against its name (its sha256, or git's
sha1 for small files) the first time a process reads it (0.8 s for GPT-2 small's 548 MB on the course's
2-core machine); JSON that does not parse and config fields that are missing; every weight tensor's presence,
shape (against the config), float dtype and finiteness.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from helpers import checks, conversion, course_models, hub
from helpers.config import FIELDS, HookedTransformerConfig
from helpers.conversion import classic, gpt2, hf_decoder
from helpers.hub import DamagedFileError, HubUnavailableError
from helpers.hub import download_file_from_hf as download_file_from_hf  # public here too, as before
from helpers.tokenizer import END_OF_TEXT
from helpers.weights import PROCESSING

NEEL_TOKENIZER = "NeelNanda/gpt-neox-tokenizer-digits"
#: Repositories whose files the Hub gives only after the licence is accepted (and `hf auth login`).
GATED = frozenset({"meta-llama/Llama-3.2-1B", "google/gemma-2-2b", "google/gemma-3-270m", "google/gemma-3-1b-pt",
                   "google/gemma-3-4b-pt"})
#: A Hub repository id, "owner/name": from_pretrained loads one outside the registry when its architecture is supported.
HUB_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


# ================================================================================================
# The registry
# ================================================================================================


@dataclass(frozen=True)
class ModelSpec:
    """How to load one model.

    family: "hf-gpt2" (a transformers GPT-2 repository), "hf" (a transformers repository of another supported
    architecture: helpers.conversion.SUPPORTED_ARCHITECTURES), "classic" (a state dict with classic names
    and a known config) or "course" (shipped in data/models).
    weights_file: the classic state dict's file; None for the toy models, whose repositories are
    listed to find ``*final.pth`` and the ``checkpoints/*_<label>.pth`` files.
    checkpoint_steps: an "hf" repository's training checkpoints, revisions ``step<N>`` (Pythia's).
    """

    family: str
    repo: str | None = None
    aliases: tuple[str, ...] = ()
    config: dict | None = None
    weights_file: str | None = None
    tokenizer_repo: str | None = None
    stand_in: str | None = None
    description: str = ""
    checkpoint_steps: tuple[int, ...] = ()


def _gpt2(repo: str, aliases: tuple[str, ...], description: str, stand_in: str = "course-gpt2") -> ModelSpec:
    return ModelSpec("hf-gpt2", repo, aliases, stand_in=stand_in, description=description)


def _toy(kind: str, n_layers: int) -> tuple[str, ModelSpec]:
    """Neel Nanda's 512-wide toy models trained on C4 + code (published hyperparameters)."""
    repo_prefix = {"attn-only": "Attn_Only", "gelu": "GELU", "solu": "SoLU"}[kind]
    name = f"{kind}-{n_layers}l"
    config = dict(n_layers=n_layers, d_model=512, d_head=64, n_heads=8, d_mlp=2048, n_ctx=1024,
                  d_vocab=48262, act_fn="gelu" if kind == "gelu" else "solu_ln", normalization_type="LN",
                  attn_only=kind == "attn-only", tokenizer_name=NEEL_TOKENIZER,
                  positional_embedding_type="standard", original_architecture="neel")
    spec = ModelSpec("classic", f"NeelNanda/{repo_prefix}_{n_layers}L512W_C4_Code",
                     (f"{name}-new", f"{name}-c4-code"), config, tokenizer_repo=NEEL_TOKENIZER,
                     stand_in="course-attn-only-2l",
                     description=f"{n_layers}-layer {kind} toy model (Neel Nanda), ~160 training checkpoints")
    return name, spec


MODELS: dict[str, ModelSpec] = {
    "gpt2": _gpt2("gpt2", ("gpt2-small",), "GPT-2 small (124M)"),
    "gpt2-medium": _gpt2("gpt2-medium", (), "GPT-2 medium (355M)"),
    "gpt2-large": _gpt2("gpt2-large", (), "GPT-2 large (774M)"),
    "gpt2-xl": _gpt2("gpt2-xl", (), "GPT-2 XL (1.5B)"),
    "distilgpt2": _gpt2("distilgpt2", ("distillgpt2", "distill-gpt2", "distil-gpt2", "gpt2-xs"),
                        "DistilGPT-2 (82M, 6 layers)",
                        # The course compares a second model with the first (gpt2-small -> course-gpt2).
                        stand_in="course-attn-only-2l"),
    **dict(_toy(kind, n) for kind in ("attn-only", "gelu", "solu") for n in (1, 2, 3, 4)),
    "othello-gpt": ModelSpec(
        "classic", "NeelNanda/Othello-GPT-Transformer-Lens", (),
        # 61 tokens (pass, then the 60 playable squares) and 59 moves read: helpers.othello's conventions.
        dict(n_layers=8, d_model=512, d_head=64, n_heads=8, d_mlp=2048, d_vocab=61, n_ctx=59, act_fn="gelu",
             normalization_type="LNPre"),
        weights_file="synthetic_model.pth", stand_in="course-othello-gpt",
        description="Othello-GPT trained on synthetic games (Li et al. 2022, ported by Neel Nanda)"),
    **{name: ModelSpec("course", description=description)
       for name, description in course_models.COURSE_MODELS.items()},
    # ----- the families beyond GPT-2 (helpers.conversion): transformers repositories -----
    "Qwen/Qwen2.5-0.5B": ModelSpec("hf", "Qwen/Qwen2.5-0.5B", ("qwen2.5-0.5b",), stand_in="course-llama",
                                   description="Qwen 2.5 0.5B (24 layers, d_model 896, grouped-query attention)"),
    "Qwen/Qwen3-0.6B": ModelSpec("hf", "Qwen/Qwen3-0.6B", ("qwen3-0.6b",), stand_in="course-gpt2",
                                 description="Qwen 3 0.6B (28 layers, d_model 1024, query/key norms)"),
    **{f"EleutherAI/pythia-{size}": ModelSpec(
        "hf", f"EleutherAI/pythia-{size}", (f"pythia-{size}",), stand_in="course-gpt2",
        checkpoint_steps=(0, *(2 ** i for i in range(10)), *range(1000, 143001, 1000)),
        description=f"Pythia {size} (GPT-NeoX), 154 training checkpoints") for size in ("70m", "160m")},
    "meta-llama/Llama-3.2-1B": ModelSpec("hf", "meta-llama/Llama-3.2-1B", ("llama-3.2-1b",), stand_in="course-gpt2",
                                         description="Llama 3.2 1B (16 layers, d_model 2048; gated on the Hub)"),
    "mistralai/Mistral-7B-v0.1": ModelSpec("hf", "mistralai/Mistral-7B-v0.1", ("mistral-7b",), stand_in="course-gpt2",
                                           description="Mistral 7B v0.1 (32 layers, sliding window 4096)"),
    "google/gemma-2-2b": ModelSpec("hf", "google/gemma-2-2b", ("gemma-2-2b",), stand_in="course-gpt2",
                                   description="Gemma 2 2B (26 layers, soft-capping, local/global layers; gated)"),
    "google/gemma-3-270m": ModelSpec("hf", "google/gemma-3-270m", ("gemma-3-270m",), stand_in="course-gpt2",
                                     description="Gemma 3 270M (18 layers, d_model 640, q/k norms, 5 local layers "
                                                 "in 6; gated)"),
    "google/gemma-3-1b-pt": ModelSpec("hf", "google/gemma-3-1b-pt", ("gemma-3-1b",), stand_in="course-gpt2",
                                      description="Gemma 3 1B (26 layers, d_model 1152; gated)"),
    "google/gemma-3-4b-pt": ModelSpec("hf", "google/gemma-3-4b-pt", ("gemma-3-4b",), stand_in="course-gpt2",
                                      description="Gemma 3 4B (34 layers, d_model 2560; its language model, without "
                                                  "the vision tower; gated)"),
    "allenai/OLMo-2-0425-1B": ModelSpec("hf", "allenai/OLMo-2-0425-1B", ("olmo-2-1b",), stand_in="course-gpt2",
                                        description="OLMo 2 1B (16 layers, norms after attention and MLP)"),
    # ARENA 1.2's two-layer attention-only model (classic format, shortformer positions, GPT-NeoX's tokenizer).
    "attn_only_2L_half": ModelSpec(
        "classic", "callummcdougall/attn_only_2L_half", ("callummcdougall/attn_only_2l_half", "attn-only-2l-half"),
        dict(n_layers=2, d_model=768, d_head=64, n_heads=12, n_ctx=2048, d_vocab=50278, attn_only=True,
             normalization_type=None, positional_embedding_type="shortformer", act_fn="gelu",
             tokenizer_name="EleutherAI/gpt-neox-20b", original_architecture="neel"),
        weights_file="attn_only_2L_half.pth", tokenizer_repo="EleutherAI/gpt-neox-20b",
        stand_in="course-attn-only-2l", description="ARENA 1.2's attention-only 2-layer model (12 heads, shortformer)"),
}

def _alias_map() -> dict[str, str]:
    names = {}
    for official, spec in MODELS.items():
        for alias in (official, *spec.aliases, *([spec.repo] if spec.repo else [])):
            names[alias.lower()] = official
    return names


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), list(_alias_map()), n=5, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def resolve_name(name: str) -> str:
    """The official name of a model from any of its names (case-insensitive), else a helpful error."""
    names = _alias_map()
    if name.lower() in names:
        return names[name.lower()]
    raise ValueError(f"Unknown model {name!r}.{_did_you_mean(name)} Known models: {', '.join(MODELS)}; or a Hub "
                     "repository of a supported architecture, as 'owner/name'.")


def _hub_repo_spec(repo: str) -> ModelSpec:
    """The entry of a Hub repository outside the registry, from its config.json: "hf-gpt2" for a GPT-2, "hf" for
    another supported architecture (any other gets a clear error now, before its weights are downloaded)."""
    unknown = (f"Unknown model {repo!r}: it is not in the registry, not a directory here, and",
               f"{_did_you_mean(repo)} Known models: {', '.join(MODELS)}.")
    try:
        raw = hub._read_json(hub._hub_file(repo, "config.json"), hub._repair(repo, "config.json"))
    except hub._NotAvailable as e:
        message = _unavailable_message(repo, e, ModelSpec("hf", repo))
        hint = _did_you_mean(repo).replace(" Did you mean", ", did you mean") or ", it is not in the registry either."
        raise HubUnavailableError(f"{message}\n(If {repo} is not the repository you meant{hint})") from None
    except hub.RepositoryNotFoundError:
        raise ValueError(f"{unknown[0]} the Hugging Face Hub has no repository of that name (or it is private: "
                         f"log in with `hf auth login` if it is yours).{unknown[1]}") from None
    except FileNotFoundError:
        raise ValueError(f"{unknown[0]} its Hub repository has no config.json: it is not a transformers model."
                         f"{unknown[1]}") from None
    if raw.get("model_type") == gpt2.MODEL_TYPE:
        return ModelSpec("hf-gpt2", repo, description="a GPT-2 on the Hub, outside the registry")
    conversion.family_for(raw, repo)  # an unsupported architecture: its error, listing the supported ones
    return ModelSpec("hf", repo, description="a Hub repository outside the registry")


def _outside_registry(model_name: str) -> bool:
    """Whether a name is a Hub repository id ("owner/name") that is none of the registry's names."""
    return model_name.lower() not in _alias_map() and bool(HUB_REPO.fullmatch(model_name))


def _spec(model_name: str) -> tuple[str, ModelSpec]:
    """(official name, entry) of a model: the registry's, or, for an "owner/name" outside it, the Hub repository's
    (read from its config.json), else the registry's error with its suggestions."""
    if _outside_registry(model_name):
        return model_name, _hub_repo_spec(model_name)
    name = resolve_name(model_name)
    return name, MODELS[name]


def is_available(model_name: str) -> bool:
    """Whether from_pretrained can get this model now: a course model, a reachable Hub, or a warm cache."""
    spec = ModelSpec("hf", model_name) if _outside_registry(model_name) else MODELS[resolve_name(model_name)]
    if spec.family == "course" or hub._online():
        return True
    try:
        return bool(hub._repo_files(spec.repo)[0])
    except hub._NotAvailable:
        return False


def _check_tensors(sd: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], path: str,
                   config: str, repair: str) -> None:
    """Every tensor of ``expected`` is in ``sd`` with that shape, a float dtype and finite values; ``config``
    says where the shapes come from."""
    for key, shape in expected.items():
        t = sd.get(key)
        if t is None:
            raise DamagedFileError(f"The weights file {path} has no tensor {key}, which {config} requires: the "
                                   f"file is incomplete or belongs to another model; {repair}.")
        if not t.dtype.is_floating_point:
            raise DamagedFileError(f"In the weights file {path}, tensor {key} has dtype {t.dtype}, not a float "
                                   f"dtype: the file is damaged; {repair}.")
        if tuple(t.shape) != shape:
            raise DamagedFileError(f"In the weights file {path}, tensor {key} has shape {tuple(t.shape)}, but "
                                   f"{config} gives {shape}: the file and its config do not match; {repair}.")
        if not t.sum().isfinite() and not torch.isfinite(t).all():  # the sum: 30x faster, exact unless huge
            raise DamagedFileError(f"In the weights file {path}, tensor {key} holds NaN or infinite values: the "
                                   f"file is damaged (or the model diverged in training); {repair}.")



# ================================================================================================
# Checkpoints
# ================================================================================================

_CHECKPOINT_FILE = re.compile(r"checkpoints/.*_(\d+)\.(pth|safetensors)")


def _toy_checkpoints(spec: ModelSpec) -> tuple[dict[int, str], list[str], bool]:
    """{label: file} of a toy model's checkpoints, its repository's files, and whether they are complete."""
    files, complete = hub._repo_files(spec.repo)
    found = {}
    for f in files:
        match = _CHECKPOINT_FILE.fullmatch(f)
        if match and (int(match.group(1)) not in found or f.endswith(".safetensors")):
            found[int(match.group(1))] = f
    return dict(sorted(found.items())), files, complete


def _has_checkpoints(spec: ModelSpec) -> bool:
    return spec.family == "course" or (spec.family == "classic" and spec.weights_file is None) or bool(
        spec.checkpoint_steps)


def _label_type(labels: list[int]) -> str:
    return "token" if labels and labels[-1] > 1e9 else "step"


def get_checkpoint_labels(model_name: str) -> tuple[list[int], str]:
    """The checkpoint schedule of a model and what it counts: ``(labels, "token" | "step")``.

    ``checkpoint_index=i`` loads the checkpoint labelled ``labels[i]``; ``checkpoint_value=v`` the
    one labelled ``v``.
    """
    name, spec = _spec(model_name)
    if spec.family == "course":
        return course_models.checkpoint_steps(name), "step"
    if spec.checkpoint_steps:  # Pythia: the revisions step<N> of its repository
        return list(spec.checkpoint_steps), "step"
    if _has_checkpoints(spec):  # a toy model: its checkpoints are the files of its repository
        try:
            found, _, complete = _toy_checkpoints(spec)
        except hub._NotAvailable as e:
            raise HubUnavailableError(_unavailable_message(name, e, spec)) from None
        if not complete:
            checks.warn(f"The Hub is unreachable: listing only the {len(found)} checkpoints of {name} "
                       "found in the local cache.")
        return list(found), _label_type(list(found))
    checkpointed = ", ".join(n for n, s in MODELS.items() if _has_checkpoints(s))
    raise ValueError(f"{name} has no training checkpoints. Models with checkpoints: {checkpointed}.")


def _pick_checkpoint(name: str, labels: list, label_type: str, checkpoint_index: int | None,
                     checkpoint_value: int | None):
    """The label chosen by checkpoint_index or checkpoint_value (clear errors when out of range), for toy
    models (labels from their Hub repository) and course models (their shipped steps) alike."""
    if checkpoint_index is not None:
        if not -len(labels) <= checkpoint_index < len(labels):
            raise IndexError(f"checkpoint_index={checkpoint_index} is out of range: {name} has {len(labels)} "
                             f"checkpoints (indices 0..{len(labels) - 1}, or negative from the end).")
        return labels[checkpoint_index]
    if checkpoint_value not in labels:
        shown = labels if len(labels) <= 12 else [*labels[:5], "...", *labels[-5:]]
        raise ValueError(f"{name} has no checkpoint at {label_type} {checkpoint_value}; its {len(labels)} "
                         f"checkpoints are labelled {shown} (see get_checkpoint_labels({name!r})).")
    return checkpoint_value


# ================================================================================================
# One loader per family: each returns (config dict, classic-named float32 state dict, tokenizer)
# ================================================================================================


def _load_hf_gpt2(name: str, spec: ModelSpec, checkpoint_index, checkpoint_value):
    config_file = hub._hub_file(spec.repo, "config.json")
    weights = hub._hub_file(spec.repo, "model.safetensors", optional=True) or hub._hub_file(spec.repo,
                                                                                    "pytorch_model.bin")
    config, sd = gpt2.convert_gpt2(*_read_gpt2(config_file, weights, lambda f: hub._repair(spec.repo, f)), name)
    return config, sd, _gpt2_tokenizer_of(name, spec, config["tokenizer_name"])


def _gpt2_tokenizer_of(name: str, spec: ModelSpec, tokenizer_name: str | None):
    """The tokenizer of a GPT-2 repository: None for the registered ones (their config's tokenizer_name "gpt2"),
    the repository's own for a GPT-2 outside the registry (a fine-tuned one may have added tokens); None without a
    word when it has none but GPT-2's vocabulary size, so that GPT-2's tokenizer is taken."""
    if name in MODELS:
        return None
    return _hub_tokenizer(spec.repo, quiet=tokenizer_name == "gpt2")


def _read_gpt2_config(config_file, repair):
    """A GPT-2's transformers config, read from its config.json and checked; ``repair(file name)`` says how to
    get a file again."""
    from transformers import GPT2Config  # heavy, and imported once the files are there: offline errors come fast

    raw = hub._read_json(config_file, repair("config.json"))
    for field in gpt2.REQUIRED_FIELDS:
        if not (isinstance(raw.get(field), int) and raw[field] > 0):
            raise DamagedFileError(f"{config_file} lacks the field {field!r} (a positive integer; it has "
                                   f"{raw.get(field, 'nothing')!r}): the file is damaged; {repair('config.json')}.")
    return GPT2Config.from_dict(raw)


def _read_gpt2(config_file, weights_file, repair) -> tuple:
    """A GPT-2's transformers config and state dict, read from its files and checked against each other."""
    hf_config = _read_gpt2_config(config_file, repair)
    name = Path(weights_file).name
    sd = hub._load_tensors(str(weights_file), repair(name))
    plain = {k.removeprefix("transformer."): v for k, v in sd.items()}
    _check_tensors(plain, gpt2.gpt2_shapes(hf_config), str(weights_file), f"its config.json ({config_file})",
                   repair(name))
    extra = sorted({int(k.split(".")[1]) for k in plain if re.match(r"h\.\d+\.", k)} - set(range(hf_config.n_layer)))
    if extra:
        raise DamagedFileError(f"The weights file {weights_file} holds layer {extra[0]}, but its config.json "
                               f"({config_file}) says n_layer={hf_config.n_layer}: the two files do not match; "
                               f"{repair('config.json')}.")
    return hf_config, sd


def _user_dir_repair(directory: Path):
    def repair(filename: str) -> str:
        return f"save the model to {directory} again with save_pretrained"
    return repair


def _load_user_gpt2(model_name: str, hf_model):
    """(config, state dict, tokenizer) of a user's GPT-2: a transformers model in memory (``hf_model``), or
    a directory written by ``save_pretrained`` (its tokenizer too, if it was saved there)."""
    if hf_model is not None:
        if not (hasattr(hf_model, "config") and callable(getattr(hf_model, "state_dict", None))):
            raise TypeError(f"hf_model= takes a transformers GPT-2 (GPT2LMHeadModel or GPT2Model, with its .config), "
                            f"got {type(hf_model).__name__}.")
        name = resolve_name(model_name) if model_name.lower() in _alias_map() else model_name
        config, sd = gpt2.convert_gpt2(hf_model.config, hf_model.state_dict(), name)
        return config, sd, None
    directory = Path(model_name).expanduser()
    weights = [directory / f for f in ("model.safetensors", "pytorch_model.bin") if (directory / f).is_file()]
    if not (directory / "config.json").is_file() or not weights:
        raise FileNotFoundError(f"{directory} is not a directory written by save_pretrained: it needs config.json "
                                "and model.safetensors (or pytorch_model.bin). Sharded checkpoints are not supported.")

    config, sd = gpt2.convert_gpt2(*_read_gpt2(directory / "config.json", weights[0], _user_dir_repair(directory)),
                                   directory.name)
    return config, sd, _tokenizer_from_dir(directory)


def _load_classic(name: str, spec: ModelSpec, checkpoint_index, checkpoint_value):
    config = dict(spec.config)
    if spec.weights_file is not None:
        filename = spec.weights_file
    else:
        found, files, complete = _toy_checkpoints(spec)
        if checkpoint_index is None and checkpoint_value is None:
            finals = [f for f in files if f.endswith(("final.safetensors", "final.pth"))]
            if not finals and complete:
                raise FileNotFoundError(f"The Hub repository {spec.repo} has no *final.pth file.")
            if not finals:
                raise hub._NotAvailable(spec.repo, "*final.pth", hub._offline_mode())
            filename = min(finals, key=lambda f: not f.endswith(".safetensors"))
        else:
            labels = list(found)
            if not complete and not labels:
                raise hub._NotAvailable(spec.repo, "checkpoints/", hub._offline_mode())
            if not complete and checkpoint_index is not None:
                checks.warn(f"The Hub is unreachable: checkpoint_index counts only the {len(labels)} "
                           f"checkpoints of {name} in the local cache.")
            label = _pick_checkpoint(name, labels, _label_type(labels), checkpoint_index, checkpoint_value)
            filename = found[label]
            config.update(checkpoint_value=label, checkpoint_index=labels.index(label))
    path = hub._hub_file(spec.repo, filename)
    tokenizer = _neel_tokenizer(spec.tokenizer_repo) if spec.tokenizer_repo else None
    repair = hub._repair(spec.repo, filename)
    sd = hub._load_tensors(path, repair)
    for key, ndim in classic.SIZE_TENSORS:  # the tensors the sizes are read from
        if key not in sd or sd[key].ndim != ndim:
            raise DamagedFileError(f"The weights file {path} has no {ndim}-dimensional tensor {key}: the file is "
                                   f"damaged or is not a classic-format state dict; {repair}.")
    config.update(classic.sizes_from_state_dict(sd))
    _check_tensors(sd, classic.classic_shapes(config), path, f"the {name} config", repair)
    return config, classic.convert_classic_weights(sd), tokenizer


def _neel_tokenizer(repo: str):
    """A fast tokenizer from a repository's tokenizer.json, with <|endoftext|> as BOS, EOS and padding."""
    from transformers import PreTrainedTokenizerFast  # heavy: imported when a tokenizer is needed

    return PreTrainedTokenizerFast(tokenizer_file=hub._hub_file(repo, "tokenizer.json"), bos_token=END_OF_TEXT,
                                   eos_token=END_OF_TEXT, unk_token=END_OF_TEXT, pad_token=END_OF_TEXT)


def _load_course(name: str, spec: ModelSpec, checkpoint_index, checkpoint_value):
    step = None
    if checkpoint_index is not None or checkpoint_value is not None:
        step = _pick_checkpoint(name, course_models.checkpoint_steps(name), "step", checkpoint_index,
                                checkpoint_value)
    cfg, sd = course_models.load_course_model(name, step)
    return cfg.to_dict(), sd, None


# ================================================================================================
# The families beyond GPT-2 (helpers.conversion): a transformers repository, directory or model
# ================================================================================================

#: The weight files a transformers checkpoint may have, in the order they are looked for.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


_LAYER_KEY = re.compile(r"layers\.(\d+)\.")  # a decoder tensor's name without its prefix: "layers.3.mlp..."


class _HFConversion:
    """The conversion of a transformers checkpoint of a supported family (``raw``: its config.json) to classic
    tensors in ``dtype``; ``config`` is its HookedTransformerConfig dict."""

    def __init__(self, raw: dict, name: str, where: str, repair, dtype: torch.dtype):
        family = conversion.family_for(raw, name)
        self.config = family.config_from_hf(raw, name)
        hf_decoder.check_sizes(self.config)
        self.cfg = HookedTransformerConfig.from_dict(self.config)
        self.layout = family.layout(raw)
        hf_shapes, self.strip, self.convert_tensor = conversion.converter(family)
        self.expected = hf_shapes(raw, self.layout, self.cfg)
        self.name, self.where, self.repair, self.dtype = name, where, repair, dtype

    def part_of(self, key: str) -> int | None:
        """The block a tensor (its name without the prefix) belongs to; None outside the blocks, and for a layer the
        config does not have (refused with the tensors outside the blocks)."""
        match = _LAYER_KEY.match(key)
        return None if match is None or int(match.group(1)) >= self.cfg.n_layers else int(match.group(1))

    def __call__(self, shards, parts) -> dict[str, torch.Tensor]:
        """The classic state dict of the tensors of ``shards`` (an iterable of (path, tensors): a state dict, or a
        ``SafetensorsReader`` whose tensors are read from disk one by one) that belong to ``parts`` (block indices,
        None for the tensors outside the blocks), each converted in float32, then kept in ``dtype``. Every tensor
        is checked (shape against the config, float dtype, finite); one of ``parts`` that is missing is named."""
        parts = set(parts)
        sd, seen, paths = {}, set(), []
        for path, tensors in shards:
            paths.append(str(path))
            for full_name in list(tensors):
                key = self.strip(full_name, self.layout)
                if self.part_of(key) not in parts:
                    continue
                if key in self.expected:
                    tensor = tensors.pop(full_name)
                    _check_tensors({key: tensor}, {key: self.expected[key]}, str(path), f"its config ({self.where})",
                                   self.repair(Path(path).name))
                    seen.add(key)
                else:
                    layer = _LAYER_KEY.match(key)
                    if layer and int(layer.group(1)) >= self.cfg.n_layers:
                        raise DamagedFileError(f"The weights file {path} holds layer {layer.group(1)}, but its "
                                               f"config ({self.where}) says {self.cfg.n_layers} layers: the files do "
                                               f"not match; {self.repair('config.json')}.")
                    if hf_decoder.NOT_WEIGHTS.match(key):
                        continue
                    tensor = tensors.pop(full_name)
                tensor = tensor.float()  # the file's tensor freed as soon as its float32 copy exists
                converted = self.convert_tensor(key, tensor, self.layout, self.cfg)
                del tensor
                for k in list(converted):  # cast one at a time: a tied embedding's float32 copies go in turn
                    sd[k] = converted.pop(k).to(self.dtype)
        self.check_complete({k for k in self.expected if self.part_of(k) in parts} - seen, paths)
        return hf_decoder.finish(sd, self.cfg, self.dtype, parts)

    def check_complete(self, missing: set[str], paths: list[str]) -> None:
        """A clear error naming the first of the ``missing`` tensors, if there are any."""
        if missing:
            raise DamagedFileError(f"The weights of {self.name} ({', '.join(paths)}) have no tensor {min(missing)}"
                                   f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}, which its "
                                   f"config ({self.where}) requires: the files are incomplete or belong to another "
                                   f"model; {self.repair(Path(paths[-1]).name if paths else 'model.safetensors')}.")


def _convert_hf(raw: dict, name: str, shards, where: str, repair, dtype: torch.dtype = torch.float32,
                lazy: bool = False) -> tuple[dict, dict[str, torch.Tensor] | Callable]:
    """(config dict, weights) of a transformers checkpoint of a supported family, ``raw`` its config.json and
    ``shards`` its files (see ``_HFConversion``): ``weights`` the whole classic state dict in ``dtype``, converted
    as the shards come, one at a time. With ``lazy``, when every shard is a safetensors file, ``weights`` is
    ``take(part)`` instead, which reads and converts the tensors of one block (``part``: its index) or those
    outside the blocks (None) when it is called; the names of the tensors are checked now."""
    convert = _HFConversion(raw, name, where, repair, dtype)
    if lazy:
        shards = list(shards)  # each file opened once: a safetensors file's header only is read now
        if all(isinstance(tensors, hub.SafetensorsReader) for _, tensors in shards):
            present = {convert.strip(n, convert.layout) for _, tensors in shards for n in tensors}
            convert.check_complete(set(convert.expected) - present, [str(path) for path, _ in shards])
            return convert.config, lambda part: convert(shards, [part])
    return convert.config, convert(shards, [None, *range(convert.cfg.n_layers)])


def _shards(weights: str, locate, repair):
    """(path, tensors) of each weight file of a checkpoint (``hub._open_tensors``), one at a time: ``weights`` is one of
    WEIGHT_FILES' paths; an index (``*.index.json``) names the shards, which ``locate(file name)`` finds."""
    if not weights.endswith(".index.json"):
        yield weights, hub._open_tensors(weights, repair(Path(weights).name))
        return
    index = hub._read_json(weights, repair(Path(weights).name))
    if not isinstance(index.get("weight_map"), dict):
        raise DamagedFileError(f"{weights} has no weight_map: the file is damaged; {repair(Path(weights).name)}.")
    for shard in sorted(set(index["weight_map"].values())):
        path = locate(shard)
        yield path, hub._open_tensors(path, repair(shard))


def _tokenizer_from_dir(directory: Path):
    """The tokenizer saved in a directory (None if there is none), with a padding token (its EOS if it has none)."""
    from transformers import AutoTokenizer  # heavy: only when there is a tokenizer to read

    if not (directory / "tokenizer.json").is_file() and not (directory / "vocab.json").is_file():
        return None
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    if tokenizer.pad_token is None:  # Llama's and GPT-2's have none; batches of prompts need one
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # helpers pads on the right (the causal mask is then enough)
    return tokenizer


def _load_hf(name: str, spec: ModelSpec, checkpoint_index, checkpoint_value, dtype: torch.dtype = torch.float32,
             lazy: bool = False):
    """A transformers repository of a supported architecture (Pythia's checkpoints are its revisions step<N>); with
    ``lazy``, its weights as ``_convert_hf`` gives them lazily."""
    revision = None
    label = None
    if checkpoint_index is not None or checkpoint_value is not None:
        labels, label_type = get_checkpoint_labels(name)
        label = _pick_checkpoint(name, labels, label_type, checkpoint_index, checkpoint_value)
        revision = f"step{label}"
    def repair(filename: str) -> str:
        return hub._repair(spec.repo, filename) + (f" --revision {revision}" if revision else "")

    raw = hub._read_json(hub._hub_file(spec.repo, "config.json", revision=revision), repair("config.json"))
    weights = _hub_weights(spec.repo, revision)
    config, sd = _convert_hf(raw, name, _shards(weights, lambda f: hub._hub_file(spec.repo, f, revision=revision),
                                                 repair), f"{spec.repo}/config.json", repair, dtype, lazy)
    if label is not None:
        config.update(checkpoint_value=label, checkpoint_index=list(spec.checkpoint_steps).index(label))
    return config, sd, _hub_tokenizer(spec.repo)


def _hub_tokenizer(repo: str, quiet: bool = False):
    """A Hub repository's tokenizer: its tokenizer.json, else a GPT-2's vocab.json and merges.txt, with those of
    TOKENIZER_FILES it has (from the cache, or downloaded when the Hub answers); None when it has neither (with a
    warning, unless ``quiet``)."""
    def fetch(filename: str) -> str | None:
        return hub._cached_file(repo, filename) or (hub._online() and hub._hub_file(repo, filename, optional=True)
                                                    or None)

    main = fetch("tokenizer.json")
    for extra in TOKENIZER_FILES[1:] + (() if main else ("vocab.json", "merges.txt")):
        fetch(extra)
    main = main or hub._cached_file(repo, "vocab.json")
    if main is None:
        if not quiet:
            where = "its Hub repository has" if hub._online() else "the local cache holds"
            checks.warn(f"{repo}: {where} no tokenizer.json (nor a GPT-2's vocab.json), so the model takes token "
                        "tensors only; give from_pretrained a tokenizer= to use text.")
        return None
    return _tokenizer_from_dir(Path(main).parent)


def _hub_weights(repo: str, revision: str | None) -> str:
    """The path of a repository's weights (one of WEIGHT_FILES): the cache first, then the Hub."""
    for filename in WEIGHT_FILES:
        path = hub._cached_file(repo, filename, revision)
        if path:
            return path
    if not hub._online():
        raise hub._NotAvailable(repo, "model.safetensors", hub._offline_mode(), revision)
    for filename in WEIGHT_FILES:
        path = hub._hub_file(repo, filename, optional=True, revision=revision)
        if path:
            return path
    raise FileNotFoundError(f"The Hub repository {repo} has none of the weight files {', '.join(WEIGHT_FILES)}.")


def _load_user_hf(model_name: str, hf_model, raw: dict, dtype: torch.dtype = torch.float32, lazy: bool = False):
    """(config, state dict, tokenizer) of a user's model of a supported family other than GPT-2: a transformers
    model in memory, or a ``save_pretrained`` directory (single or sharded; its tokenizer too, if saved there; with
    ``lazy``, its weights as ``_convert_hf`` gives them lazily)."""
    if hf_model is not None:
        name = resolve_name(model_name) if model_name.lower() in _alias_map() else model_name
        config, sd = _convert_hf(raw, name, [("hf_model", dict(hf_model.state_dict()))], "hf_model.config",
                                 lambda f: "pass the transformers model again", dtype)
        return config, sd, None
    directory = Path(model_name).expanduser()
    repair = _user_dir_repair(directory)
    weights = next((directory / f for f in WEIGHT_FILES if (directory / f).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{directory} is not a directory written by save_pretrained: it has config.json but "
                                f"none of {', '.join(WEIGHT_FILES)}.")
    config, sd = _convert_hf(raw, directory.name, _shards(str(weights), lambda f: str(directory / f), repair),
                             str(directory / "config.json"), repair, dtype, lazy)
    return config, sd, _tokenizer_from_dir(directory)


def _user_raw_config(model_name: str, hf_model) -> dict | None:
    """The transformers config (as a dict) of a user's model that is not a GPT-2, else None (GPT-2's own path)."""
    if hf_model is not None:
        config = getattr(hf_model, "config", None)
        if config is None or getattr(config, "model_type", None) == gpt2.MODEL_TYPE:
            return None
        return config.to_dict()
    directory = Path(model_name).expanduser()
    if not (directory / "config.json").is_file():
        return None
    raw = hub._read_json(directory / "config.json", _user_dir_repair(directory)("config.json"))
    return None if raw.get("model_type") == gpt2.MODEL_TYPE else raw


# The families beyond GPT-2 ("hf") load through _load_hf, which also takes the precision of the weights.
_LOADERS = {"hf-gpt2": _load_hf_gpt2, "classic": _load_classic, "course": _load_course}


# ================================================================================================
# load_pretrained: what from_pretrained builds a model from
# ================================================================================================


def _check_request(model_name: str, hf_model, checkpoint_index, checkpoint_value,
                   cfg_overrides: dict) -> tuple[bool, str, ModelSpec | None]:
    """(a user's own model?, the official name, its registry entry) of a from_pretrained request, after checking
    its arguments: config fields, device, checkpoint choice."""
    user_model = hf_model is not None or Path(model_name).expanduser().is_dir()
    name, spec = (model_name, None) if user_model else _spec(model_name)
    checks.device(cfg_overrides.get("device"))
    unknown = sorted(set(cfg_overrides) - FIELDS)
    if unknown:
        close = [c for k in unknown for c in difflib.get_close_matches(k, [*FIELDS, *PROCESSING], n=1)]
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TypeError(f"from_pretrained got unknown arguments {unknown}.{hint} Besides checkpoint_index and "
                        f"checkpoint_value it accepts the weight-processing flags {sorted(PROCESSING)} and the "
                        f"HookedTransformerConfig fields {sorted(FIELDS)}.")
    if checkpoint_index is not None and checkpoint_value is not None:
        raise ValueError("Give checkpoint_index or checkpoint_value, not both.")
    checkpoint = checkpoint_index is not None or checkpoint_value is not None
    if user_model and checkpoint:
        raise ValueError("checkpoint_index / checkpoint_value pick a training checkpoint of a registered model; "
                         "they do not apply to hf_model= or to a local directory.")
    if checkpoint and not _has_checkpoints(spec):
        get_checkpoint_labels(name)  # raises: this model has no checkpoints
    return user_model, name, spec


def _final_config(config: dict, name: str, user_model: bool, cfg_overrides: dict) -> HookedTransformerConfig:
    # Where the model runs is this machine's choice, not the stored config's.
    # The families beyond GPT-2 say whether their tokenizer starts with a BOS (Llama, Gemma, Mistral) or not (Qwen,
    # Pythia, OLMo 2); the others always prepend one.
    family = config.get("original_architecture") in conversion.SUPPORTED_ARCHITECTURES[1:]
    config.update(model_name=config["model_name"] if user_model else name, device=None, dtype=torch.float32,
                  default_prepend_bos=config.get("default_prepend_bos", True) if family else True)
    config.update(cfg_overrides)
    return HookedTransformerConfig.from_dict(config)


def load_pretrained(model_name: str, checkpoint_index: int | None = None, checkpoint_value: int | None = None,
                    hf_model=None, weights_dtype: torch.dtype = torch.float32,
                    **cfg_overrides) -> tuple[HookedTransformerConfig, dict[str, torch.Tensor], object]:
    """The config, the classic-named state dict (unprocessed, in ``weights_dtype``: float32 by default; a family
    beyond GPT-2 is converted into it tensor by tensor, so a 16-bit load never holds its weights in float32) and the
    tokenizer (None: the config's ``tokenizer_name`` says which) of a model given by name (see ``MODELS``).

    checkpoint_index / checkpoint_value pick a training checkpoint (see get_checkpoint_labels). ``hf_model``:
    a transformers GPT-2 (your own or fine-tuned) whose weights are used instead of the Hub's; ``model_name``
    may also be a directory written by ``save_pretrained``. Keywords override fields of the
    HookedTransformerConfig (e.g. ``device="cpu"``, ``use_attn_result=True``).
    """
    return _load(model_name, checkpoint_index, checkpoint_value, hf_model, weights_dtype, False, cfg_overrides)


def _load(model_name: str, checkpoint_index, checkpoint_value, hf_model, weights_dtype: torch.dtype, lazy: bool,
          cfg_overrides: dict) -> tuple[HookedTransformerConfig, dict[str, torch.Tensor] | Callable, object]:
    """load_pretrained's (config, state dict, tokenizer); with ``lazy``, a family beyond GPT-2 whose weights are
    safetensors files gives ``take(part)`` instead of its state dict, which converts one block's tensors (``part``:
    its index), or those outside the blocks (None), when it is called (see ``_convert_hf``)."""
    user_model, name, spec = _check_request(model_name, hf_model, checkpoint_index, checkpoint_value, cfg_overrides)
    try:
        raw = _user_raw_config(model_name, hf_model) if user_model else None
        if raw is not None:  # a user's model of a family beyond GPT-2
            config, sd, tokenizer = _load_user_hf(model_name, hf_model, raw, weights_dtype, lazy)
        elif user_model:
            config, sd, tokenizer = _load_user_gpt2(model_name, hf_model)
        elif spec.family == "hf":
            config, sd, tokenizer = _load_hf(name, spec, checkpoint_index, checkpoint_value, weights_dtype, lazy)
        else:
            config, sd, tokenizer = _LOADERS[spec.family](name, spec, checkpoint_index, checkpoint_value)
    except hub._NotAvailable as e:
        shown = name if model_name == name else f"{model_name} ({name})"
        raise HubUnavailableError(_unavailable_message(shown, e, spec)) from None
    if isinstance(sd, dict):
        sd = {k: v.to(weights_dtype) if v.is_floating_point() else v for k, v in sd.items()}  # no copy when already so
    return _final_config(config, name, user_model, cfg_overrides), sd, tokenizer


def get_pretrained_model_config(model_name: str, hf_cfg: dict | None = None, checkpoint_index: int | None = None,
                                checkpoint_value: int | None = None, fold_ln: bool = False, device=None,
                                n_devices: int = 1, default_prepend_bos: bool | None = None,
                                dtype: torch.dtype = torch.float32, first_n_layers: int | None = None,
                                n_ctx: int | None = None, **cfg_overrides) -> HookedTransformerConfig:
    """The HookedTransformerConfig of a registered model (or of a ``save_pretrained`` directory), without its
    weights: read from the registry, the course's data/models, or the repository's config.json (a GPT-2 or another
    supported architecture; give ``hf_cfg``, its transformers config as a dict, to skip the file). Toy models give
    the sizes of their published files (from_pretrained reads them from the file it loads).

    checkpoint_index / checkpoint_value fill ``checkpoint_index`` and ``checkpoint_value``; ``fold_ln`` gives an
    LN model the ``LNPre`` it has once its LayerNorms are folded (an RMS model ``RMSPre``); ``first_n_layers`` keeps
    that many layers; ``device``, ``dtype``, ``default_prepend_bos``, ``n_ctx`` and the other keywords set config
    fields. One device only (``n_devices=1``).
    """
    if n_devices != 1:
        raise ValueError(f"n_devices={n_devices}: helpers runs a model on one device; leave n_devices=1.")
    overrides = {**cfg_overrides, "dtype": dtype, **({} if device is None else {"device": device}),
                 **({} if default_prepend_bos is None else {"default_prepend_bos": default_prepend_bos}),
                 **({} if n_ctx is None else {"n_ctx": n_ctx}),
                 **({} if first_n_layers is None else {"n_layers": first_n_layers})}
    user_model, name, spec = _check_request(model_name, None, checkpoint_index, checkpoint_value, overrides)
    try:
        raw = _user_raw_config(model_name, None) if user_model and hf_cfg is None else None
        if hf_cfg is not None and hf_cfg.get("model_type") != gpt2.MODEL_TYPE:  # given: a family beyond GPT-2
            raw = hf_cfg
        if raw is None and spec is not None and spec.family == "hf":
            raw = hf_cfg if hf_cfg is not None else hub._read_json(hub._hub_file(spec.repo, "config.json"),
                                                                   hub._repair(spec.repo, "config.json"))
        if raw is not None:  # a family beyond GPT-2
            config = conversion.family_for(raw, name).config_from_hf(raw, Path(model_name).name if user_model else name)
        elif user_model or spec.family == "hf-gpt2":
            if hf_cfg is not None:
                from transformers import GPT2Config  # heavy: only for a GPT-2

                hf_config = GPT2Config.from_dict(hf_cfg)
            elif user_model:
                directory = Path(model_name).expanduser()
                hf_config = _read_gpt2_config(directory / "config.json", _user_dir_repair(directory))
            else:
                hf_config = _read_gpt2_config(hub._hub_file(spec.repo, "config.json"),
                                              lambda f: hub._repair(spec.repo, f))
            config = gpt2.gpt2_config(hf_config, Path(model_name).name if user_model else name)
        elif spec.family == "course":
            config = course_models.course_config(name).to_dict()
        else:
            config = dict(spec.config)
        if checkpoint_index is not None or checkpoint_value is not None:
            labels, label_type = get_checkpoint_labels(name)
            label = _pick_checkpoint(name, labels, label_type, checkpoint_index, checkpoint_value)
            config.update(checkpoint_value=label, checkpoint_index=labels.index(label))
    except hub._NotAvailable as e:
        raise HubUnavailableError(_unavailable_message(name, e, spec)) from None
    if fold_ln and config.get("normalization_type") in ("LN", "RMS"):
        config["normalization_type"] += "Pre"
    return _final_config(config, name, user_model, overrides)


def fill_missing_keys(model, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` (changed in place, and returned) with every tensor of ``model.state_dict()`` it lacks taken
    from the model as it is (its initialisation); a warning names the weight matrices (``W_*``) filled so."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and "hf_model" not in k]
    matrices = [k for k in missing if k.rsplit(".", 1)[-1].lstrip("_").startswith("W_")]
    if matrices:
        checks.warn(f"fill_missing_keys: the state dict has no {', '.join(matrices)}; the model's own "
                    "(initial) values fill them in.")
    state_dict.update({k: own[k] for k in missing})
    return state_dict


def choose_model(real_name: str) -> str:
    """The name to load: ``real_name`` when its weights can be had, else its embedded stand-in.

    Prints which one and why. COURSE_EMBEDDED_MODELS=1 (set by CI and `make run`) always picks the
    embedded model. Use the returned name for from_pretrained and get_checkpoint_labels.
    """
    if _outside_registry(real_name):
        raise ValueError(f"{real_name!r} is not in the registry, so no embedded model stands in for it: load it "
                         f"with HookedTransformer.from_pretrained({real_name!r}) (from the Hub or the local cache).")
    spec = MODELS[resolve_name(real_name)]
    if spec.stand_in is None:
        raise KeyError(f"{real_name!r} has no embedded stand-in.")
    if os.environ.get("COURSE_EMBEDDED_MODELS", "") not in ("", "0"):
        reason = "COURSE_EMBEDDED_MODELS est défini"
    else:
        if is_available(real_name):
            print(f"Modèle utilisé : {real_name} (le vrai modèle)")
            return real_name
        reason = "le Hub est injoignable et ses poids ne sont pas en cache"
    print(f"Modèle utilisé : {spec.stand_in}, modèle embarqué du cours, à la place de {real_name} ({reason})")
    return spec.stand_in


# ================================================================================================
# The offline message
# ================================================================================================


def _download_commands(spec: ModelSpec | None, e: hub._NotAvailable) -> list[str]:
    """Commands that put the missing files in the cache (run on a machine with internet access)."""
    if spec is None or spec.repo is None:
        return [f"hf download {e.repo} {e.filename}"]
    if spec.repo not in {s.repo for s in MODELS.values()}:  # a Hub repository outside the registry
        return [f'hf download {spec.repo} --include "*.json" --include "merges.txt" --include "model*.safetensors"',
                '(a repository without safetensors weights: --include "pytorch_model*.bin" instead; a gated one: '
                f"accept its licence on huggingface.co/{spec.repo} and run `hf auth login` first)"]
    if spec.family == "hf-gpt2":
        commands = [f"hf download {spec.repo} config.json model.safetensors"]
    elif spec.family == "hf" and e.revision:  # a training checkpoint (Pythia): its revision's config and weights
        commands = [f"hf download {spec.repo} config.json pytorch_model.bin --revision {e.revision}",
                    f"hf download {spec.repo} tokenizer.json tokenizer_config.json special_tokens_map.json"]
    elif spec.family == "hf":  # config, tokenizer, and the weights (one file, or the shards and their index)
        commands = [f'hf download {spec.repo} --include "*.json" --include "model*.safetensors"']
        if spec.repo in GATED:
            commands.append(f"(a gated model: accept its licence on huggingface.co/{spec.repo} and run "
                            "`hf auth login` first)")
    elif spec.weights_file:
        commands = [f"hf download {spec.repo} {spec.weights_file}"]
    else:
        commands = [f'hf download {spec.repo} --include "*final.pth"  (the trained model)',
                    f'hf download {spec.repo} --include "checkpoints/*"  (all training checkpoints, large)']
        if e.filename and e.filename.startswith("checkpoints/") and e.filename != "checkpoints/":
            commands.insert(0, f"hf download {spec.repo} {e.filename}")
    if spec.tokenizer_repo:
        commands.append(f"hf download {spec.tokenizer_repo} tokenizer.json  (its tokenizer)")
    return commands


def _unavailable_message(what: str, e: hub._NotAvailable, spec: ModelSpec | None) -> str:
    message = hub._unavailable_message(what, e, _download_commands(spec, e))
    if spec is not None and spec.stand_in:
        message += (f"\nMeanwhile, the embedded course model {spec.stand_in!r} stands in with no network: "
                    f"HookedTransformer.from_pretrained({spec.stand_in!r}).")
    return message
