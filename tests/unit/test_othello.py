"""Tests of helpers.othello: rules, board states, fast generator, token maps, masks and plots.

The rules are checked against tests/unit/othello_reference.py, a second engine written square by square.
"""

import subprocess
import sys

import numpy as np
import othello_reference as R
import pytest

from helpers import othello as O
from helpers import othello_plots

# The shortest possible Othello game: 9 moves, black wipes out white 13-0 (our row-letter notation).
SHORTEST_GAME = ["D3", "C5", "D6", "E3", "B4", "C3", "D2", "C4", "F4"]


squares = R.squares


@pytest.fixture(scope="module")
def sample_games():
    """~300 random games from the fast generator, enriched in games with passes and early endings."""
    games = O.generate_games(4000, seed=3, full_length=False)
    states = O.batch_board_states(games)
    lengths = R.game_lengths(games)
    with_pass = np.flatnonzero(R.passes(states).any(axis=1))
    early = np.flatnonzero(lengths < O.MAX_MOVES)
    rng = np.random.default_rng(0)
    random = rng.choice(len(games), 150, replace=False)
    chosen = np.unique(np.concatenate([with_pass[:100], early[:40], random]))
    assert len(early) > 0 and len(with_pass) > 0  # the sample really covers passes and early endings
    return games[chosen]


# --- labels and tokens ------------------------------------------------------------------------------


def test_labels_round_trip():
    assert O.square_label(0) == "A1"
    assert O.square_label(26) == "D3"
    assert O.square_label(63) == "H8"
    assert R.label_to_square("d3") == 26
    assert all(R.label_to_square(O.square_label(s)) == s for s in range(64))
    with pytest.raises(ValueError):
        R.label_to_square("I1")
    with pytest.raises(ValueError):
        O.square_label(64)


def test_token_maps():
    playable = [s for s in range(64) if s not in (27, 28, 35, 36)]
    tokens = [O.to_token(s) for s in playable]
    assert tokens == list(range(1, 61))  # increasing square order, 1..60
    assert [O.to_square(t) for t in tokens] == playable
    assert O.to_square(1) == 0 and O.to_square(27) == 26 and O.to_square(28) == 29 and O.to_square(60) == 63
    assert O.token_label(0) == "pass" and O.token_label(28) == "D6"
    for centre in (27, 28, 35, 36):
        with pytest.raises(ValueError):
            O.to_token(centre)
    with pytest.raises(ValueError):
        O.to_square(61)
    # arrays, with padding -1 <-> 0
    games = O.generate_games(50, seed=1, full_length=False)
    games[0, 50:] = O.PAD_SQUARE
    tok = O.to_token(games)
    assert tok.shape == games.shape and tok.dtype == np.int64
    assert tok.min() >= 0 and tok.max() <= 60 and (tok[0, 50:] == 0).all()
    np.testing.assert_array_equal(O.to_square(tok), games)


# --- rules -------------------------------------------------------------------------------------------


def test_starting_position():
    board = O.OthelloBoard()
    expected = np.zeros((8, 8), dtype=np.int8)
    expected.flat[[27, 36]] = O.WHITE
    expected.flat[[28, 35]] = O.BLACK
    np.testing.assert_array_equal(board.board, expected)
    assert board.board.dtype == np.int8
    assert board.player == O.BLACK
    assert board.legal_moves() == [19, 26, 37, 44]
    assert [O.square_label(s) for s in board.legal_moves()] == ["C4", "D3", "E6", "F5"]
    assert R.score(board.board) == (2, 2)


def test_known_sequence_and_flips():
    board = O.OthelloBoard()
    assert board.play(R.label_to_square("D3")) == [27]  # black D3 flips D4
    assert board.player == O.WHITE
    assert board.legal_moves() == [18, 20, 34]  # C3, C5, E3
    assert board.play(R.label_to_square("C3")) == [27]  # white C3 flips D4 back (diagonal C3-D4-E5)
    assert board.play(R.label_to_square("E6")) == [36]  # black E6 flips E5 (row E4-E5-E6)
    expected = np.zeros((8, 8), dtype=np.int8)
    expected.flat[[26, 28, 35, 36, 37]] = O.BLACK
    expected.flat[[18, 27]] = O.WHITE
    np.testing.assert_array_equal(board.board, expected)
    assert R.score(board.board) == (5, 2) and board.history == [26, 18, 37]

    states = O.batch_board_states(squares(["D3", "C3", "E6"]))  # one game: no batch dimension
    assert states.boards.shape == (3, 8, 8)
    assert states.legal.shape == (3, 64) and states.flipped.shape == (3, 64)
    assert R.mask_to_lists(states.flipped) == [[27], [27], [36]]
    assert states.players.tolist() == [1, -1, 1] and states.next_players.tolist() == [-1, 1, -1]
    np.testing.assert_array_equal(states.boards[-1], expected)
    assert R.mask_to_lists(states.legal)[0] == [18, 20, 34]


def test_edited_boards_are_read_as_they_are():
    # Notebook 06 puts a disc on a board by hand, then asks for the legal moves.
    board = O.OthelloBoard.from_moves(squares(["D3", "C5"]))
    board.board.flat[36] = board.player  # E5 becomes black's
    assert board.legal_moves() == R.legal_moves(board.board, board.player)
    assert all(board.flips(s) == R.flips(board.board, s, board.player) for s in range(64))


def test_multi_direction_flip():
    # Every legal move changes exactly the played square and the squares that flips() announces.
    board = O.OthelloBoard.from_moves(squares(["D3", "C5", "E6", "F5"]))
    for square in board.legal_moves():
        flipped = board.flips(square)
        after = board.copy()
        before = after.board.copy()
        assert after.play(square) == flipped
        changed = np.flatnonzero((before != after.board).ravel()).tolist()
        assert sorted(changed) == sorted(flipped + [square])


def test_illegal_moves_raise():
    board = O.OthelloBoard()
    with pytest.raises(O.IllegalMoveError, match="Legal moves: 19 \\(C4\\)"):
        board.play(0)
    with pytest.raises(O.IllegalMoveError, match="occupied"):
        board.play(27)
    assert board.history == [] and board.player == O.BLACK  # nothing changed


def test_shortest_game_ends_with_wipeout():
    game = squares(SHORTEST_GAME)
    board = O.OthelloBoard.from_moves(game)
    assert board.game_over and R.score(board.board) == (13, 0)
    assert board.legal_moves() == [] and board.legal_moves(O.WHITE) == []
    with pytest.raises(O.IllegalMoveError, match="game is over"):
        board.play(0)
    states = O.batch_board_states(game + [O.PAD_SQUARE] * 3)
    assert states.next_players[8] == 0 and not states.legal[8].any()
    assert (states.players[9:] == 0).all() and (states.boards[9:] == states.boards[8]).all()
    with pytest.raises(O.IllegalMoveError, match="after the game ended"):
        O.legal_move_masks(game + [R.label_to_square("A1")])


def test_passes_are_automatic(sample_games):
    # Find a pass in the sample and check that the same player moves twice in a row.
    for game in sample_games:
        board = O.OthelloBoard()
        for square in game[game >= 0]:
            mover = board.player
            board.play(int(square))
            if board.player == mover and not board.game_over:
                assert board.n_passes >= 1
                assert board.legal_moves(-mover) == []  # the opponent really had no move
                return
    pytest.fail("no pass found in the sample")


# --- OthelloBoard, generator and vectorised replay agree with the reference engine ------------------


def test_generator_agrees_with_rules(sample_games):
    batch = O.batch_board_states(sample_games)  # vectorised bitboard replay of all games at once
    n_pass = 0
    for g, game in enumerate(sample_games):
        board = O.OthelloBoard()
        legal = board.legal_moves()
        for t in range(int((game >= 0).sum())):
            mover = board.player
            assert game[t] in legal  # every generated move is legal for the rules class
            assert legal == R.legal_moves(board.board, mover)
            assert board.flips(int(game[t])) == R.flips(board.board, int(game[t]), mover)
            flipped = board.play(int(game[t]))
            legal = board.legal_moves()
            assert batch.players[g, t] == mover
            assert np.flatnonzero(batch.flipped[g, t]).tolist() == flipped
            np.testing.assert_array_equal(batch.boards[g, t], board.board)
            assert np.flatnonzero(batch.legal[g, t]).tolist() == legal
            assert batch.next_players[g, t] == (0 if board.game_over else board.player)
            n_pass += board.player == mover and not board.game_over
        assert board.game_over  # the generator stops exactly when nobody can move
    assert n_pass > 0
    # the reference engine's replay gives the same thing as the vectorised one
    for g in range(0, len(sample_games), 10):
        slow = R.board_states(sample_games[g])
        for field in ("moves", "boards", "players", "next_players", "legal", "flipped"):
            np.testing.assert_array_equal(getattr(slow, field), getattr(batch, field)[g], err_msg=field)


def test_generator_shapes_determinism_and_uniformity():
    games = O.generate_games(300, seed=7)
    assert games.shape == (300, 60) and games.dtype == np.int8
    assert (games >= 0).all()  # full_length=True: no padding
    assert not np.isin(games, O.CENTRE_SQUARES).any()
    assert all(len(set(g.tolist())) == 60 for g in games)  # each square played once
    np.testing.assert_array_equal(games, O.generate_games(300, seed=7))
    np.testing.assert_array_equal(games[:100], O.generate_games(100, seed=7))  # prefix property
    assert not np.array_equal(games, O.generate_games(300, seed=8))
    O.legal_move_masks(games)  # replays and checks every move, raises if one is illegal

    # Uniform random play: the 4 opening moves are about equally frequent.
    first = O.generate_games(8000, seed=11, full_length=False)[:, 0]
    counts = np.array([(first == s).sum() for s in (19, 26, 37, 44)])
    assert counts.sum() == 8000 and (np.abs(counts / 8000 - 0.25) < 0.03).all()

    some = O.generate_games(5000, seed=2, full_length=False)
    lengths = R.game_lengths(some)
    assert lengths.min() < 60 and lengths.max() == 60
    assert all((g[n:] == O.PAD_SQUARE).all() for g, n in zip(some, lengths, strict=True))


def test_tokens_input():
    games = O.generate_games(20, seed=4)
    tokens = O.to_token(games)
    np.testing.assert_array_equal(
        O.batch_board_states(tokens, kind="tokens").boards, O.batch_board_states(games).boards
    )
    from_tokens = O.batch_board_states(tokens[0], kind="tokens")
    np.testing.assert_array_equal(from_tokens.legal, O.batch_board_states(games[0]).legal)
    # tokens passed by mistake as squares are caught
    with pytest.raises(ValueError):
        O.legal_move_masks(tokens)
    with pytest.raises(ValueError):
        O.batch_board_states(games[0], kind="token")


# --- relative "mine / theirs" encoding ----------------------------------------------------------------


def test_relative_encoding_hand_checked():
    states = O.batch_board_states(squares(["D3", "C3"]))
    rel = states.relative()
    assert rel.shape == (2, 64) and rel.dtype == np.int64
    # After D3 (black): white to move, so white discs are "mine" (1) and black ones "theirs" (2).
    expected = np.zeros(64, dtype=np.int64)
    expected[36] = 1  # E5 white
    expected[[26, 27, 28, 35]] = 2  # D3, D4, D5, E4 black
    np.testing.assert_array_equal(rel[0], expected)
    # After C3 (white): black to move; black has D3, D5, E4; white has C3, D4, E5.
    expected = np.zeros(64, dtype=np.int64)
    expected[[26, 28, 35]] = 1
    expected[[18, 27, 36]] = 2
    np.testing.assert_array_equal(rel[1], expected)
    # the same with the batch function, from tokens, as a torch tensor
    batch = O.relative_board_states(O.to_token(squares(["D3", "C3"]))[None], kind="tokens", as_tensor=True)
    assert tuple(batch.shape) == (1, 2, 64) and str(batch.dtype) == "torch.int64"
    np.testing.assert_array_equal(batch[0].numpy(), rel)


def test_relative_encoding_with_pass_and_end(sample_games):
    states = O.batch_board_states(sample_games)
    rel = states.relative()
    flat_boards = states.boards.reshape(*states.boards.shape[:2], 64)
    passes = np.argwhere(R.passes(states))
    g, t = passes[0]
    mover = states.players[g, t]  # the opponent passed: the mover moves again, its discs are "mine"
    np.testing.assert_array_equal(rel[g, t] == 1, flat_boards[g, t] == mover)
    # game over: relative to the opponent of the last mover; padding: -1
    lengths = R.game_lengths(sample_games)
    g = int(np.flatnonzero(lengths < 60)[0])
    n = lengths[g]
    last_mover = states.players[g, n - 1]
    np.testing.assert_array_equal(rel[g, n - 1] == 2, flat_boards[g, n - 1] == last_mover)
    assert (rel[g, n:] == -1).all()


# --- legal move masks ---------------------------------------------------------------------------------


def test_legal_move_masks_agree_with_rules(sample_games):
    masks = O.legal_move_masks(sample_games)
    assert masks.shape == (len(sample_games), 60, 61) and masks.dtype == bool
    assert not masks[..., 0].any()  # token 0 is never a legal move
    for game, mask in zip(sample_games[:60], masks[:60], strict=True):
        reference = R.board_states(game)
        for t, square in enumerate(game.tolist()):
            if square < 0:
                assert not mask[t].any()  # padding
                continue
            expected = sorted(O.to_token(s) for s in np.flatnonzero(reference.legal[t]))
            assert np.flatnonzero(mask[t]).tolist() == expected
    # single game and token input give the same masks
    np.testing.assert_array_equal(O.legal_move_masks(sample_games[0]), masks[0])
    np.testing.assert_array_equal(O.legal_move_masks(O.to_token(sample_games), kind="tokens"), masks)


def test_top1_legal_rate():
    games = O.generate_games(30, seed=5)
    masks = O.legal_move_masks(games)[:, : O.N_CTX]
    assert O.top1_legal_rate(masks.astype(float), masks) == 1.0
    illegal_logits = np.where(masks, -1.0, 1.0)  # the argmax is always an illegal token
    assert O.top1_legal_rate(illegal_logits, masks) == 0.0
    import torch

    half = masks.astype(np.float32)
    half[::2] = -half[::2]  # even games predict an illegal token
    assert O.top1_legal_rate(torch.from_numpy(half), masks) == pytest.approx(0.5)


# --- plots --------------------------------------------------------------------------------------------


def test_plotly_not_imported_at_module_import():
    code = "import sys, helpers.othello; assert 'plotly' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plot_board():
    import plotly.graph_objects as go

    board = O.OthelloBoard()
    fig = othello_plots.plot_board(board, title="start", legal_moves="auto", highlight=26)
    assert isinstance(fig, go.Figure)
    by_name = {trace.name: trace for trace in fig.data if trace.name}
    assert sorted(zip(by_name["black"].y, by_name["black"].x, strict=True)) == [(3, 4), (4, 3)]
    assert sorted(zip(by_name["white"].y, by_name["white"].x, strict=True)) == [(3, 3), (4, 4)]
    assert len(by_name["legal"].x) == 4 and (by_name["highlight"].x, by_name["highlight"].y) == ((2,), (3,))
    assert list(fig.layout.yaxis.ticktext) == list("ABCDEFGH")
    assert list(fig.layout.xaxis.ticktext) == [str(i) for i in range(1, 9)]
    assert fig.layout.title.text == "start"
    # a raw [64] array works too, and a bool mask for legal moves
    legal = np.zeros(64, dtype=bool)
    legal[board.legal_moves()] = True
    fig = othello_plots.plot_board(board.board.ravel(), legal_moves=legal)
    assert len([t for t in fig.data if t.name == "legal"][0].x) == 4


def test_plot_board_values_and_game():
    import plotly.graph_objects as go

    logits = np.linspace(-3, 2, 61)
    fig = othello_plots.plot_board_values(logits, title="logits", board=O.OthelloBoard(), highlight=19)
    assert isinstance(fig, go.Figure)
    heat = fig.data[0]
    z = np.array(heat.z, dtype=float)
    assert z.shape == (8, 8) and np.isnan(z.flat[[27, 28, 35, 36]]).all()
    assert z.flat[0] == pytest.approx(logits[1]) and z.flat[63] == pytest.approx(logits[60])
    assert heat.zmid == 0 and heat.zmin == -heat.zmax
    assert heat.colorscale[0][1] != heat.colorscale[-1][1]  # a diverging scale (RdBu)
    positive = othello_plots.plot_board_values(np.arange(64).reshape(8, 8))
    assert positive.data[0].zmid is None

    game = O.generate_games(1, seed=0)[0]
    fig = othello_plots.plot_game(game, n_moves=10)
    assert "After 10 moves" in fig.layout.title.text
    black = sum(len(t.x) for t in fig.data if t.name == "black")
    white = sum(len(t.x) for t in fig.data if t.name == "white")
    assert black + white == 14  # 4 starting discs + 10 moves


def test_flip_cases_change_the_legal_moves_by_one_opponent_disc():
    games = O.generate_games(40, seed=3)
    states = O.relative_board_states(games)
    cases = O.flip_cases(games, states, first_game=20, n_cases=30, seed=1)
    before = O.legal_move_masks(games)[cases.game.numpy(), cases.pos.numpy()]  # the bitboard engine: [30 61]
    assert (cases.game >= 20).all() and ((cases.pos >= 10) & (cases.pos < 50)).all()
    assert (states[cases.game.numpy(), cases.pos.numpy(), cases.square.numpy()] == 2).all()  # an opponent disc
    assert (cases.gained | cases.lost).any(-1).all()  # every flip changes the legal moves
    assert not (cases.gained & before).any() and not (cases.lost & ~before).any()
    np.testing.assert_array_equal(cases.legal, (before | cases.gained) & ~cases.lost)
    for i in range(30):  # the reference engine on the edited board
        g, t, square = int(cases.game[i]), int(cases.pos[i]), int(cases.square[i])
        position = R.board_states(games[g])
        mover = int(position.next_players[t])
        edited = position.boards[t].reshape(64).copy()
        edited[square] = mover
        assert np.flatnonzero(cases.legal[i]).tolist() == [O.to_token(s) for s in R.legal_moves(edited, mover)]
    again = O.flip_cases(games, states, first_game=20, n_cases=30, seed=1)
    assert (again.square == cases.square).all()  # deterministic under its seed
