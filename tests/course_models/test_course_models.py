"""The shipped course models meet their thresholds, recomputed here from the shipped weights."""

import json
import shutil

import pytest
import torch

from helpers import HookedTransformer, course_models
from helpers.ioi import NAMES
from helpers.loading import get_checkpoint_labels
from training import metrics as course_metrics
from training.corpus import FIRST_NAMES, build_token_corpus
from training.train import SPECS

pytestmark = pytest.mark.slow  # not in `make test-fast`

from_pretrained = HookedTransformer.from_pretrained

MODELS_DIR = course_models.MODELS_DIR

@pytest.fixture(scope="module")
def attn_checkpoints():
    steps = course_models.checkpoint_steps("course-attn-only-2l")
    return steps, [course_metrics.induction_metrics(from_pretrained("course-attn-only-2l", checkpoint_index=i))
                   for i in range(len(steps))]


def test_attn_only_checkpoints_straddle_the_induction_phase_change(attn_checkpoints):
    steps, metrics = attn_checkpoints
    assert len(steps) >= 6
    ratios = [b / a for a, b in zip(steps, steps[1:], strict=False)]
    assert min(ratios) >= 1.5, f"checkpoints are not log-spaced: {steps}"
    gaps = [m["loss_first_half"] - m["loss_repeated_half"] for m in metrics]
    # Sharp: one interval between consecutive checkpoints holds most of the final gain.
    jumps = [b - a for a, b in zip(gaps, gaps[1:], strict=False)]
    assert max(jumps) >= 0.5 * gaps[-1], f"no sharp drop between consecutive checkpoints: {gaps}"
    assert gaps[0] < 1.0, f"the first checkpoint already has induction: {gaps}"
    assert gaps[-1] >= 4.0, f"repeated half only {gaps[-1]:.2f} nats below the first half"
    assert metrics[-1]["best_induction_score"] >= 0.5


def test_checkpoint_labels_of_a_course_model():
    labels, label_type = get_checkpoint_labels("course-attn-only-2l")
    assert labels == course_models.checkpoint_steps("course-attn-only-2l")
    assert label_type == "step"


@pytest.fixture(scope="module")
def gpt2():
    return from_pretrained("course-gpt2")


def test_course_gpt2_architecture(gpt2):
    cfg = gpt2.cfg
    assert cfg.n_layers == 4 and not cfg.attn_only
    assert cfg.act_fn == "gelu_new" and cfg.d_vocab == 50257


@pytest.fixture(scope="module")
def gpt2_ioi(gpt2):
    return course_metrics.ioi_metrics(gpt2)


def test_course_gpt2_does_ioi(gpt2, gpt2_ioi):
    assert gpt2_ioi["ioi_mean_logit_diff"] >= 2.5
    logits = gpt2("After John and Mary went to the store, Mary gave a bottle of milk to")[0, -1]
    assert logits[gpt2.to_single_token(" John")] > logits[gpt2.to_single_token(" Mary")]


@pytest.mark.xfail(strict=True, reason="course-gpt2 after stage 4 (5800 steps) prefers the indirect object on "
                   "86.0 % of the test prompts (84.5 % after stage 3)")
def test_course_gpt2_prefers_the_indirect_object_on_90_percent_of_prompts(gpt2_ioi):
    assert gpt2_ioi["ioi_accuracy"] >= 0.9


@pytest.mark.xfail(strict=True, reason="course-gpt2 after stage 4 (5800 steps) prefers the indirect object on "
                   "75.0 % of the out-of-structure prompts (67.5 % after stage 3): it takes the later of two names "
                   "introduced in different clauses")
def test_course_gpt2_prefers_the_indirect_object_on_85_percent_of_out_of_structure_prompts(gpt2_ioi):
    assert gpt2_ioi["oos_ioi_n_prompts"] == 240
    assert gpt2_ioi["oos_ioi_accuracy"] >= 0.85


def test_course_gpt2_has_an_induction_head(gpt2):
    assert course_metrics.induction_metrics(gpt2)["best_induction_score"] >= 0.9


# What notebooks 01 and 04 teach (issue 36), measured on 300k tokens of the model's own training corpus' mix.
@pytest.fixture(scope="module")
def lessons(gpt2):
    corpus = build_token_corpus(300_000, seed=7, mix=SPECS["course-gpt2"].corpus_mix)
    return course_metrics.lesson_metrics(gpt2, corpus, sorted(set(NAMES) | set(FIRST_NAMES)))


def test_the_unembedding_bias_follows_token_frequency(lessons):
    assert lessons["bias_frequency_spearman"] >= 0.5


def test_frequent_names_get_a_visibly_larger_bias(lessons):
    assert lessons["name_count_ratio"] >= 10, lessons["name_bias_names"]
    assert lessons["name_bias_ratio"] >= 1.5, lessons["name_bias_names"]


def test_the_bos_sentence_prefers_the_right_name_more_with_its_bos(lessons):
    assert 0 < lessons["bos_logit_diff"] and lessons["no_bos_logit_diff"] < lessons["bos_logit_diff"]


def test_the_first_repeated_random_token_stays_unpredictable(lessons):
    assert lessons["first_repeat_loss"] >= 4 and lessons["rest_of_repeat_loss"] < 0.5


@pytest.fixture(scope="module")
def othello():
    return from_pretrained("course-othello-gpt")


@pytest.fixture(scope="module")
def othello_probe(othello):
    return course_metrics.othello_probe_metrics(othello)


def test_course_othello_predicts_legal_moves(othello):
    assert othello.cfg.normalization_type == "LNPre" and othello.cfg.d_vocab == 61 and othello.cfg.n_ctx == 59
    assert course_metrics.othello_metrics(othello, n_games=300)["top1_legal_rate"] >= 0.95


@pytest.mark.xfail(strict=True, reason="the shipped course-othello-gpt's probe reads 0.895 of the occupied squares "
                   "at its best depth (5), top-1 legal 99.6%, after 81500 steps of 6L256W in twenty-one runs (0.825 "
                   "after the first 8000, +0.001 to +0.008 a stage since, +0.001 for the last, one 5000-step cosine "
                   "at a 1e-4 peak; the README's trials table has each shipped stage): it needs longer training")
def test_course_othello_probe_reads_the_board(othello, othello_probe):
    assert course_metrics.othello_metrics(othello, n_games=300)["top1_legal_rate"] >= 0.96
    assert othello_probe["probe_best_occupied_accuracy"] >= 0.90


def test_course_othello_mean_edit_removes_the_moves_that_become_illegal(othello_probe):
    m = othello_probe
    assert m["intervention_mean_p_lost"] <= 0.5 * m["intervention_none_p_lost"]


def test_course_othello_mean_edit_doubles_the_moves_that_become_legal(othello_probe):
    """Possible only for a model that puts little probability on illegal moves: the ceiling (a model uniform
    over the edited board's legal moves) is 0.090, so the model's own p_gained must stay under 0.045."""
    m = othello_probe
    assert m["intervention_mean_p_gained"] >= 2 * m["intervention_none_p_gained"]


def test_course_othello_edits_along_the_board_beat_the_random_control(othello_probe):
    """Both board edits move probability the right way, more than the random edit (the norms of the mean edit)."""
    m = othello_probe
    for edit in ["probe", "mean"]:
        assert m[f"intervention_{edit}_p_gained"] > m["intervention_random_p_gained"], edit
        assert m[f"intervention_{edit}_p_lost"] < m["intervention_random_p_lost"], edit
    assert m["intervention_none_p_gained"] < m["intervention_ideal_p_gained"]


def test_course_othello_random_edit_changes_little(othello_probe):
    m = othello_probe
    for key in ["p_gained", "p_lost"]:
        before, after = m[f"intervention_none_{key}"], m[f"intervention_random_{key}"]
        assert abs(after - before) < 0.1 * before, (key, before, after)


def test_metrics_files_match_the_shipped_weights(gpt2):
    """The README's numbers come from metrics.json: they must be what the shipped weights give."""
    shipped = json.loads((MODELS_DIR / "course-gpt2" / "metrics.json").read_text())["final"]
    fresh = course_metrics.induction_metrics(from_pretrained("course-gpt2", fold_ln=False, center_writing_weights=False,
                                                    center_unembed=False, fold_value_biases=False))
    assert fresh["loss_repeated_half"] == pytest.approx(shipped["loss_repeated_half"], abs=1e-3)
    assert fresh["best_induction_head"] == shipped["best_induction_head"]


def test_othello_metrics_file_matches_the_shipped_weights(othello, othello_probe):
    """metrics.json's final Othello figures (the README's, test_readme_figures.py) are what the shipped weights give,
    up to the float differences between CPUs (the training model is unprocessed, this one has its weights processed)."""
    shipped = course_models.metrics("course-othello-gpt")["final"]
    fresh = {**course_metrics.othello_metrics(othello, n_games=shipped["n_held_out_games"]), **othello_probe}
    for key, value in fresh.items():
        # Shares of the 200 edit cases move by whole cases: a case on the probe's boundary can flip (one case,
        # 0.005), and then the means of the 12-20 misread cases move by a few thousandths (README: "quelques
        # millièmes"; 0.00504 on p_lost on stage 19's weights, 13 misread cases against 12 once processed).
        per_case = key == "intervention_read_share" or (key.startswith("intervention_") and key.endswith("top1_legal"))
        tolerance = 1 / 200 + 1e-9 if per_case else 0.01 if "misread" in key else 1e-3
        assert value == pytest.approx(shipped[key], abs=tolerance), key


def test_weight_budget():
    """All shipped weights, the models' and notebook 10's SAE, stay within 50 MB (issues 30 and 36's budget: a
    clone stays light for Colab and CI)."""
    total = sum(p.stat().st_size for p in MODELS_DIR.parent.rglob("*.safetensors"))
    assert total <= 50e6, f"shipped weights take {total / 1e6:.1f} MB"


def test_corrupted_file_is_named(tmp_path, monkeypatch):
    copy = tmp_path / "models"
    shutil.copytree(MODELS_DIR, copy)
    monkeypatch.setattr(course_models, "MODELS_DIR", copy)
    weights = sorted((copy / "course-othello-gpt").glob("step_*.safetensors"))[-1]
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(OSError, match=weights.name):
        course_models.load_course_model("course-othello-gpt")


def test_unseen_tokens_are_zero_and_never_predicted(gpt2):
    unseen = (gpt2.W_E == 0).all(-1)
    assert 0 < unseen.sum() < gpt2.cfg.d_vocab
    probs = gpt2("The cat sat on the").softmax(-1)[0, -1]
    assert probs[unseen].sum() < 1e-6
    assert torch.isfinite(gpt2.b_U).all()
