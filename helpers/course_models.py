"""The course's embedded models, shipped in ``data/models`` and loaded with no network.

Layout, written by ``python -m helpers.train <name>`` (see helpers.train)::

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

from helpers.model import HookedTransformerConfig

MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"

COURSE_MODELS = {
    "course-attn-only-2l": "2-layer attention-only model with training checkpoints (stands in for solu-2l)",
    "course-gpt2": ("2-layer GPT-2-architecture model with induction heads, trained on IOI-like stories "
                    "(stands in for gpt2-small)"),
    "course-othello-gpt": "Othello-GPT trained on synthetic random legal games (stands in for othello-gpt)",
}


def _manifest() -> dict:
    path = MODELS_DIR / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the course models are not in this checkout. "
                                "Restore data/ with `git checkout -- data` or retrain with `make models`.")
    return json.loads(path.read_text())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checked(path: Path) -> Path:
    """``path`` after checking it against the manifest (a clear error if it is missing or corrupted)."""
    rel = path.relative_to(MODELS_DIR).as_posix()
    expected = _manifest()["files"].get(rel)
    if expected is None:
        raise FileNotFoundError(f"{rel} is not listed in {MODELS_DIR / 'manifest.json'}.")
    if not path.exists():
        raise FileNotFoundError(f"Course model file {path} is missing. Restore it with `git checkout -- {path}`.")
    if _sha256(path) != expected:
        raise OSError(f"Course model file {path} is corrupted (its sha256 differs from the manifest). "
                      f"Restore it with `git checkout -- data/models`, or retrain with `make models`.")
    return path


def model_config(name: str) -> dict:
    if name not in COURSE_MODELS:
        raise KeyError(f"{name!r} is not a course model; they are {sorted(COURSE_MODELS)}.")
    return json.loads(_checked(MODELS_DIR / name / "config.json").read_text())


def checkpoint_steps(name: str) -> list[int]:
    """Training steps of the shipped checkpoints, in order (the last is the final model)."""
    return model_config(name)["checkpoints"]


def load_course_model(name: str, checkpoint_index: int | None = None,
                      checkpoint_value: int | None = None) -> tuple[HookedTransformerConfig, dict]:
    """Config and float32 state dict (classic names, unprocessed) of a course model or one of its checkpoints.

    checkpoint_index indexes ``checkpoint_steps(name)`` (negative counts from the end);
    checkpoint_value is a number of training steps from that list.
    """
    from safetensors.torch import load_file

    raw = model_config(name)
    steps = raw["checkpoints"]
    if checkpoint_value is not None:
        if checkpoint_value not in steps:
            raise ValueError(f"{name} has no checkpoint at step {checkpoint_value}; its checkpoints are {steps}.")
        step = checkpoint_value
    elif checkpoint_index is not None:
        if not -len(steps) <= checkpoint_index < len(steps):
            raise IndexError(f"checkpoint_index {checkpoint_index} is out of range: {name} has {len(steps)} "
                             f"checkpoints (steps {steps}).")
        step = steps[checkpoint_index]
    else:
        step = steps[-1]
    weights = load_file(_checked(MODELS_DIR / name / f"step_{step:06d}.safetensors"))
    cfg = HookedTransformerConfig.from_dict({**raw["config"], "checkpoint_value": step,
                                             "checkpoint_index": steps.index(step)})
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


def _save_weights(model, path: Path, vocab_rows: torch.Tensor | None, tied: bool) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    if tied:
        del sd["unembed.W_U"]
    if vocab_rows is not None:
        sd["embed.W_E"] = sd["embed.W_E"][vocab_rows].contiguous()
        if not tied:
            sd["unembed.W_U"] = sd["unembed.W_U"][:, vocab_rows].contiguous()
        sd["vocab_rows"] = vocab_rows.to(torch.int32)
    save_file(sd, str(path))


def export_run(trainer) -> None:
    """Write a finished training run's checkpoints, config and metrics to data/models/<name>/."""
    from helpers import train
    from helpers.model import HookedTransformer

    name, spec = trainer.name, trainer.spec
    out = MODELS_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("step_*.safetensors"):
        old.unlink()
    lm = spec.kind == "lm"
    vocab_rows = trainer.data.used if lm else None
    final_step, selection = trainer.choose_final_step()
    steps = spec.checkpoints[:-1] + [final_step]
    for step in steps:
        model = trainer.export_model()
        model.load_state_dict(torch.load(trainer.run_dir / "checkpoints" / f"{step}.pt", weights_only=True))
        if spec.kind == "othello":
            model.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False,
                                   fold_value_biases=False)
        _save_weights(model, out / f"step_{step:06d}.safetensors", vocab_rows, tied=lm)
    cfg = trainer.export_model().cfg.to_dict()
    if spec.kind == "othello":
        cfg["normalization_type"] = "LNPre"
    cfg.update(device=None, seed=None)
    config = {"config": cfg, "checkpoints": steps,
              "tokens_per_step": spec.batch * (spec.cfg["n_ctx"] if lm else 59),
              "tied_unembed": lm, "unused_token_bias": train.UNUSED_TOKEN_BIAS if lm else None,
              "description": spec.description, "training": {k: v for k, v in spec.__dict__.items() if k != "cfg"}}
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    update_manifest()

    # Metrics, measured on the shipped (float16) weights, at every checkpoint.
    history = []
    for i, step in enumerate(steps):
        cfg_i, sd = load_course_model(name, checkpoint_index=i)
        model = HookedTransformer(cfg_i)
        model.load_state_dict(sd, strict=True)
        model.eval()
        final = i == len(steps) - 1
        if lm:
            m = train.induction_metrics(model)
            m["held_out_text_loss"] = train.text_loss(model, trainer.data.held_out)
            if final and not spec.cfg.get("attn_only"):
                m.update(train.ioi_metrics(model))
        else:
            m = train.othello_metrics(model, n_games=2000 if final else 500)
        history.append({"step": step, "tokens_seen": step * config["tokens_per_step"], **m})
        print(json.dumps({k: v for k, v in history[-1].items() if k != "induction_scores"}), flush=True)
    metrics = {"final": history[-1], "checkpoints": history, "training_log": trainer.history}
    if selection:
        metrics["checkpoint_choice"] = selection
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    update_manifest()


def update_manifest() -> None:
    files = sorted(p for p in MODELS_DIR.glob("*/*") if p.is_file())
    manifest = {"files": {p.relative_to(MODELS_DIR).as_posix(): _sha256(p) for p in files}}
    (MODELS_DIR / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")



def choose_model(real_name: str) -> str:
    """The name to load: ``real_name`` when its weights can be had, else its embedded stand-in.

    Prints which one and why. COURSE_EMBEDDED_MODELS=1 (set by CI and `make run`) always picks the
    embedded model. Use the returned name for from_pretrained and get_checkpoint_labels.
    """
    import os

    from helpers import loading

    spec = loading.MODELS[loading.resolve_name(real_name)]
    if spec.stand_in is None:
        raise KeyError(f"{real_name!r} has no embedded stand-in.")
    if os.environ.get("COURSE_EMBEDDED_MODELS", "") not in ("", "0"):
        reason = "COURSE_EMBEDDED_MODELS est défini"
    else:
        if loading.is_available(real_name):
            print(f"Modèle utilisé : {real_name} (le vrai modèle)")
            return real_name
        reason = "le Hub est injoignable et ses poids ne sont pas en cache"
    print(f"Modèle utilisé : {spec.stand_in}, modèle embarqué du cours, à la place de {real_name} ({reason})")
    return spec.stand_in


def pick_model(real_name: str, **kwargs):
    """``from_pretrained(choose_model(real_name), **kwargs)``: the real model, or its embedded stand-in."""
    from helpers.loading import from_pretrained

    return from_pretrained(choose_model(real_name), **kwargs)


def markdown_table() -> str:
    """The README's table of course models, from their config and metrics files."""
    from helpers.model import HookedTransformerConfig

    header = ["Modèle", "Architecture", "Paramètres (hors embeddings)", "Données d'entraînement", "Entraînement",
              "Métriques (poids livrés)"]
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name in COURSE_MODELS:
        raw = model_config(name)
        cfg = HookedTransformerConfig.from_dict({**raw["config"], "device": "cpu"})
        metrics = json.loads(_checked(MODELS_DIR / name / "metrics.json").read_text())
        final, steps = metrics["final"], raw["checkpoints"]
        arch = (f"{cfg.n_layers} couches, d_model {cfg.d_model}, {cfg.n_heads} têtes"
                + (", attention seule" if cfg.attn_only else f", d_mlp {cfg.d_mlp}, {cfg.act_fn}")
                + f", {cfg.normalization_type}, n_ctx {cfg.n_ctx}")
        training = raw["training"]
        data = ("parties aléatoires légales générées" if training["kind"] == "othello"
                else f"corpus généré de {training['corpus_tokens'] / 1e6:.0f} M tokens (voir data/corpus.md)")
        run = f"{steps[-1]} pas, {steps[-1] * raw['tokens_per_step'] / 1e6:.1f} M tokens, {len(steps)} checkpoint(s)"
        if metrics.get("checkpoint_choice"):
            candidates = [r["step"] for r in metrics["checkpoint_choice"]]
            run += (f" ; le modèle livré est le meilleur des checkpoints des pas {candidates[0]} à {candidates[-1]} "
                    "sur des prompts IOI de validation (gabarits distincts de ceux du test)")
        if "top1_legal_rate" in final:
            shown = f"coup légal en top-1 : {final['top1_legal_rate']:.1%}"
        else:
            shown = (f"perte sur la moitié répétée {final['loss_repeated_half']:.2f} vs "
                     f"{final['loss_first_half']:.2f} ; meilleure tête d'induction {final['best_induction_head']} "
                     f"({final['best_induction_score']:.2f})")
            if "ioi_mean_logit_diff" in final:
                shown += (f" ; IOI : différence de logits {final['ioi_mean_logit_diff']:.2f}, "
                          f"{final['ioi_accuracy']:.1%} de réussite")
        rows.append(f"| `{name}` | {arch} | {cfg.n_params / 1e6:.2f} M | {data} | {run} | {shown} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
