"""The training script on tiny configs: batches, determinism, resuming, export. CI never trains a real model."""

import copy
import dataclasses
import hashlib
import json
import math

import pytest
import torch

from helpers import course_models, evals
from helpers.model import HookedTransformer
from training import metrics as course_metrics
from training import ship, train

TINY_LM = train.Spec(
    kind="lm",
    cfg=dict(n_layers=1, d_model=16, n_heads=2, n_ctx=128, attn_only=True, normalization_type="LN", act_fn="gelu",
             tokenizer_name="gpt2", d_vocab=50257),
    steps=6, batch=4, lr=1e-2, warmup=2, checkpoints=[3, 6], eval_every=3, save_every=2,
    corpus_tokens=40_000, corpus_mix={"narrative": 1.0}, repeat_fraction=0.5, description="tiny test model",
)
TINY_OTHELLO = train.Spec(
    kind="othello",
    cfg=dict(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=59, d_vocab=61, act_fn="gelu",
             normalization_type="LN"),
    steps=4, batch=4, lr=1e-3, warmup=2, checkpoints=[4], eval_every=4, save_every=2,
)


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(course_models, "MODELS_DIR", tmp_path / "models")
    monkeypatch.setitem(train.SPECS, "tiny-lm", TINY_LM)
    monkeypatch.setitem(train.SPECS, "tiny-othello", TINY_OTHELLO)
    monkeypatch.setitem(course_models.COURSE_MODELS, "tiny-lm", "tiny test model")
    return tmp_path


def test_repeated_rows_are_masked_until_their_first_period_ends(tiny):
    data = train.Trainer("tiny-lm").data
    tokens, mask = data.batch(step=5)
    n_repeated = int(TINY_LM.batch * TINY_LM.repeat_fraction)
    assert mask[n_repeated:].all()  # text rows: every prediction counts
    for row, row_mask in zip(tokens[:n_repeated], mask[:n_repeated], strict=True):
        period = int((~row_mask).sum())
        assert TINY_LM.min_period <= period < TINY_LM.cfg["n_ctx"] // 2
        assert not row_mask[:period].any() and row_mask[period:].all()
        random_part = row[1:]
        assert ((evals.RANDOM_LOW <= random_part) & (random_part < evals.RANDOM_HIGH)).all()
        assert torch.equal(random_part[period:], random_part[:-period])  # each kept target was seen one period earlier
    again, _ = data.batch(step=5)
    assert torch.equal(tokens, again)


def test_the_after_bos_layout_is_the_one_course_gpt2_was_trained_on(tiny):
    """The default layout's batches are bit-identical to those of the shipped runs' code (sha256 of tokens and mask)."""
    data = train.Trainer("tiny-lm").data
    expected = {0: "c4b89aafeb4b49e2a85c6f2548cfd4df04fc98d4d12fb4fabf0b058671d3de5c",
                5: "9cfd8fa27cae4479e420a80481a87f47d79afb98832273c0178219fa2d0f88d3"}
    for step, digest in expected.items():
        tokens, mask = data.batch(step)
        assert hashlib.sha256(tokens.numpy().tobytes() + mask.numpy().tobytes()).hexdigest() == digest


def test_anywhere_layout_masks_the_first_period_and_the_first_repeated_token(tiny, monkeypatch):
    monkeypatch.setitem(train.SPECS, "tiny-lm", dataclasses.replace(TINY_LM, repeat_layout="anywhere", batch=16))
    data = train.Trainer("tiny-lm").data
    text_data = copy.copy(data)
    n_repeated, n_ctx = 8, TINY_LM.cfg["n_ctx"]
    starts, copies = set(), set()
    for step in range(6):
        tokens, mask = data.batch(step)
        text_data.spec = dataclasses.replace(data.spec, repeat_fraction=0.0)
        text = text_data.batch(step)[0]  # the same windows without the segments
        assert mask[n_repeated:].all() and torch.equal(tokens[n_repeated:], text[n_repeated:])
        for row, row_mask, row_text in zip(tokens[:n_repeated], mask[:n_repeated], text, strict=False):
            masked = torch.nonzero(~row_mask).flatten()
            start, period = int(masked[0]) + 1, len(masked) - 1
            assert torch.equal(masked, torch.arange(start - 1, start + period))  # one run: period + 1 targets
            assert TINY_LM.min_period <= period < n_ctx // 2
            span = row[start:start + period]
            assert ((evals.RANDOM_LOW <= span) & (span < evals.RANDOM_HIGH)).all()
            assert torch.equal(row[start + period:start + 2 * period], span)  # the first repeat follows at once
            n = 2  # copies of the span
            while start + (n + 1) * period <= n_ctx and torch.equal(row[start + n * period:][:period], span):
                n += 1
            end = start + n * period
            assert torch.equal(row[:start], row_text[:start]) and torch.equal(row[end:], row_text[end:])
            starts.add(start)
            copies.add(n)
    assert len(starts) > 10 and min(starts) >= 1 and max(starts) > n_ctx // 2  # the offset varies
    assert len(copies) > 2  # and so does the number of copies


def test_every_row_repeats_before_repeat_until(tiny, monkeypatch):
    monkeypatch.setitem(train.SPECS, "tiny-lm", train.Spec(**{**TINY_LM.__dict__, "repeat_until": 3}))
    data = train.Trainer("tiny-lm").data
    assert not data.batch(step=2)[1][:, :TINY_LM.min_period].any()  # every row starts with its masked period
    assert data.batch(step=3)[1][TINY_LM.batch // 2:].all()  # then half of them are text again


def test_spans_draw_from_the_narrow_ids_before_narrow_until(tiny, monkeypatch):
    narrow = dataclasses.replace(TINY_LM, repeat_until=4, narrow_until=2, narrow_ids=50, batch=16)
    monkeypatch.setitem(train.SPECS, "tiny-lm", narrow)
    data = train.Trainer("tiny-lm").data
    for step, high in [(0, evals.RANDOM_LOW + 50), (1, evals.RANDOM_LOW + 50), (2, evals.RANDOM_HIGH)]:
        spans = data.batch(step)[0][:, 1:]  # every row a span after BOS (step < repeat_until)
        assert spans.min() >= evals.RANDOM_LOW and spans.max() < high
    assert data.batch(2)[0][:, 1:].max() >= evals.RANDOM_LOW + 50  # widened: 16 rows of 8+ tokens from 9000 ids


def test_the_softmax_leaves_out_every_other_token_before_narrow_until(tiny, monkeypatch):
    """Before narrow_until, the ids outside the narrow range get no gradient: never targets, they would otherwise all
    be pushed down the tied softmax along one direction (course-llama-v3's collapse)."""
    monkeypatch.setitem(train.SPECS, "tiny-lm", dataclasses.replace(TINY_LM, repeat_until=4, narrow_until=2,
                                                                    narrow_ids=50))
    trainer = train.Trainer("tiny-lm")
    embed = trainer.model.embed.W_E
    narrow = torch.arange(evals.RANDOM_LOW, evals.RANDOM_LOW + 50)
    for step, others_move in [(1, False), (2, True)]:
        embed.grad = None
        trainer.loss(trainer.data.batch(step), step).backward()
        grad = embed.grad.abs().sum(-1)  # [d_vocab]
        wide = grad[evals.RANDOM_LOW + 50:evals.RANDOM_HIGH]
        assert (grad[narrow] > 0).all()
        assert bool((wide > 0).any()) == others_move


def test_narrow_ids_need_span_rows_only():
    with pytest.raises(ValueError, match="narrow_until"):
        dataclasses.replace(TINY_LM, repeat_until=2, narrow_until=3)


@pytest.mark.parametrize("name", ["tiny-lm", "tiny-othello"])
def test_a_resumed_run_ends_where_an_uninterrupted_run_ends(tiny, monkeypatch, name):
    whole = train.Trainer(name)
    assert whole.run()
    whole_state = {k: v.clone() for k, v in whole.model.state_dict().items()}

    monkeypatch.setattr(train, "RUNS_DIR", tiny / "runs-interrupted")
    first = train.Trainer(name)
    assert not first.run(max_steps=2)  # stops early, saves its state
    second = train.Trainer(name)
    assert second.step == 2
    assert second.run()
    for key, value in second.model.state_dict().items():
        torch.testing.assert_close(value, whole_state[key], rtol=0, atol=0, msg=key)
    assert [r["step"] for r in second.history] == [r["step"] for r in whole.history]


def test_legal_move_targets_score_the_expected_next_move_loss(tiny, monkeypatch):
    monkeypatch.setitem(train.SPECS, "tiny-othello", dataclasses.replace(TINY_OTHELLO, targets="legal_moves"))
    trainer = train.Trainer("tiny-othello")
    tokens, legal = trainer.data.batch(step=0)  # [4 60], bool [4 59 61]
    assert legal.shape == (4, 59, 61) and legal.sum(-1).min() >= 1
    assert legal.gather(-1, tokens[:, 1:, None]).all()  # the move played next is always among the legal ones
    with torch.no_grad():
        log_probs = trainer.model(tokens[:, :-1]).log_softmax(-1)
        expected = torch.stack([-log_probs[g, t, legal[g, t]].mean() for g in range(4) for t in range(59)]).mean()
        torch.testing.assert_close(trainer.loss((tokens, legal), step=0), expected)


def test_a_spec_rejects_unknown_targets():
    with pytest.raises(ValueError, match="expected 'next_move' or 'legal_moves'"):
        dataclasses.replace(TINY_OTHELLO, targets="legal")
    with pytest.raises(ValueError, match="expected 'after_bos' or 'anywhere'"):
        dataclasses.replace(TINY_LM, repeat_layout="middle")
    with pytest.raises(ValueError, match="needs kind='othello'"):
        dataclasses.replace(TINY_LM, targets="legal_moves")


def test_training_lowers_the_loss(tiny, monkeypatch):
    monkeypatch.setitem(train.SPECS, "tiny-lm", train.Spec(**{**TINY_LM.__dict__, "steps": 30, "checkpoints": [30],
                                                              "eval_every": 1000}))
    trainer = train.Trainer("tiny-lm")
    batch = trainer.data.batch(step=0)
    with torch.no_grad():
        before = float(trainer.loss(batch, step=0))
    trainer.run()
    with torch.no_grad():
        assert float(trainer.loss(batch, step=0)) < before - 1.0


def test_export_writes_loadable_checkpoints_and_metrics(tiny):
    trainer = train.Trainer("tiny-lm")
    trainer.run()
    ship.export_run(trainer)
    out = tiny / "models" / "tiny-lm"
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["step_000003.safetensors", "step_000006.safetensors"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [c["step"] for c in metrics["checkpoints"]] == [3, 6]
    cfg, state_dict = course_models.load_course_model("tiny-lm", step=6)
    model = HookedTransformer(cfg)
    model.load_state_dict(state_dict)
    fresh = course_metrics.induction_metrics(model)
    assert fresh["loss_repeated_half"] == pytest.approx(metrics["final"]["loss_repeated_half"], abs=1e-4)


@pytest.mark.slow
def test_the_shipped_final_model_is_the_best_candidate_on_validation_prompts(tiny, monkeypatch):
    spec = dataclasses.replace(TINY_LM, steps=8, checkpoints=[3, 8], eval_every=2, select_from=4)
    monkeypatch.setitem(train.SPECS, "tiny-lm", spec)
    trainer = train.Trainer("tiny-lm")
    trainer.run()
    real_step, real_scores = trainer.choose_final_step()
    assert [r["step"] for r in real_scores] == [4, 6, 8]
    assert all(0 <= r["val_ioi_accuracy"] <= 1 for r in real_scores)
    assert real_step in (4, 6, 8)
    # Candidates are scored in step order: make step 6 the best (a tie on accuracy, won on logit difference).
    calls = []
    scores = iter([(0.5, 1.0), (0.9, 2.0), (0.9, 1.5)])

    def fake_ioi_metrics(model, n_prompts=200, split="test"):
        calls.append(split)
        accuracy, diff = next(scores)
        return {"val_ioi_accuracy": accuracy, "val_ioi_mean_logit_diff": diff}

    monkeypatch.setattr(train, "ioi_metrics", fake_ioi_metrics)
    ship.export_run(trainer)
    assert calls == ["validation"] * 3  # the test prompts play no part in the choice
    out = tiny / "models" / "tiny-lm"
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["step_000003.safetensors", "step_000006.safetensors"]
    assert course_models.checkpoint_steps("tiny-lm") == [3, 6]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["step"] for r in metrics["checkpoint_choice"]] == [4, 6, 8]
    assert metrics["final"]["step"] == 6
    cfg, state_dict = course_models.load_course_model("tiny-lm")
    assert cfg.checkpoint_value == 6
    saved = torch.load(trainer.run_dir / "checkpoints" / "6.pt", weights_only=True)
    torch.testing.assert_close(state_dict["blocks.0.attn.W_Q"], saved["blocks.0.attn.W_Q"], rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="select_from"):
        dataclasses.replace(spec, select_from=3)  # candidates would not come after checkpoint 3


def test_learning_rate_warms_up_decays_and_restarts():
    spec = train.Spec(kind="lm", cfg={}, steps=1000, batch=1, lr=2e-3, warmup=100, restart=(400, 1e-3))
    lrs = [train.lr_at(spec, step) for step in range(spec.steps)]
    assert lrs[0] == pytest.approx(2e-5) and lrs[99] == pytest.approx(2e-3)
    first = lrs[100:400]
    assert all(a >= b for a, b in zip(first, first[1:], strict=False)), "the first cosine must only decay"
    assert lrs[399] == pytest.approx(2e-4, rel=0.01)  # a tenth of the peak where the restart begins
    # The restart jumps back up onto a cosine of peak 1e-3 over the whole run, down to a tenth at the end.
    assert lrs[400] == pytest.approx(1e-3 * (0.1 + 0.45 * (1 + math.cos(math.pi * 0.4))))
    assert lrs[400] > 3 * lrs[399]
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    without = train.Spec(kind="lm", cfg={}, steps=1000, batch=1, lr=2e-3, warmup=100)
    with pytest.raises(ValueError, match="restart"):
        train.Spec(kind="lm", cfg={}, steps=1000, batch=1, lr=2e-3, warmup=100, restart=(1000, 1e-3))
    assert train.lr_at(without, 999) == pytest.approx(2e-4, rel=0.01)


def test_a_run_takes_the_thread_count_of_its_spec_unless_told_otherwise(tiny, monkeypatch):
    monkeypatch.setitem(train.SPECS, "tiny-lm", dataclasses.replace(TINY_LM, threads=2))
    before = torch.get_num_threads()
    try:
        train.Trainer("tiny-lm")
        assert torch.get_num_threads() == 2
        train.Trainer("tiny-lm", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_command_line_trains_resumes_and_ships(tiny, capsys):
    train.main(["tiny-lm", "--max-steps", "2"])
    assert "Stopped tiny-lm at step 2/6" in capsys.readouterr().out
    assert not (tiny / "models" / "tiny-lm").exists()
    train.main(["tiny-lm"])
    assert "Resumed tiny-lm at step 2" in capsys.readouterr().out
    assert course_models.checkpoint_steps("tiny-lm") == [3, 6]
    assert (tiny / "models" / "manifest.json").exists()


def test_a_stage_starts_from_the_shipped_weights_and_ships_only_when_it_beats_them(tiny, monkeypatch, capsys):
    monkeypatch.setitem(course_models.COURSE_MODELS, "tiny-othello", "tiny test model")
    train.main(["tiny-othello"])  # the first run of the chain, shipped
    first = course_models.load_course_model("tiny-othello")[1]
    stage = dataclasses.replace(TINY_OTHELLO, stage_of="tiny-othello", steps=3, checkpoints=[3], eval_every=3,
                                cfg={**TINY_OTHELLO.cfg, "normalization_type": "LNPre"})
    monkeypatch.setitem(train.SPECS, "tiny-othello.stage2", stage)
    trainer = train.Trainer("tiny-othello.stage2")
    assert trainer.start_step == 4
    for key, value in first.items():  # the stage's step 0 is the shipped model
        torch.testing.assert_close(trainer.model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert trainer.opt.state == {}  # a fresh optimizer

    score = ship.SCORE["othello"]
    shipped = course_models.metrics("tiny-othello")["final"][score]
    real_measure = ship.measure
    for offset, expect_shipped in [(-0.01, False), (+0.01, True)]:
        def fake_measure(model, spec, held_out, final, offset=offset):
            metrics = real_measure(model, spec, held_out, final)
            return {**metrics, score: shipped + offset} if final else metrics
        monkeypatch.setattr(ship, "measure", fake_measure)
        (trainer.run_dir / ship.EXPORTED).unlink(missing_ok=True)
        train.main(["tiny-othello"])  # replays the chain: the first run is skipped, the stage trains and exports
        out = capsys.readouterr().out
        assert "tiny-othello: already exported" in out
        outcome = json.loads((trainer.run_dir / ship.EXPORTED).read_text())
        assert outcome["shipped"] is expect_shipped, out
        assert course_models.checkpoint_steps("tiny-othello") == ([7] if expect_shipped else [4])
    config = course_models.model_config("tiny-othello")
    assert [s["name"] for s in config["stages"]] == ["tiny-othello.stage2"]
    assert config["training"]["steps"] == TINY_OTHELLO.steps  # the first run's record stays
    steps = [r["step"] for r in course_models.metrics("tiny-othello")["training_log"]]
    assert steps == [4, 7]  # the chain's log, in the model's step count


def test_a_stage_improves_its_score_in_the_metric_s_direction():
    """A stage ships when it raises an accuracy and when it lowers a loss (a stage may ship on the loss of the
    repeated half), never on a tie."""
    assert ship.improves("oos_ioi_accuracy", 0.70, 0.68) and not ship.improves("oos_ioi_accuracy", 0.66, 0.68)
    assert ship.improves("loss_repeated_half", 2.0, 9.0) and not ship.improves("loss_repeated_half", 9.1, 9.0)
    assert not ship.improves("oos_ioi_accuracy", 0.68, 0.68) and not ship.improves("loss_repeated_half", 9.0, 9.0)
