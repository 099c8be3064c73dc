"""Tests for helpers.factored_matrix: every operation is checked against the dense matrix A @ B; then the classic
behaviours (has_leading_dims, the deprecated Vh, broadcasting of leading dims in products, one-element tensors,
tensor-like operands) and errors that say what was given and what to do."""


import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers.factored_matrix import FactoredMatrix

DT = torch.float64


def randn(*shape):
    return torch.randn(*shape, dtype=DT)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def close(x, y, tol=1e-9):
    torch.testing.assert_close(x, y, rtol=tol, atol=tol)


def nonzero_eigs_sorted(eigs, tol=1e-8):
    """Drop the (near-)zero eigenvalues of a 1-D complex tensor, then sort by magnitude (ties by angle)."""
    eigs = eigs[eigs.abs() > tol]
    order = sorted(range(len(eigs)), key=lambda i: (round(eigs[i].abs().item(), 6), eigs[i].angle().item()))
    return eigs[order]


# ---------------------------------------------------------------- construction


def test_shapes_and_broadcasting():
    A, B = randn(3, 1, 5, 2), randn(4, 2, 6)
    fm = FactoredMatrix(A, B)
    assert fm.shape == torch.Size([3, 4, 5, 6])
    assert (fm.ldim, fm.mdim, fm.rdim, fm.ndim) == (5, 2, 6, 4)
    assert fm.A.shape == (3, 4, 5, 2) and fm.B.shape == (3, 4, 2, 6)
    close(fm.AB, A @ B)
    assert fm.pair[0] is fm.A and fm.pair[1] is fm.B
    assert repr(fm) == "FactoredMatrix(shape=(3, 4, 5, 6), mdim=2, A: (3, 4, 5, 2), B: (3, 4, 2, 6))"


def test_has_leading_dims():
    assert not FactoredMatrix(randn(4, 2), randn(2, 3)).has_leading_dims
    fm = FactoredMatrix(randn(4, 2), randn(5, 2, 3))  # only B has one: A is broadcast to it
    assert fm.has_leading_dims and fm.A.shape == (5, 4, 2) and fm.shape == (5, 4, 3)


def test_init_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(4, 6\)"):
        FactoredMatrix(randn(5, 3), randn(4, 6))
    # leading dims that do not broadcast: a RuntimeError, as torch's broadcasting errors and the classic class
    with pytest.raises(RuntimeError, match=r"leading dims of A \(2, 5, 3\) and of B \(4, 3, 6\)"):
        FactoredMatrix(randn(2, 5, 3), randn(4, 3, 6))
    with pytest.raises(ValueError, match=r"A must have at least 2 dims.*got shape \(5,\).*A\[:, None\]"):
        FactoredMatrix(randn(5), randn(5, 3))


def test_BA_and_transpose():
    A, B = randn(2, 6, 3), randn(2, 3, 6)
    fm = FactoredMatrix(A, B)
    close(fm.BA, B @ A)
    assert fm.BA.shape == (2, 3, 3)
    with pytest.raises(ValueError, match="ldim == rdim"):
        _ = FactoredMatrix(randn(6, 3), randn(3, 5)).BA

    fm = FactoredMatrix(randn(2, 6, 3), randn(2, 3, 5))
    assert isinstance(fm.T, FactoredMatrix)
    assert fm.T.shape == (2, 5, 6) and fm.T.mdim == 3
    close(fm.T.AB, fm.AB.mT)


# ---------------------------------------------------------------- svd, norm, eigenvalues


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [((7, 3), (3, 5)), ((2, 4, 8, 4), (2, 4, 4, 8)), ((3, 5), (5, 6)), ((6, 5), (5, 3))],
)
def test_svd_matches_dense(a_shape, b_shape):
    fm = FactoredMatrix(randn(*a_shape), randn(*b_shape))
    dense = fm.AB
    U, S, V = fm.svd()
    k = min(fm.ldim, fm.mdim, fm.rdim)
    batch = fm.shape[:-2]
    assert U.shape == batch + (fm.ldim, k)
    assert S.shape == batch + (k,)
    assert V.shape == batch + (fm.rdim, k)  # V, not V transposed as torch.linalg.svd returns it
    close(U @ torch.diag_embed(S) @ V.mT, dense)
    close(S, torch.linalg.svdvals(dense)[..., :k])
    assert (S[..., :-1] >= S[..., 1:]).all()
    eye = torch.eye(k, dtype=DT).expand(batch + (k, k))
    close(U.mT @ U, eye)
    close(V.mT @ V, eye)
    # the properties are the same tensors (svd is cached)
    assert fm.U is U and fm.S is S and fm.V is V


def test_Vh_is_a_deprecated_alias_of_V():
    fm = FactoredMatrix(randn(6, 3), randn(3, 5))
    with pytest.warns(DeprecationWarning, match="use .V"):
        assert fm.Vh is fm.V


def test_svd_float16_input_is_supported():
    fm = FactoredMatrix(torch.randn(6, 3).half(), torch.randn(3, 5).half())
    U, S, V = fm.svd()
    assert U.dtype == S.dtype == V.dtype == torch.float16
    close((U.float() * S.float()) @ V.float().mT, fm.A.float() @ fm.B.float(), tol=2e-2)


def test_norm_matches_dense():
    fm = FactoredMatrix(randn(3, 2, 7, 4), randn(3, 2, 4, 9))
    norm = fm.norm()
    assert norm.shape == (3, 2)
    close(norm, torch.linalg.matrix_norm(fm.AB))


def test_eigenvalues_are_nonzero_eigenvalues_of_dense():
    fm = FactoredMatrix(randn(2, 8, 3), randn(2, 3, 8))
    eigs = fm.eigenvalues
    assert eigs.shape == (2, 3) and eigs.is_complex()
    for i in range(2):
        dense_eigs = torch.linalg.eigvals(fm.AB[i])  # 8 eigenvalues, 5 of them ~0
        expected = nonzero_eigs_sorted(dense_eigs)
        assert len(expected) == 3
        close(nonzero_eigs_sorted(eigs[i]), expected, tol=1e-7)


def test_collapse_and_make_even():
    fm = FactoredMatrix(randn(2, 7, 3), randn(2, 3, 6))
    left, right = fm.collapse_l(), fm.collapse_r()
    assert left.shape == (2, 3, 6) and right.shape == (2, 7, 3)
    close(fm.U @ left, fm.AB)
    close(right @ fm.V.mT, fm.AB)

    even = fm.make_even()
    close(even.AB, fm.AB)
    # each column of A and each row of B now has norm sqrt(singular value)
    close(even.A.norm(dim=-2), fm.S.sqrt())
    close(even.B.norm(dim=-1), fm.S.sqrt())
    close(even.A.mT @ even.A, torch.diag_embed(fm.S))


# ---------------------------------------------------------------- products


@pytest.mark.parametrize("mdim, rdim, expected_mdim", [(3, 6, 3), (6, 4, 4), (4, 4, 4)])
def test_matmul_tensor_matrix(mdim, rdim, expected_mdim):
    fm = FactoredMatrix(randn(2, 5, mdim), randn(2, mdim, rdim))
    other = randn(3, 1, rdim, 7)  # batch dims broadcast with fm's
    out = fm @ other
    assert isinstance(out, FactoredMatrix)
    assert out.shape == (3, 2, 5, 7) and out.mdim == expected_mdim
    close(out.AB, fm.AB @ other)


@pytest.mark.parametrize("ldim, mdim, expected_mdim", [(6, 3, 3), (4, 6, 4), (4, 4, 4)])
def test_rmatmul_tensor_matrix(ldim, mdim, expected_mdim):
    fm = FactoredMatrix(randn(2, ldim, mdim), randn(2, mdim, 5))
    other = randn(7, ldim)
    out = other @ fm
    assert isinstance(out, FactoredMatrix)
    assert out.shape == (2, 7, 5) and out.mdim == expected_mdim
    close(out.AB, other @ fm.AB)


def test_matmul_vectors_give_tensors():
    fm = FactoredMatrix(randn(2, 5, 3), randn(2, 3, 4))
    v = randn(4)
    out = fm @ v
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)
    close(out, (fm.AB @ v[:, None])[..., 0])
    w = randn(5)
    out = w @ fm
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4)
    close(out, (w[None, :] @ fm.AB)[..., 0, :])


@pytest.mark.parametrize("m1, k, m2", [(2, 6, 3), (4, 6, 2), (5, 3, 4), (3, 3, 3), (6, 8, 6)])
def test_matmul_two_factored_matrices_keeps_smallest_inner_dim(m1, k, m2):
    fm1 = FactoredMatrix(randn(2, 7, m1), randn(2, m1, k))
    fm2 = FactoredMatrix(randn(k, m2), randn(m2, 9))
    out = fm1 @ fm2
    assert isinstance(out, FactoredMatrix)
    assert out.shape == (2, 7, 9)
    assert out.mdim == min(m1, k, m2)
    close(out.AB, fm1.AB @ fm2.AB)


@pytest.mark.parametrize("fm_batch, other_batch", [((3,), ()), ((), (3,)), ((2, 1), (4,)), ((1,), (2, 3))])
def test_products_broadcast_leading_dims(fm_batch, other_batch):
    fm = FactoredMatrix(randn(*fm_batch, 5, 2), randn(*fm_batch, 2, 6))
    right, left = randn(*other_batch, 6, 4), randn(*other_batch, 3, 5)
    other_fm = FactoredMatrix(randn(*other_batch, 6, 2), randn(*other_batch, 2, 7))
    close((fm @ right).AB, fm.AB @ right)
    close((left @ fm).AB, left @ fm.AB)
    close((fm @ other_fm).AB, fm.AB @ other_fm.AB)
    close((other_fm.T @ fm.T).AB, other_fm.AB.mT @ fm.AB.mT)


def test_product_leading_dims_that_do_not_broadcast():
    fm = FactoredMatrix(randn(2, 3, 4), randn(2, 4, 6))
    with pytest.raises(RuntimeError, match=r"leading dims .* do not broadcast \(\(4,\) vs \(2,\)\)"):
        randn(4, 5, 3) @ fm


class Wrapped:
    """A tensor-like object that is not a torch.Tensor (as jaxtyping wrappers or other array types)."""

    def __init__(self, t):
        self.t = t

    ndim = property(lambda self: self.t.ndim)
    shape = property(lambda self: self.t.shape)

    def unsqueeze(self, d):
        return Wrapped(self.t.unsqueeze(d))

    def squeeze(self, d):
        return Wrapped(self.t.squeeze(d))

    def broadcast_to(self, shape):
        return Wrapped(self.t.broadcast_to(shape))

    def __matmul__(self, other):
        if isinstance(other, FactoredMatrix):
            return NotImplemented
        return Wrapped(self.t @ (other.t if isinstance(other, Wrapped) else other))

    def __rmatmul__(self, other):
        return Wrapped(other @ self.t)


def test_tensor_like_operands_on_both_sides():
    fm = FactoredMatrix(randn(3, 2), randn(2, 4))
    right, left, vec = randn(4, 5), randn(6, 3), randn(4)
    out = fm @ Wrapped(right)
    assert isinstance(out, FactoredMatrix) and isinstance(out.AB, Wrapped)
    close(out.AB.t, fm.AB @ right)
    out = Wrapped(left) @ fm
    assert isinstance(out, FactoredMatrix)
    close(out.AB.t, left @ fm.AB)
    close((fm @ Wrapped(vec)).t, fm.AB @ vec)


def test_matmul_shape_mismatch_errors():
    fm = FactoredMatrix(randn(5, 3), randn(3, 4))
    with pytest.raises(ValueError, match=r"\(5, 4\).*\(6, 2\)"):
        fm @ randn(6, 2)
    with pytest.raises(ValueError, match=r"\(5, 4\).*\(6,\)"):
        fm @ randn(6)
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(5, 4\)"):
        randn(2, 4) @ fm
    with pytest.raises(ValueError, match=r"\(5, 4\).*\(5, 4\)"):
        fm @ fm
    with pytest.raises(TypeError):
        fm @ "not a matrix"


def test_scalar_multiplication():
    fm = FactoredMatrix(randn(2, 5, 3), randn(2, 3, 4))
    for out in (
        2 * fm,
        fm * 2,
        fm * 2.0,
        torch.tensor(2.0, dtype=DT) * fm,
        fm * torch.tensor([2.0], dtype=DT),
    ):
        assert isinstance(out, FactoredMatrix)
        close(out.AB, 2 * fm.AB)
    with pytest.raises(ValueError, match=r"single number, got shape \(4,\).*Use @"):
        fm * randn(4)
    with pytest.raises(TypeError):
        fm * fm


@pytest.mark.parametrize("scalar_shape", [(), (1,), (1, 1, 1)])
def test_one_element_tensor_keeps_the_shape(scalar_shape):
    fm = FactoredMatrix(randn(2, 5, 3), randn(2, 3, 4))
    scalar = torch.full(scalar_shape, -1.5, dtype=DT)
    for out in (fm * scalar, scalar * fm):
        assert out.shape == fm.shape
        close(out.AB, -1.5 * fm.AB)


# ---------------------------------------------------------------- indexing and reshaping


def test_getitem():
    fm = FactoredMatrix(randn(3, 4, 6, 2), randn(3, 4, 2, 5))
    dense = fm.AB
    assert fm[1].shape == (4, 6, 5)
    close(fm[1].AB, dense[1])
    close(fm[1, 2].AB, dense[1, 2])
    close(fm[:, 1:3].AB, dense[:, 1:3])
    # a third entry selects rows (rows of A), a fourth selects columns (columns of B)
    close(fm[1, 2, 1:4].AB, dense[1, 2, 1:4])
    close(fm[1, 2, 1:4, 2:].AB, dense[1, 2, 1:4, 2:])
    assert fm[1, 2, 1:4, 2:].mdim == 2
    # integer row/column indices keep a length-1 dim, so the result is still a matrix
    assert fm[0, 0, 3].shape == (1, 5)
    close(fm[0, 0, 3].AB, dense[0, 0, 3:4])
    close(fm[0, 0, -1, -1].AB, dense[0, 0, -1:, -1:])
    # ellipsis fills the batch dims
    close(fm[..., 1:3, :2].AB, dense[..., 1:3, :2])
    close(fm[..., 0].AB, dense[..., 0:1])  # as in torch, "..." then one index = last dim
    with pytest.raises(ValueError, match="too long"):
        fm[0, 0, 0, 0, 0]


def test_unsqueeze():
    fm = FactoredMatrix(randn(3, 6, 2), randn(3, 2, 5))
    assert fm.unsqueeze(0).shape == (1, 3, 6, 5)
    assert fm.unsqueeze(1).shape == (3, 1, 6, 5)
    assert fm.unsqueeze(-3).shape == (3, 1, 6, 5)
    close(fm.unsqueeze(0).AB, fm.AB.unsqueeze(0))
    with pytest.raises(ValueError, match="matrix dims"):
        fm.unsqueeze(-1)


def test_get_corner():
    fm = FactoredMatrix(randn(5, 6, 2), randn(5, 2, 7))
    close(fm.get_corner(), fm.AB[:3, :3, :3])
    close(fm.get_corner(4), fm.AB[:4, :4, :4])
    fm2 = FactoredMatrix(randn(6, 2), randn(2, 7))
    close(fm2.get_corner(2), fm2.AB[:2, :2])


# ---------------------------------------------------------------- errors that say what to do


def test_argument_errors_say_what_to_do():
    with pytest.raises(TypeError, match=r"A must be a torch.Tensor \[..., ldim, mdim\], got list.*torch.as_tensor"):
        FactoredMatrix([[1.0, 2.0]], randn(2, 3))
    with pytest.raises(TypeError, match=r"B has dtype torch.int64.*B.float\(\)"):
        FactoredMatrix(randn(3, 2), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"A is torch.float64 .* but B is torch.float32.*same dtype"):
        FactoredMatrix(randn(3, 2), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"A has shape \(3, 2\), so 2 columns, but B has shape \(3, 4\).*\.mT"):
        FactoredMatrix(randn(3, 2), randn(3, 4))
    fm = FactoredMatrix(randn(3, 2), randn(2, 4))
    with pytest.raises(ValueError, match=r"@ tensor \(5, 2\): the tensor needs 4 rows"):
        fm @ randn(5, 2)
    with pytest.raises(ValueError, match=r"tensor \(2, 4\) @ FactoredMatrix \(3, 4\): the tensor needs 3 columns"):
        randn(2, 4) @ fm
    with pytest.raises(ValueError, match=r"left one has 4 columns but the right one has 3 rows.*\.T"):
        fm @ fm
    with pytest.raises(ValueError, match=r"need a square matrix .* shape \(3, 4\)"):
        _ = fm.eigenvalues
    with pytest.raises(ValueError, match=r"index of 3 entries is too long for shape \(3, 4\); at most 2"):
        fm[0, 0, 0]
    with pytest.raises(ValueError, match=r"unsqueeze\(2\).*between -3 and 0"):
        fm.unsqueeze(2)


# ---------------------------------------------------------------- the big one: a d_vocab x d_vocab circuit


class _ForbidHugeTensors(TorchDispatchMode):
    """Fail as soon as any torch operation produces a tensor with more than `max_numel` elements."""

    def __init__(self, max_numel):
        super().__init__()
        self.max_numel = max_numel

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.max_numel:
                raise AssertionError(f"{func} created a tensor of shape {tuple(t.shape)}")
        return out


def full_ov_circuit(d_vocab, d_model=64, d_head=16):
    """W_E @ (W_V @ W_O) @ W_U, built with FactoredMatrix products."""
    W_E, W_U = randn(d_vocab, d_model), randn(d_model, d_vocab)
    W_OV = FactoredMatrix(randn(d_model, d_head), randn(d_head, d_model))
    return W_E, W_OV, W_U, W_E @ W_OV @ W_U


def test_full_circuit_small_vocab_matches_dense():
    W_E, W_OV, W_U, circuit = full_ov_circuit(d_vocab=300)
    dense = W_E @ W_OV.AB @ W_U
    assert circuit.shape == (300, 300) and circuit.mdim == 16
    close(circuit.AB, dense)
    close(circuit.norm(), torch.linalg.matrix_norm(dense))
    close(circuit.S, torch.linalg.svdvals(dense)[:16])
    close(
        nonzero_eigs_sorted(circuit.eigenvalues), nonzero_eigs_sorted(torch.linalg.eigvals(dense), tol=1e-6)
    )
    close(circuit.get_corner(5), dense[:5, :5])


def test_full_circuit_gpt2_vocab_never_materialised(monkeypatch):
    d_vocab = 50257
    W_E, W_U = randn(d_vocab, 64), randn(64, d_vocab)
    W_OV = FactoredMatrix(randn(64, 16), randn(16, 64))
    OV = W_OV.AB  # small [64, 64], computed before AB is forbidden

    def forbidden(self):
        raise AssertionError("FactoredMatrix.AB was called")

    monkeypatch.setattr(FactoredMatrix, "AB", property(forbidden))
    with _ForbidHugeTensors(max_numel=10 * d_vocab * 64):  # a d_vocab x d_vocab tensor is ~800x bigger
        circuit = W_E @ W_OV @ W_U
        eigs = circuit.eigenvalues
        norm = circuit.norm()
        U, S, V = circuit.svd()
        corner = circuit.get_corner()
        rows = circuit[:5, :7]

    assert circuit.shape == (d_vocab, d_vocab) and circuit.mdim == 16
    # References computed with small matrices only, using cyclic invariance:
    # W_E OV W_U and OV (W_U W_E) ([64, 64]) have the same non-zero eigenvalues.
    WUE = W_U @ W_E
    close(nonzero_eigs_sorted(eigs), nonzero_eigs_sorted(torch.linalg.eigvals(OV @ WUE), tol=1e-6), tol=1e-6)
    # ||M||_F^2 = trace(M M^T) = trace(W_E^T W_E OV W_U W_U^T OV^T)
    expected_norm = torch.trace(W_E.T @ W_E @ OV @ W_U @ W_U.T @ OV.T).sqrt()
    close(norm, expected_norm, tol=1e-6)
    close(U.mT @ U, torch.eye(16, dtype=DT))
    close(V.mT @ V, torch.eye(16, dtype=DT))
    close((U[:5] * S) @ V[:7].mT, W_E[:5] @ OV @ W_U[:, :7], tol=1e-6)
    close(corner, W_E[:3] @ OV @ W_U[:, :3], tol=1e-6)
    close(rows.A @ rows.B, W_E[:5] @ OV @ W_U[:, :7], tol=1e-6)
