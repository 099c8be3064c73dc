"""helpers.head_detector: the built-in patterns on hand-made token lists, and the scores of heads whose attention
pattern a hook sets to a known matrix (so that every expected score is computed by hand)."""

import pytest
import torch

from helpers import HookedTransformer
from helpers.head_detector import (
    detect_head,
    get_duplicate_token_head_detection_pattern,
    get_induction_head_detection_pattern,
    get_previous_token_head_detection_pattern,
)

TOKENS = torch.tensor([[0, 5, 6, 5, 6]])


def test_builtin_patterns():
    prev = get_previous_token_head_detection_pattern(TOKENS)
    assert prev.nonzero().tolist() == [[1, 0], [2, 1], [3, 2], [4, 3]]
    dup = get_duplicate_token_head_detection_pattern(TOKENS)
    assert dup.nonzero().tolist() == [[3, 1], [4, 2]]  # the second 5 looks at the first 5, the second 6 at the first
    ind = get_induction_head_detection_pattern(TOKENS)
    assert ind.nonzero().tolist() == [[3, 2], [4, 3]]  # ... and at the token that followed it


@pytest.fixture(scope="module")
def model():
    return HookedTransformer.from_pretrained("course-attn-only-2l")


PROMPT = "one two three one two three"


def with_patterns(model, patterns: dict[int, torch.Tensor]):
    """A forward hook that sets the pattern of layer 0's heads to the given [pos pos] matrices."""

    def hook(pattern, hook):
        for head, p in patterns.items():
            pattern[:, head] = p

    return [("blocks.0.attn.hook_pattern", hook)]


def test_scores_of_heads_with_known_patterns(model):
    n = model.to_tokens(PROMPT).shape[-1]
    prev = get_previous_token_head_detection_pattern(torch.zeros(1, n))
    prev[0, 0] = 1.0  # the first position can only attend to itself
    bos = torch.zeros(n, n)
    bos[:, 0] = 1.0
    with model.hooks(with_patterns(model, {0: prev, 1: bos})):
        mul = detect_head(model, PROMPT, "previous_token_head")
        no_bos = detect_head(model, PROMPT, "previous_token_head", exclude_bos=True)
        absolute = detect_head(model, PROMPT, "previous_token_head", error_measure="abs")
        only = detect_head(model, PROMPT, "previous_token_head", heads=[(0, 1)])
    assert mul[0, 0].item() == pytest.approx((n - 1) / n)  # all the attention of rows 1..n-1 is on the pattern
    assert mul[0, 1].item() == pytest.approx(1 / n)  # only row 1 attends to position 0 = its previous token
    assert no_bos[0, 0].item() == pytest.approx(1.0)  # rows 0 and 1 attend to BOS only: excluded, the rest match
    assert absolute[0, 0].item() == pytest.approx(1 - round(1 / n, 3))  # a single mismatch of 1, at (0, 0)
    assert absolute[0, 1].item() == pytest.approx(1 - round((1 + 2 * (n - 2)) / n, 3))
    assert only[0, 1] == mul[0, 1] and (only.flatten().tolist().count(-1.0) == only.numel() - 1)


def test_induction_head_of_the_course_model(model):
    """The course model's induction head (L1H2 in the README's table) is the top induction head here too."""
    scores = detect_head(model, ["a b c d e f a b c d e f", "red green blue red green blue"], "induction_head")
    assert scores.shape == (model.cfg.n_layers, model.cfg.n_heads)
    assert divmod(int(scores.argmax()), model.cfg.n_heads) == (1, 2)


def test_errors(model):
    with pytest.raises(ValueError, match=r"detection_pattern='induction' is not a built-in pattern"):
        detect_head(model, PROMPT, "induction")
    with pytest.raises(ValueError, match=r"error_measure='l2'; pass one of \('mul', 'abs'\)"):
        detect_head(model, PROMPT, "induction_head", error_measure="l2")
    with pytest.raises(ValueError, match=r"lower-triangular \[\d+ \d+\] tensor .* got shape \(3, 3\)"):
        detect_head(model, PROMPT, torch.eye(3))
    with pytest.raises(ValueError, match=r"\(5, 0\) is not a head of this model"):
        detect_head(model, PROMPT, "induction_head", heads=[(5, 0)])
    with pytest.warns(UserWarning, match="other than 0 and 1"):
        n = model.to_tokens(PROMPT).shape[-1]
        detect_head(model, PROMPT, torch.tril(torch.full((n, n), 0.5)))
