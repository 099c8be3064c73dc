"""A second Othello rules engine, for the tests only: pure Python, written to be read, one square at a time.

helpers.othello writes the rules once, on bitboards; the tests check it against this independent version
(walk each of the 8 directions over the opponent's discs, flip them if the line ends on one of the mover's).
Also the small conveniences only the tests use: labels back to squares, game lengths, masks as lists, and the
replay of one game into helpers.othello.GameStates.
"""

import numpy as np

from helpers import othello as O

#: ``(row, col)`` offsets of the 8 directions.
DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def label_to_square(label: str) -> int:
    """Label -> square index, e.g. ``label_to_square("D3") == 26``. Case-insensitive."""
    text = label.strip().upper()
    if len(text) != 2 or text[0] not in O.ROW_LABELS or text[1] not in O.COL_LABELS:
        raise ValueError(f"a square label is a row A-H followed by a column 1-8 (e.g. 'D3'), got {label!r}")
    return 8 * O.ROW_LABELS.index(text[0]) + O.COL_LABELS.index(text[1])


def squares(labels) -> list[int]:
    return [label_to_square(label) for label in labels]


def flips(board: np.ndarray, square: int, player: int) -> list[int]:
    """Sorted squares flipped if ``player`` plays ``square`` on ``board`` ([8, 8] or [64]); [] if illegal."""
    grid = np.asarray(board).reshape(8, 8).tolist()
    row, col = divmod(square, 8)
    if grid[row][col] != O.EMPTY:
        return []
    flipped = []
    for d_row, d_col in DIRECTIONS:
        # Walk over the opponent's discs; they flip if the line ends on one of the player's discs.
        r, c = row + d_row, col + d_col
        line = []
        while 0 <= r < 8 and 0 <= c < 8 and grid[r][c] == -player:
            line.append(8 * r + c)
            r, c = r + d_row, c + d_col
        if line and 0 <= r < 8 and 0 <= c < 8 and grid[r][c] == player:
            flipped.extend(line)
    return sorted(flipped)


def legal_moves(board: np.ndarray, player: int) -> list[int]:
    return [s for s in range(O.N_SQUARES) if flips(board, s, player)]


def board_states(game, kind: str = "squares") -> O.GameStates:
    """Replay one game with this engine, passes included, into the GameStates batch_board_states gives."""
    moves = O.as_squares(game, kind)
    if moves.ndim != 1:
        raise ValueError(f"board_states takes one game [n_moves], got {moves.shape}")
    n = len(moves)
    out = O.GameStates(moves=moves.copy(), boards=np.zeros((n, 8, 8), dtype=np.int8),
                       players=np.zeros(n, dtype=np.int8), next_players=np.zeros(n, dtype=np.int8),
                       legal=np.zeros((n, O.N_SQUARES), dtype=bool), flipped=np.zeros((n, O.N_SQUARES), dtype=bool))
    board, player, over = O.initial_board().reshape(O.N_SQUARES), O.BLACK, False
    for t, square in enumerate(moves.tolist()):
        if square == O.PAD_SQUARE or over:
            if square != O.PAD_SQUARE:
                raise O.IllegalMoveError(f"move {t} ({square}) comes after the game ended")
            out.boards[t] = board.reshape(8, 8)
            over = True
            continue
        flipped = flips(board, square, player)
        if not flipped:
            raise O.IllegalMoveError(f"move {t}: {square} is not legal")
        board[[square, *flipped]] = player
        out.players[t], out.flipped[t, flipped], out.boards[t] = player, True, board.reshape(8, 8)
        for candidate in (-player, player):  # the opponent, else the same player again (a pass)
            legal = legal_moves(board, candidate)
            if legal:
                player, out.next_players[t], out.legal[t, legal] = candidate, candidate, True
                break
        else:
            over = True
    return out


def passes(states: O.GameStates) -> np.ndarray:
    """bool [..., n_moves]: True where the next move is by the same player (the opponent passed)."""
    return (states.next_players == states.players) & (states.players != 0)


def game_lengths(games) -> np.ndarray:
    """int64 [n_games]: the moves of each game before its padding."""
    return (O.as_squares(games, "squares") != O.PAD_SQUARE).sum(axis=-1)


def mask_to_lists(mask: np.ndarray) -> list:
    """The True entries of a bool [..., 64] mask as (nested) lists of squares."""
    return np.flatnonzero(mask).tolist() if mask.ndim == 1 else [mask_to_lists(m) for m in mask]


def score(board: np.ndarray) -> tuple[int, int]:
    """(black discs, white discs)."""
    return int((board == O.BLACK).sum()), int((board == O.WHITE).sum())
