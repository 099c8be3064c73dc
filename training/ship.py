"""Ship a finished training run: its files in data/models (read back by helpers.course_models), the
manifest of their sha256, and the README's table of the course models.

    python -m training.ship      # prints the README's table, from data/models/*/metrics.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from helpers import course_models
from helpers.config import HookedTransformerConfig
from helpers.course_models import COURSE_MODELS, checkpoint_steps, load_course_model, model_config, sha256
from helpers.model import HookedTransformer
from helpers.othello import N_CTX
from helpers.weights import NO_PROCESSING
from training.metrics import induction_metrics, ioi_metrics, othello_metrics, othello_probe_metrics, text_loss

UNUSED_TOKEN_BIAS = -100.0  # logit bias of the tokens a language model never saw in training
# The metric a stage must raise to replace its model's shipped weights, measured on the final weights.
SCORE = {"othello": "probe_best_occupied_accuracy", "lm": "oos_ioi_accuracy"}
LOWER_IS_BETTER = {"loss_repeated_half", "held_out_text_loss"}  # scores a stage must lower (the others it raises)
EXPORTED = "exported.json"  # written in a run's directory once it has been exported (shipped or not)


def measure(model: HookedTransformer, spec, held_out: np.ndarray | None, final: bool) -> dict:
    """The metrics of a model during training and in metrics.json: Othello-GPT's legal-move rate (more games,
    the board probe and the intervention for the ``final`` model), or for a language model induction, the
    held-out text loss and, with an MLP, IOI (test and out-of-structure prompts)."""
    if spec.kind == "othello":
        metrics = othello_metrics(model, n_games=2000 if final else 500)
        return {**metrics, **othello_probe_metrics(model)} if final else metrics
    metrics = induction_metrics(model)
    metrics["held_out_text_loss"] = text_loss(model, held_out)
    if not spec.cfg.get("attn_only"):
        metrics.update(ioi_metrics(model))
    return metrics


def _save_weights(model, path: Path, vocab_rows: torch.Tensor | None, tied: bool) -> None:
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    if tied:
        del sd["unembed.W_U"]
    if vocab_rows is not None:
        sd["embed.W_E"] = sd["embed.W_E"][vocab_rows].contiguous()
        if not tied:
            sd["unembed.W_U"] = sd["unembed.W_U"][:, vocab_rows].contiguous()
        sd["vocab_rows"] = vocab_rows.to(torch.int32)
    save_file(sd, str(path))


def _as_shipped(model: HookedTransformer) -> HookedTransformer:
    """``model`` on the CPU with its weights rounded to float16, as they will be read back."""
    sd = {k: v.detach().to("cpu", torch.float16).to(torch.float32) for k, v in model.state_dict().items()}
    shipped = HookedTransformer(HookedTransformerConfig.from_dict({**model.cfg.to_dict(), "device": "cpu"}))
    shipped.load_state_dict(sd)
    return shipped.eval()


def improves(score: str, value: float, shipped: float) -> bool:
    """Whether ``value`` of the metric ``score`` is better than the shipped model's: lower for a loss, else higher."""
    return value < shipped if score in LOWER_IS_BETTER else value > shipped


def export_run(trainer) -> bool:
    """Write a finished run's checkpoints, config and metrics to data/models/<model>/; whether it did.

    A stage (``spec.stage_of``) replaces its model's shipped weights only if its final model beats them on its
    spec's ``score`` (by default ``SCORE`` of its kind); either way the outcome is recorded in the run's directory
    (``EXPORTED``)."""
    name, spec, lm = trainer.shipped_name, trainer.spec, trainer.spec.kind == "lm"
    held_out = trainer.data.held_out if lm else None
    final_step, selection = trainer.choose_final_step()
    run_steps = spec.checkpoints[:-1] + [final_step]
    models = []
    for step in run_steps:
        model = trainer.shipped_model()
        model.load_state_dict(torch.load(trainer.run_dir / "checkpoints" / f"{step}.pt", weights_only=True,
                                         map_location=trainer.device))
        if spec.kind == "othello":
            model.process_weights_(**{**NO_PROCESSING, "fold_ln": True})
        models.append(_as_shipped(model))
    steps = [trainer.start_step + step for step in run_steps]  # a stage continues its model's step count
    final_metrics = measure(models[-1], spec, held_out, final=True)
    previous = model_config(name) if spec.stage_of else None
    outcome = {"run": trainer.name, "model": name, "final_step": steps[-1], "shipped": True}
    if previous is not None:
        key, before = spec.score or SCORE[spec.kind], course_models.metrics(name)["final"]
        outcome.update(score=key, shipped_value=before[key], value=final_metrics[key],
                       shipped=improves(key, final_metrics[key], before[key]))
        print(f"{trainer.name}: {key} {final_metrics[key]:.4f} against {before[key]:.4f} shipped: "
              + ("shipping it." if outcome["shipped"] else "not shipped."), flush=True)
    (trainer.run_dir / EXPORTED).write_text(json.dumps(outcome, indent=1) + "\n")
    if not outcome["shipped"]:
        return False

    out = course_models.MODELS_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("step_*.safetensors"):
        old.unlink()
    vocab_rows = trainer.data.used.cpu() if lm else None
    for step, model in zip(steps, models, strict=True):
        _save_weights(model, out / f"step_{step:06d}.safetensors", vocab_rows, tied=lm)
    cfg = models[-1].cfg.to_dict()
    if spec.kind == "othello":
        cfg["normalization_type"] = "LNPre"
    cfg.update(device=None, seed=None)
    record = {k: v for k, v in spec.__dict__.items() if k != "cfg"}
    config = {"config": cfg, "checkpoints": steps,
              "tokens_per_step": spec.batch * (spec.cfg["n_ctx"] if lm else N_CTX),
              "tied_unembed": lm, "unused_token_bias": UNUSED_TOKEN_BIAS if lm else None,
              "description": spec.description,
              "training": previous["training"] if previous else record,
              "stages": (previous.get("stages", []) + [{"name": trainer.name, "start_step": trainer.start_step,
                                                        **record}]) if previous else []}
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    update_manifest()

    # Metrics, measured on the shipped (float16) weights, at every checkpoint.
    history = []
    for i, step in enumerate(steps):
        if i == len(steps) - 1:
            m = final_metrics
        else:
            cfg_i, sd = load_course_model(name, step)
            model = HookedTransformer(cfg_i)
            model.load_state_dict(sd, strict=True)
            m = measure(model.eval(), spec, held_out, final=False)
        history.append({"step": step, "tokens_seen": step * config["tokens_per_step"], **m})
        print(json.dumps({k: v for k, v in history[-1].items() if k != "induction_scores"}), flush=True)
    log = (course_models.metrics(name)["training_log"] if previous else []) + trainer.history
    metrics = {"final": history[-1], "checkpoints": history, "training_log": log}
    if selection:
        metrics["checkpoint_choice"] = selection
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    update_manifest()
    return True


def update_manifest() -> None:
    """Write data/models/manifest.json: the sha256 of every shipped file, checked at load."""
    models_dir = course_models.MODELS_DIR
    files = sorted(p for p in models_dir.glob("*/*") if p.is_file())
    manifest = {"files": {p.relative_to(models_dir).as_posix(): sha256(p) for p in files}}
    (models_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def _fr(x: float, spec: str = "") -> str:
    """A number as French prose writes it: 44500 -> '44 500', 0.825 -> '0,825' (``spec`` as in format())."""
    return format(x, spec).replace(",", " ").replace(".", ",").replace("-", "−")


def _percent(x: float) -> str:
    return f"{_fr(100 * x, '.1f')} %"


def _layer_weights(cfg: HookedTransformerConfig) -> int:
    """Weights of the attention and MLP layers (no embeddings, no biases), grouped key/value heads counted once each
    (``cfg.n_params`` counts them as TransformerLens does, as if every query head had its own)."""
    kv_heads = cfg.n_key_value_heads or cfg.n_heads
    attn = (2 * cfg.n_heads + 2 * kv_heads) * cfg.d_model * cfg.d_head
    mlp = 0 if cfg.attn_only else (2 + cfg.gated_mlp) * cfg.d_model * cfg.d_mlp
    return cfg.n_layers * (attn + mlp)


def markdown_table() -> str:
    """The README's table of course models, from their config and metrics files."""
    header = ["Modèle", "Architecture", "Poids des couches (hors embeddings et biais)", "Données d'entraînement",
              "Entraînement", "Métriques (poids livrés)"]
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name in COURSE_MODELS:
        raw = model_config(name)
        cfg = HookedTransformerConfig.from_dict({**raw["config"], "device": "cpu"})
        metrics = course_models.metrics(name)
        final, steps = metrics["final"], checkpoint_steps(name)
        heads = f"{cfg.n_heads} têtes"
        if cfg.n_key_value_heads and cfg.n_key_value_heads != cfg.n_heads:
            heads += f" de requête et {cfg.n_key_value_heads} têtes clé/valeur"
        arch = (f"{cfg.n_layers} couches, d_model {cfg.d_model}, {heads}"
                + (", attention seule" if cfg.attn_only else f", d_mlp {cfg.d_mlp}, {cfg.act_fn}")
                + f", {cfg.normalization_type}, n_ctx {cfg.n_ctx}")
        training = raw["training"]
        data = ("parties aléatoires légales générées" if training["kind"] == "othello"
                else f"corpus généré de {_fr(training['corpus_tokens'] / 1e6, '.0f')} M tokens (voir data/corpus.md)")
        run = (f"{_fr(steps[-1], ',')} pas, {_fr(steps[-1] * raw['tokens_per_step'] / 1e6, '.1f')} M tokens, "
               f"{len(steps)} checkpoint{'s' if len(steps) > 1 else ''}")
        if metrics.get("checkpoint_choice"):
            candidates = [r["step"] for r in metrics["checkpoint_choice"]]
            run += (f" ; le modèle livré est le meilleur des checkpoints des pas {_fr(candidates[0], ',')} à "
                    f"{_fr(candidates[-1], ',')} sur des prompts IOI de validation (gabarits distincts de ceux du "
                    "test)")
        if "top1_legal_rate" in final:
            shown = f"coup légal en top-1 : {_percent(final['top1_legal_rate'])}"
            if "probe_best_occupied_accuracy" in final:
                shown += (f" ; sonde linéaire (cases occupées) : {_fr(final['probe_best_occupied_accuracy'], '.3f')} "
                          f"après {final['probe_best_depth']} couches ; intervention (différence des moyennes, à "
                          f"partir de la couche {final['intervention_depth']}) : p(coups devenus légaux) "
                          f"{_fr(final['intervention_none_p_gained'], '.3f')} → "
                          f"{_fr(final['intervention_mean_p_gained'], '.3f')} (plafond "
                          f"{_fr(final['intervention_ideal_p_gained'], '.3f')}), p(devenus illégaux) "
                          f"{_fr(final['intervention_none_p_lost'], '.3f')} → "
                          f"{_fr(final['intervention_mean_p_lost'], '.3f')}")
        else:
            shown = (f"perte sur la moitié répétée {_fr(final['loss_repeated_half'], '.2f')} contre "
                     f"{_fr(final['loss_first_half'], '.2f')} ; meilleure tête d'induction "
                     f"{final['best_induction_head']} ({_fr(final['best_induction_score'], '.2f')})")
            if "ioi_mean_logit_diff" in final:
                shown += (f" ; IOI : différence de logits {_fr(final['ioi_mean_logit_diff'], '.2f')}, "
                          f"{_percent(final['ioi_accuracy'])} de réussite")
            if "oos_ioi_accuracy" in final:
                shown += (f" ; IOI hors structure : différence {_fr(final['oos_ioi_mean_logit_diff'], '.2f')}, "
                          f"{_percent(final['oos_ioi_accuracy'])} de réussite")
        rows.append(f"| `{name}` | {arch} | {_fr(_layer_weights(cfg) / 1e6, '.2f')} M | {data} | {run} | {shown} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
