"""Classic FactoredMatrix behaviours: has_leading_dims, V (and the deprecated Vh), broadcasting of leading dims in
products, one-element tensors, tensor-like operands, and errors that say what was given and what to do."""

import pytest
import torch

from helpers import utils
from helpers.factored_matrix import FactoredMatrix

DT = torch.float64


def randn(*shape):
    return torch.randn(*shape, dtype=DT)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1)


def close(x, y):
    torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)


def test_has_leading_dims():
    assert not FactoredMatrix(randn(4, 2), randn(2, 3)).has_leading_dims
    fm = FactoredMatrix(randn(4, 2), randn(5, 2, 3))  # only B has one: A is broadcast to it
    assert fm.has_leading_dims and fm.A.shape == (5, 4, 2) and fm.shape == (5, 4, 3)


def test_V_is_the_right_singular_vectors_and_Vh_a_deprecated_alias():
    fm = FactoredMatrix(randn(6, 3), randn(3, 5))
    close(fm.U @ torch.diag(fm.S) @ utils.transpose(fm.V), fm.AB)
    with pytest.warns(DeprecationWarning, match="use .V"):
        assert fm.Vh is fm.V


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


@pytest.mark.parametrize("scalar_shape", [(), (1,), (1, 1, 1)])
def test_one_element_tensor_keeps_the_shape(scalar_shape):
    fm = FactoredMatrix(randn(2, 5, 3), randn(2, 3, 4))
    scalar = torch.full(scalar_shape, -1.5, dtype=DT)
    for out in (fm * scalar, scalar * fm):
        assert out.shape == fm.shape
        close(out.AB, -1.5 * fm.AB)


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
