"""Tests for helpers.factored_matrix.composition_score against dense Frobenius norms and known cases."""

import pytest
import torch

from helpers import HookedTransformer, HookedTransformerConfig
from helpers.factored_matrix import FactoredMatrix, composition_score


def dense_score(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    fro = torch.linalg.matrix_norm
    return fro(A @ B) / (fro(A) * fro(B))


def test_matches_dense_with_broadcasting():
    gen = torch.Generator().manual_seed(0)
    A = FactoredMatrix(torch.randn(3, 1, 12, 4, generator=gen), torch.randn(3, 1, 4, 12, generator=gen))
    B = FactoredMatrix(torch.randn(1, 5, 12, 4, generator=gen), torch.randn(1, 5, 4, 12, generator=gen))
    scores = composition_score(A, B)
    assert scores.shape == (3, 5)
    torch.testing.assert_close(scores, dense_score(A.AB, B.AB), atol=1e-5, rtol=1e-5)
    assert scores.min() > 0 and scores.max() < 1


def test_orthogonal_subspaces_and_perfect_reading():
    gen = torch.Generator().manual_seed(1)
    u, v, w = (torch.randn(8, 1, generator=gen) for _ in range(3))
    writes_v = FactoredMatrix(u, v.T)  # x -> (x . u) v: writes along v
    reads_v = FactoredMatrix(v, w.T)  # reads the component along v
    assert composition_score(writes_v, reads_v).item() == pytest.approx(1.0, abs=1e-5)
    low = torch.zeros(8, 2)
    low[:4] = torch.randn(4, 2, generator=gen)
    high = torch.zeros(8, 2)
    high[4:] = torch.randn(4, 2, generator=gen)
    writes_low = FactoredMatrix(torch.randn(8, 2, generator=gen), low.T)
    reads_high = FactoredMatrix(high, torch.randn(2, 8, generator=gen))
    assert composition_score(writes_low, reads_high).item() == pytest.approx(0.0, abs=1e-6)


def test_q_k_v_composition_of_a_model_follow_the_paper():
    """Column-vector form of the paper, written densely: Q = |W_QK^T W_OV|, K = |W_QK W_OV|, V = |W_OV2 W_OV1|
    (W_OV = W_O^T W_V^T there, W_QK = W_Q W_K^T acting as q^T W k) divided by the two norms."""
    model = HookedTransformer(HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_vocab=10, n_ctx=4,
                                                      attn_only=True, seed=0))
    ov = lambda layer, head: (model.W_V[layer, head] @ model.W_O[layer, head]).T  # noqa: E731 - column form
    qk = lambda layer, head: model.W_Q[layer, head] @ model.W_K[layer, head].T  # noqa: E731
    fro = torch.linalg.matrix_norm
    for i in range(2):
        for j in range(2):
            norms = fro(ov(0, i)) * fro(qk(1, j))
            q = fro(qk(1, j).T @ ov(0, i)) / norms
            k = fro(qk(1, j) @ ov(0, i)) / norms
            v = fro(ov(1, j) @ ov(0, i)) / (fro(ov(0, i)) * fro(ov(1, j)))
            OV0, QK1, OV1 = model.OV[0, i], model.QK[1, j], model.OV[1, j]
            assert composition_score(OV0, QK1).item() == pytest.approx(q.item(), rel=1e-4)
            assert composition_score(OV0, QK1.T).item() == pytest.approx(k.item(), rel=1e-4)
            assert composition_score(OV0, OV1).item() == pytest.approx(v.item(), rel=1e-4)
            assert abs(q.item() - k.item()) > 1e-4  # Q and K composition differ: the transpose matters


def test_dense_matrices_are_refused():
    with pytest.raises(TypeError, match="FactoredMatrix"):
        composition_score(torch.eye(3), FactoredMatrix(torch.eye(3), torch.eye(3)))
