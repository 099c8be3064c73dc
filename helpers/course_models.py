"""The course's embedded models, shipped in ``data/models`` and loaded with no network.

Layout, written by ``python -m training.train <name>`` (see training/ship.py)::

    data/models/manifest.json            sha256 of every shipped file, checked at load
    data/models/<name>/config.json       HookedTransformerConfig + checkpoint schedule
    data/models/<name>/metrics.json      metrics measured on the shipped weights
    data/models/<name>/step_<N>.safetensors   weights after N training steps (the last one is the model)

Weights are stored in float16. Language models store only the embedding rows of the tokens their
training data used (``vocab_rows``, and the matching columns of W_U); the rest are zeros at load.
When a model's unembedding is tied (``tied_unembed``), ``W_U = W_E.T`` is not stored. Tokens never
seen in training get a logit bias of -100.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from helpers.config import HookedTransformerConfig

MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"

COURSE_MODELS = {
    "course-attn-only-2l": "2-layer attention-only model with training checkpoints (stands in for solu-2l)",
    "course-gpt2": ("4-layer GPT-2-architecture model with induction heads, trained on Zipf-distributed "
                    "stories and IOI-like ones (stands in for gpt2-small)"),
    "course-othello-gpt": "Othello-GPT trained on synthetic random legal games (stands in for othello-gpt)",
    "course-llama": ("4-layer Llama-architecture model (RMSNorm, rotary, grouped-query attention, SwiGLU) on "
                     "Zipf-distributed stories: notebook 09's stand-in for Qwen2.5-0.5B"),
}


def _manifest() -> dict:
    path = MODELS_DIR / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the course models are not in this checkout. "
                                "Restore data/ with `git checkout -- data` or retrain with `make models`.")
    return json.loads(path.read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checked(path: Path) -> Path:
    """``path`` after checking it against the manifest (a clear error if it is missing or corrupted)."""
    rel = path.relative_to(MODELS_DIR).as_posix()
    expected = _manifest()["files"].get(rel)
    if expected is None:
        raise FileNotFoundError(f"{rel} is not listed in {MODELS_DIR / 'manifest.json'}.")
    if not path.exists():
        raise FileNotFoundError(f"Course model file {path} is missing. Restore it with `git checkout -- {path}`.")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() == expected:
        return path
    if hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest() == expected:
        raise OSError(f"Course model file {path} has Windows line endings (CRLF) where the shipped file has LF: "
                      "Git converted them when it checked the file out (core.autocrlf=true, the default of Git "
                      "for Windows), so its sha256 differs from the manifest; the content is otherwise intact. "
                      "Fix it in the repository with `git config core.autocrlf false`, then "
                      "`git rm -r -q --cached data` and `git checkout HEAD -- data` (the .gitattributes of "
                      "recent versions prevents this in new clones).")
    raise OSError(f"Course model file {path} is corrupted (its sha256 differs from the manifest). "
                  f"Restore it with `git checkout -- data/models`, or retrain with `make models`.")


def model_config(name: str) -> dict:
    if name not in COURSE_MODELS:
        raise KeyError(f"{name!r} is not a course model; they are {sorted(COURSE_MODELS)}.")
    return json.loads(_checked(MODELS_DIR / name / "config.json").read_text())


def checkpoint_steps(name: str) -> list[int]:
    """Training steps of the shipped checkpoints, in order (the last is the final model)."""
    return model_config(name)["checkpoints"]


def course_config(name: str, step: int | None = None) -> HookedTransformerConfig:
    """The config of a course model after ``step`` training steps (one of ``checkpoint_steps(name)``; None: the
    final model), which it records as checkpoint_value and checkpoint_index."""
    raw = model_config(name)
    steps = raw["checkpoints"]
    step = steps[-1] if step is None else step
    if step not in steps:
        raise ValueError(f"{name} has no checkpoint at step {step}; its checkpoints are {steps}.")
    return HookedTransformerConfig.from_dict({**raw["config"], "checkpoint_value": step,
                                             "checkpoint_index": steps.index(step)})


def load_course_model(name: str, step: int | None = None) -> tuple[HookedTransformerConfig, dict]:
    """Config and float32 state dict (classic names, unprocessed) of a course model after ``step`` training
    steps (see course_config). helpers.loading picks the step."""
    cfg = course_config(name, step)
    raw = model_config(name)
    weights = load_file(_checked(MODELS_DIR / name / f"step_{cfg.checkpoint_value:06d}.safetensors"))
    sd = {k: v.to(torch.float32) for k, v in weights.items() if k != "vocab_rows"}
    if "vocab_rows" in weights:
        W_E = torch.zeros(cfg.d_vocab, cfg.d_model)
        W_E[weights["vocab_rows"].long()] = sd["embed.W_E"]
        sd["embed.W_E"] = W_E
        if not raw.get("tied_unembed"):
            W_U = torch.zeros(cfg.d_model, cfg.d_vocab)
            W_U[:, weights["vocab_rows"].long()] = sd["unembed.W_U"]
            sd["unembed.W_U"] = W_U
    if raw.get("tied_unembed"):
        sd["unembed.W_U"] = sd["embed.W_E"].T.contiguous()
    return cfg, sd


def metrics(name: str) -> dict:
    """The metrics measured on the shipped weights when they were exported (``metrics.json``)."""
    return json.loads(_checked(MODELS_DIR / name / "metrics.json").read_text())
