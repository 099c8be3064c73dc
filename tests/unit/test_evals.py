"""helpers.evals on the embedded course models: the induction loss shows the phase change of course-attn-only-2l's
checkpoints (seed 001's cell, run as written there but on the embedded checkpoints), and ioi_eval agrees with a
prompt-by-prompt loop written here."""

import pytest
import torch
import torch.nn.functional as F

from helpers import HookedTransformer, evals
from helpers.ioi import ioi_eval_prompts


def test_seed_001_phase_change_cell_on_the_embedded_checkpoints():
    device = "cpu"
    checkpoint_indices = [0, 5, 6, -1]  # the course model has 8 checkpoints; the phase change is between 5 and 6
    tokens_trained_on, induction_losses = [], []
    for index in checkpoint_indices:
        torch.manual_seed(0)
        model_for_this_checkpoint = HookedTransformer.from_pretrained("course-attn-only-2l", checkpoint_index=index,
                                                                      device=device)
        tokens_trained_on.append(model_for_this_checkpoint.cfg.checkpoint_value)
        with pytest.warns(UserWarning, match=r"subseq_len=384 repeated twice does not fit .*\(n_ctx=128\)"):
            induction_losses.append(evals.induction_loss(model_for_this_checkpoint, device=device).item())
    assert tokens_trained_on == sorted(tokens_trained_on)
    assert induction_losses[0] > 8 and induction_losses[1] > 7  # about ln(9000) = 9.1 before the phase change
    assert induction_losses[2] < 1 and induction_losses[3] < 0.5  # copying after it


@pytest.fixture(scope="module")
def attn_only():
    return HookedTransformer.from_pretrained("course-attn-only-2l")


def test_induction_loss_is_the_loss_on_the_second_half(attn_only):
    torch.manual_seed(3)
    loss = evals.induction_loss(attn_only, batch_size=2, subseq_len=20)
    torch.manual_seed(3)  # the same random tokens, by hand
    first = torch.randint(1000, 10000, (2, 20))
    tokens = torch.cat([first, first], dim=1)
    tokens[:, 0] = attn_only.tokenizer.bos_token_id
    logits = attn_only(tokens)
    # positions 21..38 predict tokens 22..39: the second half but its first token (it repeats nothing yet) and its
    # second (it follows the first, which the BOS replaced in the first half), as TransformerLens 3.5.1 slices
    expected = F.cross_entropy(logits[:, 21:-1].flatten(0, 1), tokens[:, 22:].flatten())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.manual_seed(3)
    no_bos = evals.induction_loss(attn_only, batch_size=2, subseq_len=20, prepend_bos=False)
    assert no_bos.item() != pytest.approx(loss.item(), rel=1e-6)  # the first token is no longer BOS


def test_repeated_random_tokens_put_a_bos_first_only_when_the_model_expects_one(attn_only):
    with_bos = evals.repeated_random_tokens(attn_only, seq_len=5, batch=2, seed=1)
    assert with_bos.shape == (2, 11) and bool((with_bos[:, 0] == attn_only.tokenizer.bos_token_id).all())
    assert torch.equal(with_bos[:, 1:6], with_bos[:, 6:])
    without = evals.repeated_random_tokens(attn_only, seq_len=5, batch=2, seed=1, prepend_bos=False)
    assert torch.equal(without, with_bos[:, 1:])  # the same random tokens, no BOS
    attn_only.cfg.default_prepend_bos = False  # as Qwen's config says
    try:
        assert torch.equal(evals.repeated_random_tokens(attn_only, seq_len=5, batch=2, seed=1), without)
    finally:
        attn_only.cfg.default_prepend_bos = True


@pytest.fixture(scope="module")
def gpt2():
    return HookedTransformer.from_pretrained("course-gpt2")


def test_ioi_eval_matches_a_prompt_by_prompt_loop(gpt2):
    prompts = ioi_eval_prompts(40, seed=1)
    diffs = []
    for p in prompts:
        logits = gpt2(p.prompt)[0, -1]
        diffs.append((logits[gpt2.to_single_token(p.io)] - logits[gpt2.to_single_token(p.subject)]).item())
    result = evals.ioi_eval(gpt2, dataset=prompts, batch_size=7)  # ragged batches, padded on the right
    assert result["Logit Difference"] == pytest.approx(sum(diffs) / len(diffs), abs=1e-4)
    assert result["Accuracy"] == pytest.approx(sum(d > 0 for d in diffs) / len(diffs))
    default = evals.ioi_eval(gpt2, num_samples=40)  # the same 40 held-out test prompts
    assert default["Logit Difference"] == pytest.approx(result["Logit Difference"], abs=1e-4)
    with pytest.raises(ValueError, match="the dataset is empty"):
        evals.ioi_eval(gpt2, dataset=[])


def test_sanity_check_is_the_loss_on_its_paragraph(gpt2):
    assert evals.sanity_check(gpt2).item() == pytest.approx(gpt2(evals.SANITY_TEXT, return_type="loss").item())
