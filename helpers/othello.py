"""Othello rules, board states and fast random-game generation for Othello-GPT.

This module is shared by the training of our small Othello-GPT and by the course notebook; the
board plots are in helpers.othello_plots. The rules are written once, on bitboards (one uint64 a colour,
bit ``s`` for square ``s``), vectorised over any number of positions: :class:`OthelloBoard` plays one game
move by move with them, :func:`generate_games` and :func:`batch_board_states` thousands at once.
It follows the conventions of the original Othello-GPT work (Li et al. 2023) and of Neel Nanda's
follow-up with TransformerLens.

Squares
    The board is 8x8. Squares are numbered 0..63 row-major: ``square = 8 * row + col``.
    Rows are labelled A..H (top to bottom) and columns 1..8 (left to right), so ``"D3"`` is
    row D (index 3), column 3 (index 2), i.e. square ``3 * 8 + 2 = 26``. (Official Othello notation
    is the transpose: column letter then row number. Official "f5" is our "E6".)

Colours
    ``BLACK = 1``, ``WHITE = -1``, ``EMPTY = 0``. Boards are ``np.int8`` arrays of shape ``[8, 8]``.
    Black moves first. Starting position: D4 (27) and E5 (36) are white, D5 (28) and E4 (35) are
    black, exactly as in Li et al.'s code. Black's 4 opening moves are then C4, D3, E6 and F5
    (squares 19, 26, 37, 44).

Passes
    A player with no legal move passes: the other player moves again. Passes are *not* written
    in move sequences; every entry of a game is a disc placed on the board. The game ends when
    neither player can move (at the latest after 60 moves, when the board is full).

Tokens (the model's vocabulary)
    ``d_vocab = 61``. Token 0 is unused (pass / padding); tokens 1..60 are the 60 playable squares
    (every square except the centre squares 27, 28, 35, 36) in increasing square order. Use
    :func:`to_token` and :func:`to_square` (they work on ints and on arrays). A game has at most 60
    moves and the model reads the first ``N_CTX = 59`` of them: at position ``t`` it has seen moves
    ``0..t`` and predicts move ``t + 1``.

Games and padding
    A *game* is a sequence of moves, given either as squares (0..63) or as tokens (1..60). Every
    function that reads games takes ``kind="squares"`` (default) or ``kind="tokens"``. Games that
    end before 60 moves are padded with ``PAD_SQUARE = -1`` (squares) or ``PAD_TOKEN = 0`` (tokens).
    :func:`generate_games` returns only full 60-move games by default (see its docstring).

"Mine / theirs" encoding (for linear probes)
    :func:`relative_board` encodes a board relative to the player **to move next**:
    ``0`` empty, ``1`` mine (a disc of the player about to move), ``2`` theirs (a disc of the player
    who just moved, in the usual case without a pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------------
# Constants and square / token conversions
# ---------------------------------------------------------------------------------------------------

BOARD_SIZE = 8
N_SQUARES = 64
EMPTY, BLACK, WHITE = 0, 1, -1
COLOUR_NAMES = {BLACK: "black", WHITE: "white", EMPTY: "empty"}

ROW_LABELS = "ABCDEFGH"
COL_LABELS = "12345678"

CENTRE_SQUARES = (27, 28, 35, 36)
#: The 60 playable squares, in increasing order. ``PLAYABLE_SQUARES[token - 1]`` is a token's square.
PLAYABLE_SQUARES = np.array([s for s in range(N_SQUARES) if s not in CENTRE_SQUARES], dtype=np.int64)

D_VOCAB = 61
N_CTX = 59
MAX_MOVES = 60
PAD_SQUARE = -1
PAD_TOKEN = 0

#: ``SQUARE_TO_TOKEN[square]`` (the "stoi" map). Centre squares map to -1 (they have no token).
SQUARE_TO_TOKEN = np.full(N_SQUARES, -1, dtype=np.int64)
SQUARE_TO_TOKEN[PLAYABLE_SQUARES] = np.arange(1, MAX_MOVES + 1)
#: ``TOKEN_TO_SQUARE[token]`` (the "itos" map). Token 0 (pass / pad) maps to ``PAD_SQUARE``.
TOKEN_TO_SQUARE = np.concatenate([[PAD_SQUARE], PLAYABLE_SQUARES]).astype(np.int64)

def to_token(square):
    """Square(s) 0..63 -> token(s) 1..60. ``PAD_SQUARE`` (-1) maps to ``PAD_TOKEN`` (0).

    Works on an ``int`` (returns an ``int``) or on any array-like (returns an ``np.int64`` array of
    the same shape). Raises ``ValueError`` for a centre square or a value outside -1..63.
    """
    arr = np.asarray(square)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"squares must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < PAD_SQUARE or arr.max() >= N_SQUARES):
        raise ValueError(f"squares must be in -1..63 (-1 = padding), got values in {arr.min()}..{arr.max()}")
    tokens = np.where(arr == PAD_SQUARE, PAD_TOKEN, SQUARE_TO_TOKEN[np.clip(arr, 0, None)])
    if (tokens < 0).any():
        bad = sorted({int(s) for s in arr[tokens < 0].ravel()})
        raise ValueError(f"centre squares {bad} are never playable and have no token")
    return int(tokens) if tokens.ndim == 0 else tokens


def to_square(token):
    """Token(s) 1..60 -> square(s) 0..63. ``PAD_TOKEN`` (0) maps to ``PAD_SQUARE`` (-1).

    Works on an ``int`` (returns an ``int``) or on any array-like / CPU tensor (returns an ``np.int64``
    array of the same shape). Raises ``ValueError`` for a value outside 0..60.
    """
    arr = np.asarray(token)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"tokens must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= D_VOCAB):
        raise ValueError(f"tokens must be in 0..60 (0 = pass/pad), got values in {arr.min()}..{arr.max()}")
    squares = TOKEN_TO_SQUARE[arr]
    return int(squares) if squares.ndim == 0 else squares


def square_label(square: int) -> str:
    """Square index -> label, e.g. ``square_label(26) == "D3"`` (row D, column 3)."""
    square = int(square)
    if not 0 <= square < N_SQUARES:
        raise ValueError(f"a square is in 0..63, got {square}")
    return ROW_LABELS[square // 8] + COL_LABELS[square % 8]


def token_label(token: int) -> str:
    """Token -> square label, e.g. ``token_label(1) == "A1"``; token 0 gives ``"pass"``."""
    return "pass" if int(token) == PAD_TOKEN else square_label(to_square(int(token)))


def as_squares(games, kind: str) -> np.ndarray:
    """Convert games given as squares or tokens to an ``np.int64`` array of squares (pad -1)."""
    if hasattr(games, "detach"):  # a torch tensor
        games = games.detach().cpu().numpy()
    arr = np.asarray(games)
    if kind == "tokens":
        return to_square(arr).astype(np.int64)
    if kind != "squares":
        raise ValueError(f"kind must be 'squares' or 'tokens', got {kind!r}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < PAD_SQUARE or arr.max() >= N_SQUARES):
        raise ValueError(
            f"squares must be in -1..63, got values in {arr.min()}..{arr.max()} "
            "(if these are tokens, pass kind='tokens')"
        )
    centre = np.isin(arr, CENTRE_SQUARES)
    if centre.any():
        bad = sorted({int(s) for s in arr[centre]})
        raise ValueError(
            f"centre squares {bad} are never playable: these look like tokens, pass kind='tokens'"
        )
    return arr


# ---------------------------------------------------------------------------------------------------
# The rules, on bitboards: any number of positions at once
# ---------------------------------------------------------------------------------------------------
# A bitboard is a uint64 whose bit ``s`` is set when square ``s`` holds a disc. Moving every disc one
# step in a direction is a bit shift (east = +1 = "<< 1", south = +8 = "<< 8", ...), masking out the
# discs that would wrap around from one side of the board to the other. A move is legal when, in some
# direction, it is followed by a run of opponent discs closed by one of the mover's; those runs flip.

_U = np.uint64
_ONE = _U(1)
_COL_0 = _U(sum(1 << (8 * r) for r in range(8)))  # column 1 (index 0)
_COL_7 = _U(sum(1 << (8 * r + 7) for r in range(8)))  # column 8 (index 7)
_NOT_COL_0 = ~_COL_0
_NOT_COL_7 = ~_COL_7
_BLACK_START = _U((1 << 28) | (1 << 35))
_WHITE_START = _U((1 << 27) | (1 << 36))


def _shift(b: np.ndarray, direction: int) -> np.ndarray:
    """Move every disc of bitboard(s) ``b`` one step in ``direction`` (a square-index delta)."""
    if direction == 1:  # east
        return (b << _U(1)) & _NOT_COL_0
    if direction == -1:  # west
        return (b >> _U(1)) & _NOT_COL_7
    if direction == 8:  # south
        return b << _U(8)
    if direction == -8:  # north
        return b >> _U(8)
    if direction == 9:  # south-east
        return (b << _U(9)) & _NOT_COL_0
    if direction == 7:  # south-west
        return (b << _U(7)) & _NOT_COL_7
    if direction == -7:  # north-east
        return (b >> _U(7)) & _NOT_COL_0
    if direction == -9:  # north-west
        return (b >> _U(9)) & _NOT_COL_7
    raise ValueError(direction)


_SHIFTS = (1, -1, 8, -8, 9, 7, -7, -9)


def _legal_bb(me: np.ndarray, opp: np.ndarray) -> np.ndarray:
    """Bitboard(s) of the legal moves of ``me`` against ``opp`` (uint64 arrays of any shape)."""
    empty = ~(me | opp)
    legal = np.zeros_like(me)
    for d in _SHIFTS:
        run = _shift(me, d) & opp  # opponent discs adjacent to one of mine
        for _ in range(5):  # extend the runs (at most 6 opponent discs in a line)
            run |= _shift(run, d) & opp
        legal |= _shift(run, d) & empty  # an empty square right after a run closes it
    return legal


def _flips_bb(me: np.ndarray, opp: np.ndarray, move: np.ndarray) -> np.ndarray:
    """Bitboard(s) of the discs flipped when ``me`` plays the single-bit bitboard(s) ``move``."""
    flips = np.zeros_like(me)
    for d in _SHIFTS:
        run = _shift(move, d) & opp  # opponent discs in a line starting next to the move
        for _ in range(5):
            run |= _shift(run, d) & opp
        closed = (_shift(run, d) & me) != 0  # the line ends on one of my discs
        flips |= np.where(closed, run, _U(0))
    return flips


def _bb_to_mask(bb: np.ndarray) -> np.ndarray:
    """uint64 ``[...]`` -> bool ``[..., 64]`` (bit ``s`` -> entry ``s``)."""
    arr = np.asarray(bb, dtype="<u8")
    bits = np.unpackbits(arr.reshape(-1).view(np.uint8), bitorder="little")  # reshape: a copy if not contiguous
    return bits.reshape(*arr.shape, N_SQUARES).astype(bool)


def _square_bb(squares: np.ndarray) -> np.ndarray:
    """int squares ``[...]`` -> single-bit bitboards (0 where ``square < 0``)."""
    squares = np.asarray(squares)
    bb = _ONE << np.clip(squares, 0, 63).astype(np.uint64)
    return np.where(squares >= 0, bb, _U(0))


def _mask_to_bb(mask: np.ndarray) -> np.ndarray:
    """bool ``[..., 64]`` -> uint64 ``[...]`` (entry ``s`` -> bit ``s``), the inverse of :func:`_bb_to_mask`."""
    return np.packbits(mask, axis=-1, bitorder="little").view("<u8")[..., 0]


# ---------------------------------------------------------------------------------------------------
# One game, move by move: the OthelloBoard class
# ---------------------------------------------------------------------------------------------------


class IllegalMoveError(ValueError):
    """Raised when a move is not legal in the current position."""


def initial_board() -> np.ndarray:
    """The starting position, ``np.int8 [8, 8]``: D4, E5 white (-1); D5, E4 black (+1)."""
    board = np.zeros((BOARD_SIZE, BOARD_SIZE), dtype=np.int8)
    board[3, 3] = board[4, 4] = WHITE  # D4 = 27, E5 = 36
    board[3, 4] = board[4, 3] = BLACK  # D5 = 28, E4 = 35
    return board


class OthelloBoard:
    """An Othello position that plays one move at a time, with the rules above (for bulk work on many
    games, use :func:`generate_games` / :func:`batch_board_states`).

    Attributes:
        board: ``np.int8 [8, 8]``, 0 empty, 1 black, -1 white. It may be edited in place (a disc put
            or removed): the legal moves are always read from it.
        player: colour to move (1 black, -1 white). Passes are handled automatically: after
            :meth:`play`, ``player`` is always someone who has a legal move, unless the game is over.
        game_over: True when neither player can move.
        history: squares played so far.
        n_passes: number of passes so far.

    Example::

        b = OthelloBoard()
        b.legal_moves()  # [19, 26, 37, 44]
        b.play(26)       # D3; returns the flipped squares: [27]
        print(b)
    """

    def __init__(self):
        self.board = initial_board()
        self.player = BLACK
        self.game_over = False
        self.history: list[int] = []
        self.n_passes = 0

    @classmethod
    def from_moves(cls, moves, kind: str = "squares") -> OthelloBoard:
        """Play a sequence of moves (squares or tokens, padding ignored) from the start."""
        board = cls()
        for square in as_squares(moves, kind).ravel():
            if square == PAD_SQUARE:
                break
            board.play(int(square))
        return board

    def copy(self) -> OthelloBoard:
        new = OthelloBoard.__new__(OthelloBoard)
        new.board = self.board.copy()
        new.player = self.player
        new.game_over = self.game_over
        new.history = list(self.history)
        new.n_passes = self.n_passes
        return new

    def _bitboards(self, player: int) -> tuple[np.uint64, np.uint64]:
        """The discs of ``player`` and of the opponent, as bitboards."""
        flat = self.board.reshape(N_SQUARES)
        return _mask_to_bb(flat == player), _mask_to_bb(flat == -player)

    def flips(self, square: int, player: int | None = None) -> list[int]:
        """Squares that ``player`` (default: the player to move) would flip by playing ``square``.

        An empty list means the move is illegal (occupied square or nothing to flip).
        """
        player = self.player if player is None else player
        if self.board.flat[int(square)] != EMPTY:
            return []
        flipped = _flips_bb(*self._bitboards(player), _square_bb(int(square)))
        return np.flatnonzero(_bb_to_mask(flipped)).tolist()

    def legal_moves(self, player: int | None = None) -> list[int]:
        """Sorted list of the squares where ``player`` (default: the player to move) can play."""
        player = self.player if player is None else player
        if self.game_over and player == self.player:
            return []
        return np.flatnonzero(_bb_to_mask(_legal_bb(*self._bitboards(player)))).tolist()

    def play(self, square: int) -> list[int]:
        """Play ``square`` for the player to move; return the sorted list of flipped squares.

        Then gives the move to the opponent, or back to the same player if the opponent must pass,
        or sets ``game_over`` if nobody can move. Raises :class:`IllegalMoveError` on an illegal move.
        """
        square = int(square)
        if not 0 <= square < N_SQUARES:
            raise IllegalMoveError(f"a square is in 0..63, got {square}")
        if self.game_over:
            raise IllegalMoveError(f"the game is over after {len(self.history)} moves, cannot play {square}")
        flipped = self.flips(square)
        if not flipped:
            legal = ", ".join(f"{s} ({square_label(s)})" for s in self.legal_moves())
            reason = "occupied" if self.board.flat[square] != EMPTY else "it flips nothing"
            raise IllegalMoveError(
                f"{COLOUR_NAMES[self.player]} cannot play {square} ({square_label(square)}): {reason}. "
                f"Legal moves: {legal}"
            )
        self.board.flat[square] = self.player
        self.board.flat[flipped] = self.player
        self.history.append(square)
        # Next player, with automatic pass.
        if self.legal_moves(-self.player):
            self.player = -self.player
        elif self.legal_moves(self.player):
            self.n_passes += 1  # the opponent passes, the same player moves again
        else:
            self.game_over = True
            self.player = -self.player  # nominal player to move (nobody can)
        return flipped

    def __str__(self) -> str:
        symbols = {EMPTY: ".", BLACK: "X", WHITE: "O"}
        lines = ["  " + " ".join(COL_LABELS)]
        for r in range(8):
            lines.append(ROW_LABELS[r] + " " + " ".join(symbols[int(v)] for v in self.board[r]))
        who = COLOUR_NAMES[self.player]
        state = "game over" if self.game_over else f"{who} to move (X = black, O = white)"
        return "\n".join(lines + [state])

    def __repr__(self) -> str:
        return f"OthelloBoard(moves={len(self.history)}, player={self.player}, game_over={self.game_over})"


# ---------------------------------------------------------------------------------------------------
# Fast random-game generation
# ---------------------------------------------------------------------------------------------------

_GEN_CHUNK = 4096  # games simulated in parallel; fixed so that results only depend on the seed


def _random_games_chunk(rng: np.random.Generator, n: int) -> np.ndarray:
    """Play ``n`` games of uniformly random legal moves in parallel.

    Returns ``int8 [n, 60]`` squares, padded with -1 after the end of games shorter than 60 moves.
    """
    me = np.full(n, _BLACK_START)  # discs of the player to move
    opp = np.full(n, _WHITE_START)
    moves = np.full((n, MAX_MOVES), PAD_SQUARE, dtype=np.int8)
    alive = np.ones(n, dtype=bool)
    for t in range(MAX_MOVES):
        legal = _legal_bb(me, opp)
        stuck = legal == 0
        if stuck.any():  # pass: the other player moves again, if they can
            me, opp = np.where(stuck, opp, me), np.where(stuck, me, opp)
            legal = np.where(stuck, _legal_bb(me, opp), legal)
            alive &= legal != 0
        # Pick the r-th legal move, r uniform in 0 .. n_legal - 1.
        n_legal = np.bitwise_count(legal).astype(np.int64)
        r = np.minimum((rng.random(n) * n_legal).astype(np.int64), np.maximum(n_legal - 1, 0))
        counts = np.cumsum(_bb_to_mask(legal), axis=1, dtype=np.int16)
        square = (counts <= r[:, None]).sum(axis=1)  # index of the (r+1)-th set bit
        move = _ONE << square.astype(np.uint64)
        flips = _flips_bb(me, opp, move)
        me, opp = opp & ~flips, me | move | flips  # play, then hand over to the opponent
        moves[alive, t] = square[alive]
        if not alive.any():
            break
    return moves


def generate_games(n_games: int, seed: int = 0, full_length: bool = True) -> np.ndarray:
    """Synthetic games where every move is chosen uniformly at random among the legal moves.

    Games are simulated in parallel with numpy bitboards (tens of thousands of games per second on
    one core). Deterministic for a given ``seed``; ``generate_games(n, seed)`` is a prefix of
    ``generate_games(m, seed)`` for ``n <= m``.

    Args:
        n_games: number of games.
        seed: seed of the ``np.random.default_rng`` used for the moves.
        full_length: if True (default), keep only games that last the full 60 moves (games that end
            early are discarded and replaced by new ones), so that every row is a 60-move game
            without padding. That drops the few percent of random games that end early, a slight change
            of distribution compared to Li et al.'s synthetic generator, which kept them (as
            variable-length sequences). If False, keep every game; the ones shorter than 60 moves are
            padded with ``PAD_SQUARE = -1``.

    Returns:
        ``np.int8 [n_games, 60]`` squares (0..63, pad -1). ``to_token(games)`` gives the tokens
        (``int64``, pad 0). Passes are not in the sequences (see the module docstring).
    """
    rng = np.random.default_rng(seed)
    kept, n_kept = [], 0
    while n_kept < n_games:
        chunk = _random_games_chunk(rng, _GEN_CHUNK)
        if full_length:
            chunk = chunk[chunk[:, -1] != PAD_SQUARE]
        kept.append(chunk)
        n_kept += len(chunk)
    if not kept:
        return np.zeros((0, MAX_MOVES), dtype=np.int8)
    return np.concatenate(kept)[:n_games]


# ---------------------------------------------------------------------------------------------------
# Vectorised replay of many games: board states and legal-move masks
# ---------------------------------------------------------------------------------------------------


@dataclass
class GameStates:
    """Everything about the positions of one game (shapes ``[n_moves, ...]``) or of a batch of games
    (shapes ``[n_games, n_moves, ...]``), as :func:`batch_board_states` returns them. Index ``t`` describes the
    position right after move ``t``.

    Attributes:
        moves: ``int64 [..., n_moves]`` the squares played (``PAD_SQUARE`` = -1 after the end).
        boards: ``int8 [..., n_moves, 8, 8]`` board after each move (1 black, -1 white, 0 empty).
        players: ``int8 [..., n_moves]`` colour who played move ``t`` (0 on padding).
        next_players: ``int8 [..., n_moves]`` colour to move after move ``t``, passes included
            (0 if the game is over or on padding).
        legal: ``bool [..., n_moves, 64]`` legal squares for ``next_players`` after move ``t``
            (all False when the game is over or on padding).
        flipped: ``bool [..., n_moves, 64]`` squares flipped by move ``t``.
    """

    moves: np.ndarray
    boards: np.ndarray
    players: np.ndarray
    next_players: np.ndarray
    legal: np.ndarray
    flipped: np.ndarray

    def relative(self) -> np.ndarray:
        """``int64 [..., n_moves, 64]`` "mine/theirs" encoding, see :func:`relative_board`."""
        return relative_board(self.boards, self.next_players, self.players)


def relative_board(boards, players, last_players=None) -> np.ndarray:
    """Mine/theirs encoding of boards, relative to the player to move next.

    Args:
        boards: ``[..., 8, 8]`` or ``[..., 64]`` absolute boards (1 black, -1 white, 0 empty).
        players: ``[...]`` (or a scalar) colour to move next, the reference ("mine") player.
            Where it is 0 (game over), ``-last_players`` is used instead if given, i.e. the opponent
            of the player who just moved, as if there were no pass.
        last_players: optional ``[...]`` colour who just moved (``GameStates.players``).

    Returns:
        ``np.int64 [..., 64]``: 0 empty, 1 mine (disc of the player to move), 2 theirs.
        Positions with no reference player at all (padding) are filled with -1.
        To encode relative to the player who *just moved* instead, swap 1 and 2.
    """
    if hasattr(boards, "detach"):
        boards = boards.detach().cpu().numpy()
    boards = np.asarray(boards)
    boards = boards.reshape(*boards.shape[:-2], N_SQUARES) if boards.shape[-2:] == (8, 8) else boards
    ref = np.broadcast_to(np.asarray(players), boards.shape[:-1]).astype(np.int64)
    if last_players is not None:
        ref = np.where(ref == 0, -np.asarray(last_players, dtype=np.int64), ref)
    ref = ref[..., None]
    rel = np.where(boards == EMPTY, 0, np.where(boards == ref, 1, 2)).astype(np.int64)
    return np.where(ref == 0, -1, rel)


def _replay(squares: np.ndarray, boards: bool = True, flips: bool = True) -> dict:
    """Replay ``squares [n_games, n_moves]`` (pad -1) with bitboards, checking every move.

    Returns a dict of uint64 / int8 arrays ``[n_games, n_moves]``: ``black``, ``white`` (bitboards
    after each move), ``legal`` (for the next player), ``flips``, ``players``, ``next_players``.
    """
    n, n_moves = squares.shape
    me = np.full(n, _BLACK_START)
    opp = np.full(n, _WHITE_START)
    colour = np.full(n, BLACK, dtype=np.int8)  # colour of ``me``, the player to move
    legal = _legal_bb(me, opp)
    playing = np.ones(n, dtype=bool)  # not yet padding
    out = {
        "legal": np.zeros((n, n_moves), dtype=np.uint64),
        "players": np.zeros((n, n_moves), dtype=np.int8),
        "next_players": np.zeros((n, n_moves), dtype=np.int8),
    }
    if boards:
        out["black"] = np.zeros((n, n_moves), dtype=np.uint64)
        out["white"] = np.zeros((n, n_moves), dtype=np.uint64)
    if flips:
        out["flips"] = np.zeros((n, n_moves), dtype=np.uint64)
    for t in range(n_moves):
        square = squares[:, t]
        is_pad = square == PAD_SQUARE
        late = np.flatnonzero(~is_pad & ~playing)
        if len(late):
            raise ValueError(f"game {late[0]}: move {t} ({square[late[0]]}) comes after padding")
        playing &= ~is_pad
        move = _square_bb(np.where(playing, square, PAD_SQUARE))
        illegal = playing & ((legal & move) == 0)
        if illegal.any():
            g = int(np.flatnonzero(illegal)[0])
            _raise_illegal(g, t, int(square[g]), int(colour[g]), int(legal[g]))
        flipped = _flips_bb(me, opp, move)
        me = me | move | flipped
        opp = opp & ~flipped
        out["players"][:, t] = np.where(playing, colour, 0)
        if boards:
            out["black"][:, t] = np.where(colour == BLACK, me, opp)
            out["white"][:, t] = np.where(colour == BLACK, opp, me)
        if flips:
            out["flips"][:, t] = flipped
        # Hand over to the opponent (only in games that actually moved), then resolve passes.
        me, opp = np.where(playing, opp, me), np.where(playing, me, opp)
        colour = np.where(playing, -colour, colour).astype(np.int8)
        legal = _legal_bb(me, opp)
        stuck = playing & (legal == 0)
        if stuck.any():
            me, opp = np.where(stuck, opp, me), np.where(stuck, me, opp)
            colour = np.where(stuck, -colour, colour).astype(np.int8)
            legal = np.where(stuck, _legal_bb(me, opp), legal)
        legal = np.where(playing, legal, _U(0))
        out["legal"][:, t] = legal
        out["next_players"][:, t] = np.where(legal != 0, colour, 0)
    return out


def _raise_illegal(game: int, t: int, square: int, colour: int, legal: int):
    if legal == 0:
        raise IllegalMoveError(f"game {game}: move {t} ({square_label(square)}) comes after the game ended")
    options = ", ".join(f"{s} ({square_label(s)})" for s in range(N_SQUARES) if legal >> s & 1)
    raise IllegalMoveError(
        f"game {game}, move {t}: {COLOUR_NAMES[colour]} cannot play {square} ({square_label(square)}). "
        f"Legal moves: {options}. (If the games are tokens, pass kind='tokens'.)"
    )


def _as_batch(games, kind: str) -> tuple[np.ndarray, bool]:
    squares = as_squares(games, kind)
    if squares.ndim == 1:
        return squares[None, :], True
    if squares.ndim != 2:
        raise ValueError(f"games must be [n_games, n_moves] or [n_moves], got shape {squares.shape}")
    return squares, False


def batch_board_states(games, kind: str = "squares") -> GameStates:
    """The positions along many games at once (bitboards, no Python loop over games), every move checked.

    Args:
        games: ``[n_games, n_moves]`` (or one game ``[n_moves]``) squares or tokens (``kind``), padding allowed
            at the end; padded positions repeat the final board with ``players == 0``.

    Returns:
        :class:`GameStates` with ``boards [n_games, n_moves, 8, 8]``, ``players`` and
        ``next_players [n_games, n_moves]``, ``legal`` and ``flipped [n_games, n_moves, 64]`` (without the
        ``n_games`` dimension for one game).
    """
    squares, single = _as_batch(games, kind)
    res = _replay(squares)
    black, white = _bb_to_mask(res["black"]), _bb_to_mask(res["white"])
    # Padded positions keep the final board.
    n_played = (squares != PAD_SQUARE).sum(axis=1)
    last = np.clip(n_played - 1, 0, None)
    pad = np.arange(squares.shape[1])[None, :] >= n_played[:, None]
    rows = np.arange(len(squares))[:, None]
    black = np.where(pad[..., None], black[rows, last[:, None]], black)
    white = np.where(pad[..., None], white[rows, last[:, None]], white)
    board = black.astype(np.int8) - white.astype(np.int8)
    states = GameStates(
        moves=squares,
        boards=board.reshape(*squares.shape, 8, 8),
        players=res["players"],
        next_players=res["next_players"],
        legal=_bb_to_mask(res["legal"]),
        flipped=_bb_to_mask(res["flips"]),
    )
    if single:
        states = GameStates(*(getattr(states, f)[0] for f in states.__dataclass_fields__))
    return states


def relative_board_states(games, kind: str = "squares", as_tensor: bool = False):
    """Mine/theirs board states after every move, for training linear probes.

    Args:
        games: ``[n_games, n_moves]`` (or one game ``[n_moves]``) squares or tokens (``kind``).
        as_tensor: return a ``torch.long`` tensor instead of a numpy array.

    Returns:
        ``int64 [n_games, n_moves, 64]``: 0 empty, 1 mine (player to move next), 2 theirs; -1 on
        padding. Entry ``[g, t]`` is the board after move ``t``, i.e. what the model knows at
        position ``t`` when predicting move ``t + 1``.
    """
    states = batch_board_states(games, kind)
    rel = states.relative()
    if as_tensor:
        return torch.from_numpy(rel)
    return rel


def legal_move_masks(games, kind: str = "squares") -> np.ndarray:
    """Which tokens are legal next moves after each prefix of each game, in token space.

    Args:
        games: ``[n_games, n_moves]`` (or one game ``[n_moves]``) squares or tokens (``kind``).

    Returns:
        ``bool [n_games, n_moves, 61]`` (or ``[n_moves, 61]``): entry ``[g, t, tok]`` is True when
        token ``tok`` is a legal move after moves ``0..t`` of game ``g``. Token 0 is never legal.
        Rows are all False when the game is over or on padding. For a model fed ``tokens[:, :59]``,
        its prediction at position ``t`` should be compared with ``masks[:, t]``, i.e. use
        ``masks[:, :59]`` (see :func:`top1_legal_rate`).
    """
    squares, single = _as_batch(games, kind)
    legal = _bb_to_mask(_replay(squares, boards=False, flips=False)["legal"])
    masks = np.zeros((*squares.shape, D_VOCAB), dtype=bool)
    masks[..., 1:] = legal[..., PLAYABLE_SQUARES]
    return masks[0] if single else masks


def top1_legal_rate(logits, masks) -> float:
    """Fraction of positions where the top-1 prediction is a legal move.

    Args:
        logits: ``[n_games, n_pos, 61]`` model logits (numpy or torch).
        masks: ``bool [n_games, >= n_pos, 61]`` from :func:`legal_move_masks` (truncated to ``n_pos``).
            Positions with no legal move (game over, padding) are ignored.
    """
    if hasattr(logits, "detach"):
        logits = logits.detach().float().cpu().numpy()
    logits = np.asarray(logits)
    masks = np.asarray(masks)[:, : logits.shape[1]]
    top = logits.argmax(axis=-1)
    hit = np.take_along_axis(masks, top[..., None], axis=-1)[..., 0]
    valid = masks.any(axis=-1)
    return float(hit[valid].mean()) if valid.any() else float("nan")


@dataclass
class FlipCases:
    """Positions where one opponent disc becomes the mover's, for intervention experiments (notebook 06).

    ``game``, ``pos``, ``square``: int64 [n] (the flip is at move ``pos`` of game ``game``); ``legal``,
    ``gained``, ``lost``: bool [n, 61] over tokens, the legal moves of the edited board and the moves that
    become legal / illegal."""

    game: torch.Tensor
    pos: torch.Tensor
    square: torch.Tensor
    legal: np.ndarray
    gained: np.ndarray
    lost: np.ndarray


def flip_cases(games, relative_states, first_game: int, n_cases: int = 200, seed: int = 0) -> FlipCases:
    """``n_cases`` (game >= first_game, position 10..49, opponent square) drawn with ``default_rng(seed)``
    among those whose flip to "mine" changes the legal moves. ``games``: squares [n_games, n_moves];
    ``relative_states``: [n_games, >= 50, 64] as :func:`relative_board_states` returns (2 = the opponent's)."""
    states = np.asarray(relative_states.cpu() if hasattr(relative_states, "cpu") else relative_states)
    positions = batch_board_states(games)
    boards = positions.boards.reshape(*positions.boards.shape[:2], N_SQUARES)
    rng = np.random.default_rng(seed)
    cases = []  # (game, position, square, legal squares before, legal squares after the flip)
    while len(cases) < n_cases:
        g, t = int(rng.integers(first_game, len(games))), int(rng.integers(10, 50))
        square = int(rng.choice(np.flatnonzero(states[g, t] == 2)))
        mover = positions.next_players[g, t]
        if mover == 0:  # the game is over: no legal move, before or after
            continue
        edited = boards[g, t].copy()
        edited[square] = mover
        before = positions.legal[g, t]
        after = _bb_to_mask(_legal_bb(_mask_to_bb(edited == mover), _mask_to_bb(edited == -mover)))
        if (before != after).any():
            cases.append((g, t, square, before, after))
    legal, gained, lost = (np.zeros((n_cases, D_VOCAB), dtype=bool) for _ in range(3))
    for i, (_, _, _, before, after) in enumerate(cases):
        for mask, squares in [(legal, after), (gained, after & ~before), (lost, before & ~after)]:
            mask[i, 1:] = squares[PLAYABLE_SQUARES]
    game, pos, square = (torch.tensor([c[i] for c in cases]) for i in range(3))
    return FlipCases(game, pos, square, legal, gained, lost)
