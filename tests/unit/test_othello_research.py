"""helpers.othello_research: the probes, targets, edits and attributions of notebook 08, against independent
computations (the rules played move by move, the training code's probe fit, a hand-built decomposition)."""

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import HookedTransformer, HookedTransformerConfig
from helpers import othello_exercises as ox
from helpers import othello_research as research
from helpers.exercises import ExerciseError
from helpers.othello import BLACK, OthelloBoard, generate_games
from tools import make_exercices as mk

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny():
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=12, d_head=4, n_heads=4, d_mlp=32, d_vocab=61,
                                  act_fn="gelu", normalization_type="LNPre", seed=0)
    return HookedTransformer(cfg).eval()


def test_linear_probes_recover_a_linear_map():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 500, 6, generator=generator, dtype=torch.float64)
    W_true = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    target = x[0] @ W_true + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    W, b = research.fit_linear_probes(x[:1], target, ridge=1e-9)
    assert torch.allclose(W[0], W_true, atol=1e-6) and torch.allclose(b[0], torch.tensor([1.0, -2.0, 0.5],
                                                                                         dtype=torch.float64))


def test_linear_probes_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="same n"):
        research.fit_linear_probes(torch.zeros(1, 10, 4), torch.zeros(9, 2))


def test_balanced_accuracy_and_thresholds_by_hand():
    labels = torch.tensor([[True, True, False, False, False, False, False, False, False, False]])
    scores = torch.tensor([[[0.9, 0.1, 0.8, 0.7, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]])
    # mean score of the true entries 0.5, of the false ones 0.1875: threshold 0.34375
    assert torch.allclose(research.binary_thresholds(scores, labels), torch.tensor([0.34375]))
    # with that threshold: 1 of 2 true entries found, 6 of 8 false entries rejected
    assert float(research.balanced_accuracy(scores, labels, torch.tensor([0.34375]))[0]) == pytest.approx(0.625)


def test_r_squared():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert float(research.r_squared(target, target)) == 1
    assert float(research.r_squared(torch.full((4,), 2.5, dtype=torch.float64), target)) == pytest.approx(0)


def test_board_targets_follow_the_rules_move_by_move():
    games = generate_games(3, seed=5)
    targets = research.board_targets(games)
    for g, game in enumerate(games):
        board = OthelloBoard()
        for t, square in enumerate(game[:59]):
            flipped = board.play(int(square))
            mover = board.player if not board.game_over else -int(board.board.flat[int(square)])
            flat = board.board.reshape(64)
            assert targets.black_to_move[g, t] == (mover == BLACK)
            mine = flat == mover
            assert torch.equal(targets.relative[g, t], torch.from_numpy(np.where(flat == 0, 0, np.where(mine, 1, 2))))
            assert torch.equal(targets.absolute[g, t], torch.from_numpy(np.where(flat == -1, 2, flat).astype(np.int64)))
            assert set(torch.nonzero(targets.flipped[g, t]).flatten().tolist()) == set(flipped)
            assert set(torch.nonzero(targets.legal[g, t]).flatten().tolist()) == set(board.legal_moves())
            assert targets.my_count[g, t] == mine.sum()


def test_class_mean_differences_by_hand():
    x = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
    labels = torch.zeros(4, 64, dtype=torch.long)
    labels[:, 7] = torch.tensor([1, 1, 2, 0])  # mine, mine, theirs, empty
    labels[:, 0] = 2
    labels[0, 0] = 1
    diffs = research.class_mean_differences(x, labels)
    assert torch.allclose(diffs[0, 7], torch.tensor([2.0, -2.0], dtype=torch.float64))
    assert torch.allclose(diffs[0, 0], torch.tensor([1.0, 0.0], dtype=torch.float64) - x[0, 1:].double().mean(0))


def test_an_edit_at_the_output_depth_is_added_before_the_unembedding(tiny):
    tokens = torch.randint(1, 61, (3, 12), generator=torch.Generator().manual_seed(2))
    pos = torch.tensor([4, 11, 0])
    delta = torch.randn(3, 16, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(research.edited_probs(tiny, tokens, pos, {}), tiny(tokens)[torch.arange(3), pos].softmax(-1))
    _, cache = tiny.run_with_cache(tokens)
    final = cache["resid_post", 1][torch.arange(3), pos] + delta
    expected = tiny.unembed(tiny.ln_final(final)).softmax(-1)
    assert torch.allclose(research.edited_probs(tiny, tokens, pos, {2: delta}), expected, atol=1e-6)


def test_an_edited_run_started_from_the_first_edited_layer_gives_the_same_bits(tiny):
    tokens = torch.randint(1, 61, (5, 12), generator=torch.Generator().manual_seed(5))
    pos = torch.tensor([4, 11, 0, 7, 7])
    delta = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(6))
    resid = research.residual_by_depth(tiny, tokens)
    before = resid.clone()
    for edits in ({}, {0: delta[0]}, {1: delta[1]}, {2: delta[2]}, {1: delta[1], 2: delta[2]}):
        full = research.edited_probs(tiny, tokens, pos, edits)
        assert torch.equal(research.edited_probs(tiny, tokens, pos, edits, resid), full), list(edits)
        if edits:
            assert not torch.equal(full, research.edited_probs(tiny, tokens, pos, {}))
    assert torch.equal(resid, before)  # the edits went into a copy


def test_components_add_up_to_the_final_residual_and_their_attributions_to_the_logits(tiny):
    tokens = torch.randint(1, 61, (2, 12), generator=torch.Generator().manual_seed(4))
    pos = torch.tensor([5, 9])
    heads, mlps, scale = research.component_outputs(tiny, tokens, pos)
    assert heads.shape == (2, 2, 4, 16) and mlps.shape == (2, 2, 16) and scale.shape == (2, 1)
    _, cache = tiny.run_with_cache(tokens)
    rows = torch.arange(2)
    rest = cache["hook_embed"][rows, pos] + cache["hook_pos_embed"][rows, pos] + tiny.b_O.sum(0)
    final = cache["resid_post", 1][rows, pos]
    assert torch.allclose(heads.sum((1, 2)) + mlps.sum(1) + rest, final, atol=1e-5)
    moves = np.zeros((2, 61), dtype=bool)
    moves[0, [3, 8]] = moves[1, [60]] = True
    directions = research.mean_unembed(tiny, moves)
    logits = tiny(tokens)[rows, pos]
    mean_logit = torch.stack([logits[0, [3, 8]].mean(), logits[1, 60]]) - torch.stack([tiny.b_U[[3, 8]].mean(),
                                                                                         tiny.b_U[60]])
    parts = torch.cat([heads.flatten(1, 2), mlps, rest[:, None]], dim=1)
    total = research.direct_logit_attribution(parts, directions, scale).sum(1)
    assert torch.allclose(total, mean_logit, atol=1e-4)


def test_neuron_move_weights_are_centred_and_a_one_move_row_has_share_one(tiny):
    weights = research.neuron_move_weights(tiny)
    assert weights.shape == (2, 32, 60)
    assert torch.allclose(weights.mean(-1), torch.zeros(2, 32), atol=1e-5)
    row = tiny.W_out[1, 5] @ tiny.W_U[:, 1:]
    assert torch.allclose(weights[1, 5], row - row.mean(), atol=1e-5)
    one_hot = torch.zeros(60)
    one_hot[7] = 3.0
    assert float(research.one_move_share(one_hot)) == 1
    assert float(research.one_move_share(torch.ones(60))) == pytest.approx(1 / 60)


def test_an_mlp_probe_learns_an_exclusive_or_that_a_linear_probe_cannot_read_and_is_deterministic():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(1, 600, 4, generator=generator)
    xor = ((x[0, :, 0] > 0) ^ (x[0, :, 1] > 0)).long()
    labels = xor[:, None].expand(600, 64)
    probes = research.fit_mlp_probes(x, labels, n_classes=2, hidden=32, steps=300, lr=0.03)
    mlp_accuracy = (probes(x).unflatten(-1, (64, 2)).argmax(-1) == labels).float().mean()
    W, b = research.fit_linear_probes(x, F.one_hot(labels, 2).flatten(1).double())
    linear_accuracy = (research.probe_scores(W, b, x).unflatten(-1, (64, 2)).argmax(-1) == labels).double().mean()
    assert mlp_accuracy > 0.9 and linear_accuracy < 0.7
    again = research.fit_mlp_probes(x, labels, n_classes=2, hidden=32, steps=300, lr=0.03)
    assert torch.equal(again(x), probes(x))
    assert probes.W1.dtype == probes(x).dtype == torch.float64  # float32 steps amplify rounding across CPUs


# ---------------------------------------------------------------------------------------------------
# Notebook 08's exercise checks (helpers.othello_exercises): the solution passes, typical mistakes are named
# ---------------------------------------------------------------------------------------------------


def _solution(number: str, stub: bool = False):
    """The function of exercise ``number``'s solution cell in notebook 08 (or of its learner stub)."""
    (path,) = (ROOT / "notebooks").glob("08_*.ipynb")
    source = mk.solutions(mk.read(path))[number]
    namespace = {"torch": torch}
    exec(mk.stub(source) if stub else source, namespace)  # the course's own notebook cell
    return next(v for k, v in namespace.items() if callable(v) and k not in ("torch",))


def _fails_with(check, fn, *fragments):
    with pytest.raises(ExerciseError) as error:
        check(fn)
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)


def _still_to_do(check, fn, capsys):
    check(fn)
    assert " : à faire. " in capsys.readouterr().out


def test_08_1_to_black_white(capsys):
    targets = research.board_targets(generate_games(4, seed=9))
    relative, black = targets.relative.flatten(0, 1), targets.black_to_move.flatten()
    check = partial(ox.check_to_black_white, relative=relative, black_to_move=black,
                    absolute=targets.absolute.flatten(0, 1))
    check(_solution("08.1"))
    assert "réussi" in capsys.readouterr().out
    _fails_with(check, lambda r, b: torch.where(b[:, None], torch.where(r == 0, 0, 3 - r), r), "inversées")
    _fails_with(check, lambda r, b: r.clone(), "ignoré")
    _fails_with(check, lambda r, b: torch.where(b[:, None], r, 3 - r), "cases vides")
    _still_to_do(check, _solution("08.1", stub=True), capsys)
    with pytest.raises(ValueError, match="rel_test, black_test and abs_test"):
        ox.check_to_black_white(_solution("08.1"), relative, ~black, targets.absolute.flatten(0, 1))


def test_08_2_balanced_accuracy(capsys):
    generator = torch.Generator().manual_seed(7)
    labels = torch.rand(50, 64, generator=generator) < 0.05
    pred = torch.where(torch.rand(50, 64, generator=generator) < 0.7, labels, ~labels)
    check = partial(ox.check_balanced_accuracy, pred=pred, labels=labels)
    check(_solution("08.2"))
    assert "réussi" in capsys.readouterr().out
    _fails_with(check, lambda p, y: (p == y).float().mean(), "précision ordinaire")
    _fails_with(check, lambda p, y: p[y].float().mean(), "rappel")
    _fails_with(check, lambda p, y: (p[y].float().mean() + p[~y].float().mean()) / 2, "`pred` FAUX")
    _fails_with(check, lambda p, y: p[y].float().mean() + (~p[~y]).float().mean(), "divisez par 2")
    _still_to_do(check, _solution("08.2", stub=True), capsys)


def test_08_3_dla_onto_moves(tiny, capsys):
    generator = torch.Generator().manual_seed(8)
    vectors = torch.randn(6, 16, generator=generator)
    scale = torch.rand(6, 1, generator=generator) + 0.5
    moves = torch.rand(6, 61, generator=generator) < 0.2
    moves[:, 5] = True
    check = partial(ox.check_dla_onto_moves, vectors=vectors, W_U=tiny.W_U, scale=scale, moves=moves)
    check(_solution("08.3"))
    assert "réussi" in capsys.readouterr().out

    def no_centring(v, w, s, m):
        return (v * (m.float() @ w.T / m.sum(-1, keepdim=True))).sum(-1) / s[:, 0]

    def summed(v, w, s, m):
        return ((v - v.mean(-1, keepdim=True)) * (m.float() @ w.T)).sum(-1) / s[:, 0]

    def no_scale(v, w, s, m):
        return ((v - v.mean(-1, keepdim=True)) * (m.float() @ w.T / m.sum(-1, keepdim=True))).sum(-1)

    _fails_with(check, no_centring, "pas centrés")
    _fails_with(check, summed, "somme des logits")
    _fails_with(check, no_scale, "divisez par `scale`")
    _still_to_do(check, _solution("08.3", stub=True), capsys)


def test_08_4_neuron_move_logits(tiny, capsys):
    check = partial(ox.check_neuron_move_logits, W_out=tiny.W_out[0], W_U=tiny.W_U)
    check(_solution("08.4"))
    assert "réussi" in capsys.readouterr().out
    _fails_with(check, lambda w_out, w_u: w_out @ w_u[:, 1:], "Pas centré")
    _fails_with(check, lambda w_out, w_u: (w_out @ w_u) - (w_out @ w_u).mean(-1, keepdim=True), "token 0")
    _fails_with(check, lambda w_out, w_u: (w_out @ w_u[:, 1:]) - (w_out @ w_u[:, 1:]).mean(0, keepdim=True),
                "mauvaise dimension")
    _still_to_do(check, _solution("08.4", stub=True), capsys)
