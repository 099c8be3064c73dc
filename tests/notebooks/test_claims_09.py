"""What notebook 09 says about the embedded course-llama is true of it: each claim of its prose, recomputed here from
helpers and the model (not read from the stored outputs), so that a retrained stand-in cannot make the text false
silently. Its comparisons with the embedded course-gpt2 are recomputed on that model (conftest's embedded_gpt2) or
read from its shipped metrics.json and config.json, the sources the prose names."""

import json
import math
import statistics
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import HookedTransformer, evals, patching
from helpers.ioi import famous_ioi_prompt, ioi_eval_prompts, ioi_prompt_pairs_for_patching
from helpers.weights import valid_processing

MODELS = Path(__file__).resolve().parents[2] / "data" / "models"
TEXT = "After John and Mary went to the store, Mary gave a bottle of milk to"
SEQ_LEN, BATCH = 50, 8


def _shipped(name: str, file: str) -> dict:
    return json.loads((MODELS / name / file).read_text())


def _log(step: int) -> dict:
    (entry,) = [e for e in _shipped("course-gpt2", "metrics.json")["training_log"] if e["step"] == step]
    return entry


def _stage(number: int) -> dict:
    stages = _shipped("course-gpt2", "config.json")["stages"]
    (stage,) = [s for s in stages if s["name"] == f"course-gpt2.stage{number}"]
    return stage


def _ioi_share(spec: dict) -> float:
    return sum(share for source, share in spec["corpus_mix"].items() if source.startswith("ioi"))


@pytest.fixture(scope="module")
def model():
    model = HookedTransformer.from_pretrained("course-llama")
    model.requires_grad_(False)  # no graphs kept in the caches
    return model


@pytest.fixture(scope="module")
def cache(model):
    return model.run_with_cache(TEXT)[1]


# --- 1. the config, the parameters, the hooks ---------------------------------------------------------------


def test_09_the_stand_in_is_a_small_llama(model):
    cfg = model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads, cfg.rotary_base) == (4, 128, 4, 2, 10_000)
    assert (cfg.normalization_type, cfg.positional_embedding_type, cfg.gated_mlp, cfg.act_fn) == (
        "RMSPre", "rotary", True, "silu")
    assert not hasattr(model, "W_pos")


def test_09_no_norm_parameter_is_left_and_keys_are_stored_per_key_value_head(model):
    names = [name for name, _ in model.named_parameters() if name.startswith("blocks.0.")]
    assert not [name for name in names if ".ln" in name]
    assert model.blocks[0].attn._W_K.shape[0] == model.cfg.n_key_value_heads
    assert model.W_K.shape[1] == model.cfg.n_heads and "blocks.0.mlp.W_gate" in names


def test_09_rotated_hooks_follow_q_and_k_and_there_is_no_position_hook(cache):
    names = list(cache.keys())
    assert names.index("blocks.0.attn.hook_rot_q") == names.index("blocks.0.attn.hook_q") + 1
    assert names.index("blocks.0.attn.hook_rot_k") == names.index("blocks.0.attn.hook_k") + 1
    assert "hook_pos_embed" not in names and "blocks.0.mlp.hook_pre_linear" in names


# --- 2. BOS ---------------------------------------------------------------------------------------------------


def test_09_the_stand_in_prepends_gpt2_s_bos(model):
    assert model.cfg.default_prepend_bos and model.tokenizer.bos_token == "<|endoftext|>"
    assert model.to_str_tokens(TEXT)[0] == "<|endoftext|>"


def test_09_course_gpt2_uses_its_bos_on_notebook_01_s_sentence(embedded_gpt2):
    model = embedded_gpt2
    claire, mary = model.to_single_token(" Claire"), model.to_single_token(" Mary")
    sentence = "Claire and Mary went to the shops, then Mary gave a bottle of milk to"
    diffs = []
    for bos in (True, False):
        last = model(model.to_tokens(sentence, prepend_bos=bos))[0, -1]
        diffs.append(round((last[claire] - last[mary]).item(), 1))
    assert diffs == [10.0, -0.5]  # "+10,0 avec le BOS et de −0,5 sans"


# --- 3. RMSNorm -----------------------------------------------------------------------------------------------


def test_09_folding_scales_w_q_and_keeps_the_log_probs(model):
    raw = HookedTransformer.from_pretrained_no_processing("course-llama")
    assert type(raw.blocks[0].ln1).__name__ == "RMSNorm" and type(model.blocks[0].ln1).__name__ == "RMSNormPre"
    assert torch.allclose(model.W_Q[0], raw.blocks[0].ln1.w[None, :, None] * raw.W_Q[0], atol=1e-5)
    tokens = model.to_tokens(TEXT)
    assert (model(tokens).log_softmax(-1) - raw(tokens).log_softmax(-1)).abs().max() < 1e-4


def test_09_centring_is_left_off_with_a_warning(model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flags = valid_processing(model.cfg, center_writing_weights=True)
    assert flags["fold_ln"] and not flags["center_writing_weights"]
    assert len(caught) == 1 and "does not remove the mean" in str(caught[0].message)


# --- 4. GQA ---------------------------------------------------------------------------------------------------


def test_09_consecutive_query_heads_share_their_keys(model):
    group = model.cfg.n_heads // model.cfg.n_key_value_heads
    assert group == 2
    assert torch.equal(model.W_K[0, 0], model.W_K[0, 1]) and not torch.equal(model.W_K[0, 0], model.W_K[0, group])


# --- 5. rotary positions ----------------------------------------------------------------------------------------


def _scores(q, k):
    k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
    return torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])


def test_09_the_stored_scores_are_those_of_the_rotated_q_and_k(model, cache):
    n = cache["q", 0].shape[1]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    stored = cache["attn_scores", 0][..., causal]
    rotated = _scores(cache["blocks.0.attn.hook_rot_q"], cache["blocks.0.attn.hook_rot_k"])[..., causal]
    unrotated = _scores(cache["q", 0], cache["k", 0])[..., causal]
    assert torch.allclose(rotated, stored, atol=1e-4)
    assert (unrotated - stored).abs().max() > 0.5


def _distance_scores(model, cache, n_dist=64):
    tokens = model.to_str_tokens(TEXT)
    query, key = cache["q", 0][0, -1, 0], cache["k", 0][0, tokens.index(" Mary"), 0]
    attn = model.blocks[0].attn

    def rotated(vector):
        return attn.apply_rotary(vector.expand(1, 2 * n_dist, 1, -1).contiguous())[0, :, 0]

    q_rot, k_rot = rotated(query), rotated(key)
    scores = torch.stack([(q_rot[s:s + n_dist] * k_rot[s]).sum(-1) for s in (0, n_dist)]) / math.sqrt(model.cfg.d_head)
    return scores, (query @ key).item() / math.sqrt(model.cfg.d_head)


def test_09_one_query_key_pair_gets_a_score_that_depends_on_the_distance_only(model, cache):
    scores, unrotated = _distance_scores(model, cache)
    assert scores[0, 0].item() == pytest.approx(unrotated, abs=1e-4)  # "exactement celui d'avant la rotation"
    assert torch.allclose(scores[0], scores[1], atol=1e-4)  # the key at position 0 or 64
    assert scores[0].max() - scores[0].min() > 1.0  # "des scores qui varient avec la distance"


# --- 6. the gated MLP ------------------------------------------------------------------------------------------


def test_09_gated_neurons_take_both_signs(model, cache):
    pre, linear, post = cache["pre", 0], cache["blocks.0.mlp.hook_pre_linear"], cache["post", 0]
    assert torch.allclose(post, F.silu(pre) * linear + model.blocks[0].mlp.b_in, atol=1e-5)
    assert F.silu(torch.linspace(-10, 10, 100_001)).min() == pytest.approx(-0.2785, abs=1e-4)  # "−0,28"
    assert 0.3 < (F.silu(pre) < 0).float().mean() < 0.7  # "à peu près la moitié des entrées"
    assert post.min() < -1.0 and post.max() > 1.0  # "bien plus bas", "fortement dans les deux"


# --- 7. induction ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repeated(model):
    tokens = evals.repeated_random_tokens(model, seq_len=SEQ_LEN, batch=BATCH)
    logits = model(tokens)
    losses = model.loss_fn(logits, tokens, per_token=True).mean(0)
    _, patterns = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    patterns = [patterns["pattern", layer] for layer in range(model.cfg.n_layers)]
    induction = torch.stack([p.diagonal(offset=1 - SEQ_LEN, dim1=-2, dim2=-1)[..., 2:].mean((0, -1))  # after BOS
                             for p in patterns])
    previous = torch.stack([p.diagonal(offset=-1, dim1=-2, dim2=-1)[..., 1:].mean((0, -1)) for p in patterns])
    first_token = tokens[:, 1, None, None].expand(-1, SEQ_LEN - 2, 1)
    bet = -logits.log_softmax(-1)[:, 2:SEQ_LEN].gather(-1, first_token).mean()
    return losses, induction, previous, bet


def test_09_the_induction_stripe_keeps_the_destinations_of_the_repeated_half_only():
    n = 1 + 2 * SEQ_LEN  # BOS and the two halves
    query, key = torch.arange(n)[:, None].expand(n, n), torch.arange(n)[None, :].expand(n, n)
    destinations = query.diagonal(offset=1 - SEQ_LEN)[2:]
    assert destinations.tolist() == list(range(1 + SEQ_LEN, n))  # "les seules destinations de la moitié répétée"
    assert (destinations - key.diagonal(offset=1 - SEQ_LEN)[2:] == SEQ_LEN - 1).all()


def test_09_the_four_layer_1_heads_induce_on_two_layer_0_previous_token_heads(repeated):
    """« les quatre têtes de la couche 1 ont un score d'induction de 0,96, et deux têtes de la couche 0 donnent plus de
    40 % de leur attention au token précédent »; the printed lists hold the heads above 0.4, far enough from it on
    any CPU."""
    _, induction, previous, _ = repeated
    assert [(round(v, 2)) for v in induction[1].tolist()] == [0.96] * 4
    assert (induction.flatten().sort().values[-5] < 0.4 - 0.1) and (induction[1] > 0.4 + 0.1).all()
    assert (previous > 0.4).nonzero().tolist() == [[0, 0], [0, 3]]
    assert ((previous - 0.4).abs() > 0.03).all() and (previous[0, [0, 3]] > 0.5 * previous.max()).all()


def test_09_the_repeated_half_falls_the_first_repeated_token_stays_high_and_the_first_token_is_a_bet(repeated):
    """« La perte tombe sur la moitié répétée (0,20) ; sur la première ... elle reste au-dessus du tirage uniforme.
    Le premier token répété ... garde une perte bien plus haute que le reste de la moitié répétée, mais bien plus
    basse que la première moitié » and the model bets on the fragment's first token at every position."""
    losses, _, _, bet = repeated
    first_half, repeated_half = losses[1:SEQ_LEN].mean(), losses[SEQ_LEN + 1:].mean()
    assert round(repeated_half.item(), 2) == 0.20 and first_half > math.log(9000)
    assert losses[SEQ_LEN] > 10 * repeated_half and losses[SEQ_LEN] < first_half - 3
    assert bet < losses[SEQ_LEN] < first_half  # the bet on the first token explains the first repeated token's loss


def test_09_the_induction_heads_formed_just_after_the_widening():
    """« tirés de 2 000 ids seulement pendant 800 pas, puis des 9 000 jusqu'au pas 1 400, puis le texte ; ... meilleur
    score 0,33 au pas 1 000, 0,93 au pas 1 250 »."""
    training = _shipped("course-llama", "config.json")["training"]
    assert (training["narrow_ids"], training["narrow_until"], training["repeat_until"]) == (2000, 800, 1400)
    assert training["repeat_layout"] == "after_bos" and training["repeat_fraction"] == 0.25
    log = {e["step"]: e["best_induction_score"] for e in _shipped("course-llama", "metrics.json")["training_log"]}
    assert round(log[1000], 2) == 0.33 and round(log[1250], 2) == 0.93
    assert max(score for step, score in log.items() if step <= 750) < 0.05  # none before the widening


# --- 8. IOI and patching ------------------------------------------------------------------------------------------


def test_09_no_ioi_in_either_order_though_the_famous_prompt_gets_john(model):
    prompts = ioi_eval_prompts(100)
    diffs = torch.from_numpy(evals.ioi_logit_diffs(model, prompts))
    abb = torch.tensor([p.order == "ABB" for p in prompts])
    assert 0.35 < (diffs > 0).float().mean() < 0.65  # "au hasard"
    for order in (abb, ~abb):  # "dans un ordre comme dans l'autre"
        assert 0.3 < (diffs[order] > 0).float().mean() < 0.7
    famous = famous_ioi_prompt()
    last = model(famous.prompt)[0, -1]
    assert model.to_str_tokens(last.argmax()) == [" John"]  # "donne bien « John » en tête"


def test_09_course_gpt2_answered_the_second_named_after_its_stage_2_then_learned_ioi():
    end_of_stage2 = _log(3000)
    assert _stage(2)["start_step"] + _stage(2)["steps"] == 3000
    assert end_of_stage2["ioi_accuracy"] == 0.505 and end_of_stage2["ioi_n_prompts"] == 200
    by_template = end_of_stage2["oos_ioi_by_template"].values()  # each template: as many ABB as BAB prompts
    assert round(100 * statistics.mean(t["accuracy_ABB"] for t in by_template)) == 16
    assert round(100 * statistics.mean(t["accuracy_BAB"] for t in by_template)) == 72
    assert _ioi_share(_stage(2)) == 0.5 and _ioi_share(_stage(3)) == _ioi_share(_stage(4)) == 0.8
    final = _shipped("course-gpt2", "metrics.json")["final"]
    assert (final["ioi_accuracy"], final["oos_ioi_accuracy"]) == (0.86, 0.75)


def test_09_course_gpt2_s_patching_map_leaves_two_columns(embedded_gpt2):
    model = embedded_gpt2
    prompts, answers, corrupted_prompts = ioi_prompt_pairs_for_patching()
    clean_tokens, corrupted_tokens = model.to_tokens(prompts), model.to_tokens(corrupted_prompts)
    answer_tokens = torch.tensor([[model.to_single_token(name) for name in pair] for pair in answers])

    def logit_diff(logits):
        pair = logits[:, -1].gather(-1, answer_tokens)
        return (pair[:, 0] - pair[:, 1]).mean()

    clean_logits, clean_cache = model.run_with_cache(clean_tokens)
    clean, corrupted = logit_diff(clean_logits), logit_diff(model(corrupted_tokens))
    assert clean > 1.0  # "qui la fait"
    resid_map = patching.get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, logit_diff)
    share = (resid_map - corrupted) / (clean - corrupted)  # [layer pos]: 0 at the corrupted value, 1 at the clean
    tokens = model.to_str_tokens(clean_tokens[0])
    repeated = len(tokens) - 1 - tokens[::-1].index(tokens[2])  # the subject's second mention
    assert tokens.count(tokens[2]) == 2 and repeated < len(tokens) - 1
    others = [p for p in range(len(tokens)) if p not in (repeated, len(tokens) - 1)]
    assert share[:, others].abs().max() < 0.05  # "partout sauf dans deux colonnes"
    assert share[0, repeated] > 0.95 and share[0, -1].abs() < 0.05  # "à la couche 0, tout l'effet"
    assert (share[1:, repeated] > 0.1).all() and (share[1:, -1] > 0.1).all()  # "il se partage"


def test_09_the_patching_map_is_flat_because_the_repeated_name_is_not_used(model):
    prompts, answers, corrupted_prompts = ioi_prompt_pairs_for_patching()
    clean_tokens, corrupted_tokens = model.to_tokens(prompts), model.to_tokens(corrupted_prompts)
    answer_tokens = torch.tensor([[model.to_single_token(name) for name in pair] for pair in answers])

    def logit_diffs(logits):
        pair = logits[:, -1].gather(-1, answer_tokens)
        return pair[:, 0] - pair[:, 1]

    clean_logits, clean_cache = model.run_with_cache(clean_tokens)
    clean, corrupted = logit_diffs(clean_logits), logit_diffs(model(corrupted_tokens))
    # "presque nulles", hence the colour scale max(1, |clean|, |corrupted|) "va de −1 à +1"
    assert abs(clean.mean()) < 0.05 and abs(corrupted.mean()) < 0.05
    assert 2.45 < clean.abs().max() < 2.55 and (clean - corrupted).abs().max() < 0.05  # "2,5", "presque pas"
    resid_map = patching.get_act_patch_resid_pre(model, corrupted_tokens, clean_cache,
                                                 lambda logits: logit_diffs(logits).mean())
    assert (resid_map - corrupted.mean()).abs().max() < 0.02  # "moins de 0,02 de la valeur corrompue"
