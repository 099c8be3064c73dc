"""Othello boards drawn with plotly: a position, one value per square (logits, probes), a game so far.

Squares, colours and tokens follow helpers.othello (rows A..H from the top, columns 1..8).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from helpers.othello import (
    BLACK,
    COL_LABELS,
    COLOUR_NAMES,
    D_VOCAB,
    MAX_MOVES,
    N_SQUARES,
    PAD_SQUARE,
    PLAYABLE_SQUARES,
    ROW_LABELS,
    WHITE,
    OthelloBoard,
    as_squares,
    square_label,
)

_GREEN = "#2e7d32"
_GRID = "#123d16"


def _board_array(board_or_state) -> np.ndarray:
    """OthelloBoard / array [8, 8] or [64] / tensor -> int8 [8, 8]."""
    if isinstance(board_or_state, OthelloBoard):
        return board_or_state.board
    if hasattr(board_or_state, "detach"):
        board_or_state = board_or_state.detach().cpu().numpy()
    arr = np.asarray(board_or_state)
    if arr.size != N_SQUARES:
        raise ValueError(f"a board has 64 squares ([8, 8] or [64]), got shape {arr.shape}")
    return arr.reshape(8, 8).astype(np.int8)


def _square_list(squares) -> list[int]:
    """None / int / list of squares / bool mask [64] -> list of squares."""
    if squares is None:
        return []
    if hasattr(squares, "detach"):
        squares = squares.detach().cpu().numpy()
    arr = np.asarray(squares)
    if arr.dtype == bool:
        return np.flatnonzero(arr.ravel()).tolist()
    return [int(s) for s in arr.ravel()]


def _xy(squares) -> tuple[list[int], list[int]]:
    return [s % 8 for s in squares], [s // 8 for s in squares]


def _layout_board(fig, title, width, height, background="white"):
    fig.update_layout(
        title=title,
        width=width,
        height=height + (40 if title else 0),
        margin=dict(l=40, r=20, t=80 if title else 40, b=20),
        showlegend=False,
        plot_bgcolor=background,
    )
    fig.update_xaxes(
        tickvals=list(range(8)),
        ticktext=list(COL_LABELS),
        side="top",
        range=[-0.5, 7.5],
        showgrid=False,
        zeroline=False,
        constrain="domain",
    )
    fig.update_yaxes(
        tickvals=list(range(8)),
        ticktext=list(ROW_LABELS),
        range=[7.5, -0.5],
        showgrid=False,
        zeroline=False,
        scaleanchor="x",
        constrain="domain",
    )
    return fig


def _add_markers(fig, squares: list[int], name: str, marker: dict, text: list[str] | None = None):
    """One marker on each of ``squares`` (none: nothing is drawn); ``text`` is shown on hover."""
    if not squares:
        return
    x, y = _xy(squares)
    fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=name, marker=marker, text=text,
                             hoverinfo="text" if text else "skip"))


def _add_discs(fig, board: np.ndarray, size: float):
    for colour, fill, edge in ((BLACK, "black", "#555"), (WHITE, "white", "#333")):
        squares = np.flatnonzero(board.ravel() == colour).tolist()
        _add_markers(fig, squares, COLOUR_NAMES[colour], dict(size=size, color=fill, line=dict(color=edge, width=1)),
                     text=[f"{square_label(s)}: {COLOUR_NAMES[colour]}" for s in squares])


def _add_highlight(fig, highlight, size: float, colour: str = "red"):
    _add_markers(fig, _square_list(highlight), "highlight",
                 dict(symbol="square-open", size=size, color=colour, line=dict(width=3)))


def plot_board(board_or_state, title: str | None = None, legal_moves=None, highlight=None, size: int = 420):
    """Draw an Othello board with plotly.

    Args:
        board_or_state: an :class:`OthelloBoard`, or a board ``[8, 8]`` / ``[64]`` (1 black, -1 white).
        title: figure title.
        legal_moves: squares to mark as legal moves (list of ints or bool mask ``[64]``). Pass
            ``"auto"`` with an :class:`OthelloBoard` to mark the legal moves of the player to move.
        highlight: square(s) outlined in red, e.g. the last move.
        size: width of the figure in pixels.

    Returns:
        a ``plotly.graph_objects.Figure`` (call ``.show()`` yourself).
    """
    if isinstance(legal_moves, str):
        if legal_moves != "auto" or not isinstance(board_or_state, OthelloBoard):
            raise ValueError("legal_moves='auto' needs an OthelloBoard")
        legal_moves = board_or_state.legal_moves()
    board = _board_array(board_or_state)
    cell = (size - 60) / 8
    fig = go.Figure(
        go.Heatmap(
            z=np.zeros((8, 8)),
            colorscale=[[0, _GREEN], [1, _GREEN]],
            showscale=False,
            xgap=2,
            ygap=2,
            text=[[square_label(8 * r + c) for c in range(8)] for r in range(8)],
            hoverinfo="text",
        )
    )
    _add_discs(fig, board, 0.8 * cell)
    legal = _square_list(legal_moves)
    _add_markers(fig, legal, "legal", dict(size=0.25 * cell, color="rgba(255, 235, 59, 0.9)"),
                 text=[f"{square_label(s)}: legal" for s in legal])
    _add_highlight(fig, highlight, 0.95 * cell)
    return _layout_board(fig, title, size, size, background=_GRID)


def plot_board_values(
    values,
    title: str | None = None,
    board=None,
    highlight=None,
    colorscale: str | None = None,
    zmid: float | None = None,
    show_values: bool = False,
    size: int = 460,
):
    """Heatmap of one value per square: model logits over moves, probe outputs, attributions...

    Args:
        values: ``[64]`` or ``[8, 8]`` per square, or ``[60]`` per playable square, or ``[61]`` per token
            (e.g. the model's logits; token 0 is dropped). Centre squares are blank for 60/61 values.
        title: figure title.
        board: optional board (or :class:`OthelloBoard`) whose discs are drawn on top, small.
        highlight: square(s) outlined in black, e.g. the true next move.
        colorscale: plotly colour scale; default ``"RdBu"`` centred at 0 (``zmid=0``, symmetric range)
            when values are signed, ``"Blues"`` otherwise.
        zmid: centre of the colour scale (default 0 for signed values).
        show_values: write the values in the cells.
        size: width of the figure in pixels.

    Returns:
        a ``plotly.graph_objects.Figure``.
    """
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    vals = np.asarray(values, dtype=float).ravel()
    if vals.size in (MAX_MOVES, D_VOCAB):
        full = np.full(N_SQUARES, np.nan)
        full[PLAYABLE_SQUARES] = vals[-MAX_MOVES:]
        vals = full
    if vals.size != N_SQUARES:
        raise ValueError(f"values must have 64 ([8, 8] is fine), 60 or 61 entries, got {np.shape(values)}")
    grid = vals.reshape(8, 8)
    finite = grid[np.isfinite(grid)]
    signed = finite.size > 0 and finite.min() < 0
    heat = dict(colorscale=colorscale or ("RdBu" if signed else "Blues"))
    if signed or zmid is not None:
        centre = 0.0 if zmid is None else zmid
        bound = float(np.abs(finite - centre).max()) if finite.size else 1.0
        heat.update(zmid=centre, zmin=centre - bound, zmax=centre + bound)
    labels = [[square_label(8 * r + c) for c in range(8)] for r in range(8)]
    fig = go.Figure(
        go.Heatmap(
            z=grid,
            customdata=labels,
            xgap=1,
            ygap=1,
            colorbar=dict(thickness=12),
            hovertemplate="%{customdata}: %{z:.3g}<extra></extra>",
            texttemplate="%{z:.2f}" if show_values else None,
            **heat,
        )
    )
    cell = (size - 120) / 8
    if board is not None:
        _add_discs(fig, _board_array(board), 0.35 * cell)
    _add_highlight(fig, highlight, 0.95 * cell, colour="black")
    return _layout_board(fig, title, size, size - 60)


def plot_game(game, n_moves: int | None = None, kind: str = "squares", title: str | None = None, **kwargs):
    """Board after the first ``n_moves`` moves of ``game`` (all moves if None), with the legal moves
    of the player to move marked and the last move outlined in red.

    Args:
        game: ``[n_moves]`` squares or tokens (``kind``), padding allowed.
        kwargs: passed to :func:`plot_board` (e.g. ``size``).
    """
    squares = as_squares(game, kind).ravel()
    squares = squares[squares != PAD_SQUARE]
    n_moves = len(squares) if n_moves is None else int(n_moves)
    if not 0 <= n_moves <= len(squares):
        raise ValueError(f"n_moves must be in 0..{len(squares)}, got {n_moves}")
    board = OthelloBoard.from_moves(squares[:n_moves])
    if title is None:
        to_move = "game over" if board.game_over else f"{COLOUR_NAMES[board.player]} to play"
        last = f", last move {square_label(squares[n_moves - 1])}" if n_moves else ""
        title = f"After {n_moves} moves{last} ({to_move})"
    last_move = int(squares[n_moves - 1]) if n_moves else None
    return plot_board(board, title=title, legal_moves=board.legal_moves(), highlight=last_move, **kwargs)
