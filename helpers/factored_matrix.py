"""A matrix stored as the product of two factors, ``M = A @ B``, never built unless asked for.

In a transformer the interesting matrices are products of weights: the OV circuit of a head is
``W_V @ W_O`` ([d_model, d_head] @ [d_head, d_model]), the QK circuit is ``W_Q @ W_K.T``, and the full
OV circuit ``W_E @ W_V @ W_O @ W_U`` is [d_vocab, d_vocab], i.e. 50257 x 50257 for GPT-2 (10 GB in
float32). Such a product has rank at most ``mdim`` (d_head), so we keep the two thin factors and
compute everything we need from them: SVD, norm, eigenvalues, products with other matrices.

Shapes: ``A`` is [..., ldim, mdim], ``B`` is [..., mdim, rdim]; the leading ("batch") dimensions are
broadcast, so ``FactoredMatrix(model.W_V, model.W_O)`` holds every head of every layer at once:
[n_layers, n_heads, d_model, d_head] @ [n_layers, n_heads, d_head, d_model].

Same names and conventions as the classic TransformerLens ``FactoredMatrix`` (written from scratch).
"""

from __future__ import annotations

import torch
from jaxtyping import Complex, Float
from torch import Tensor

from helpers import checks


class FactoredMatrix:
    """The matrix ``A @ B`` of shape [..., ldim, rdim], stored as A [..., ldim, mdim] and B [..., mdim, rdim].

    Only ``.AB`` builds the full [ldim, rdim] product; everything else works on the factors.
    Treat the object as immutable: the SVD is cached, so do not modify ``A`` or ``B`` in place.
    """

    def __init__(self, A: Float[Tensor, "... ldim mdim"], B: Float[Tensor, "... mdim rdim"]):
        _check_factor("A", A, "[..., ldim, mdim]")
        _check_factor("B", B, "[..., mdim, rdim]")
        if isinstance(A, Tensor) and isinstance(B, Tensor) and (A.dtype, A.device) != (B.dtype, B.device):
            raise ValueError(
                f"FactoredMatrix(A, B): A is {A.dtype} on {A.device} but B is {B.dtype} on {B.device}; both "
                "factors need the same dtype and device. Convert one, e.g. B.to(A.dtype).to(A.device)."
            )
        if A.shape[-1] != B.shape[-2]:
            raise ValueError(
                f"FactoredMatrix(A, B): A has shape {tuple(A.shape)}, so {A.shape[-1]} columns, but B has shape "
                f"{tuple(B.shape)}, so {B.shape[-2]} rows; A @ B needs them equal (A [..., ldim, mdim], "
                "B [..., mdim, rdim]). Transpose the factor that is the wrong way round (.mT)."
            )
        self.ldim, self.mdim, self.rdim = A.shape[-2], A.shape[-1], B.shape[-1]
        self.has_leading_dims = A.ndim > 2 or B.ndim > 2
        try:
            batch = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        except RuntimeError as err:  # a RuntimeError, like torch's own broadcasting errors
            raise RuntimeError(
                f"FactoredMatrix(A, B): shape mismatch, the leading dims of A {tuple(A.shape)} and of "
                f"B {tuple(B.shape)} do not broadcast ({tuple(A.shape[:-2])} vs {tuple(B.shape[:-2])}). "
                "Each leading dim must be equal or 1 in one of them: index or unsqueeze a factor to align them."
            ) from err
        # broadcast_to returns views: no memory is copied.
        self.A: Float[Tensor, "... ldim mdim"] = A.broadcast_to(batch + (self.ldim, self.mdim))
        self.B: Float[Tensor, "... mdim rdim"] = B.broadcast_to(batch + (self.mdim, self.rdim))
        self.shape = torch.Size(batch + (self.ldim, self.rdim))
        self._svd = None  # cache for svd()

    # ------------------------------------------------------------------ basic properties

    @property
    def ndim(self) -> int:
        """Number of dimensions of the (virtual) full matrix, batch dims included."""
        return len(self.shape)

    @property
    def pair(self) -> tuple[Float[Tensor, "... ldim mdim"], Float[Tensor, "... mdim rdim"]]:
        """The two factors ``(A, B)``."""
        return self.A, self.B

    @property
    def AB(self) -> Float[Tensor, "... ldim rdim"]:
        """The full product ``A @ B``. Expensive: this is the one place that builds the big matrix."""
        return self.A @ self.B

    @property
    def BA(self) -> Float[Tensor, "... mdim mdim"]:
        """The reversed product ``B @ A`` (small: [mdim, mdim]). Only defined when ldim == rdim."""
        if self.ldim != self.rdim:
            raise ValueError(
                f"BA (and eigenvalues) need a square matrix (ldim == rdim), but this FactoredMatrix has shape "
                f"{tuple(self.shape)}. Use svd() or S for a rectangular matrix."
            )
        return self.B @ self.A

    @property
    def T(self) -> FactoredMatrix:
        """Transpose: ``(A @ B).T = B.T @ A.T``, shape [..., rdim, ldim]."""
        return FactoredMatrix(self.B.mT, self.A.mT)

    def __repr__(self) -> str:
        return (
            f"FactoredMatrix(shape={tuple(self.shape)}, mdim={self.mdim}, "
            f"A: {tuple(self.A.shape)}, B: {tuple(self.B.shape)})"
        )

    # ------------------------------------------------------------------ SVD and friends

    def svd(
        self,
    ) -> tuple[Float[Tensor, "... ldim k"], Float[Tensor, "... k"], Float[Tensor, "... rdim k"]]:
        """Singular value decomposition ``(U, S, Vh)`` of ``A @ B``, computed from the factors only.

        Classic TransformerLens convention: the third factor is V (shape [..., rdim, k]), NOT V transposed
        as ``torch.linalg.svd`` returns it. So::

            U @ torch.diag_embed(S) @ V.mT == A @ B        # note the .mT on V

        U and Vh have orthonormal columns, S is sorted in decreasing order and
        k = min(ldim, mdim, rdim) (that is mdim for a low-rank product).

        Method: QR-factorise A = Qa Ra and B.T = Qb Rb, so A @ B = Qa (Ra Rb.T) Qb.T. The middle
        matrix is tiny ([mdim, mdim] at most); its SVD Um Sm Vhm gives U = Qa Um, S = Sm, V = Qb Vhm.T.
        """
        if self._svd is None:
            A, B = self.A, self.B
            if A.dtype in (torch.float16, torch.bfloat16):  # linalg has no 16-bit kernels on CPU
                A, B = A.float(), B.float()
            Qa, Ra = torch.linalg.qr(A)  # [..., ldim, p], [..., p, mdim]
            Qb, Rb = torch.linalg.qr(B.mT)  # [..., rdim, q], [..., q, mdim]
            Um, S, Vhm = torch.linalg.svd(Ra @ Rb.mT, full_matrices=False)  # middle: [..., p, q]
            U, V = Qa @ Um, Qb @ Vhm.mT
            dtype = self.A.dtype
            self._svd = (U.to(dtype), S.to(dtype), V.to(dtype))
        return self._svd

    @property
    def U(self) -> Float[Tensor, "... ldim k"]:
        """Left singular vectors (columns), see ``svd()``."""
        return self.svd()[0]

    @property
    def S(self) -> Float[Tensor, "... k"]:
        """Singular values, largest first, see ``svd()``."""
        return self.svd()[1]

    @property
    def V(self) -> Float[Tensor, "... rdim k"]:
        """Right singular vectors as columns: ``U @ diag(S) @ V.mT == AB``, see ``svd()``."""
        return self.svd()[2]

    @property
    def Vh(self) -> Float[Tensor, "... rdim k"]:
        """Deprecated name of ``V`` (it has always been V, not V transposed), kept for old code."""
        checks.warn("FactoredMatrix.Vh is V, not V transposed: use .V (and .V.mT for the transpose).",
                    DeprecationWarning)
        return self.svd()[2]

    def norm(self) -> Float[Tensor, "..."]:
        """Frobenius norm of ``A @ B``: sqrt of the sum of squared singular values."""
        return self.S.pow(2).sum(-1).sqrt()

    def collapse_l(self) -> Float[Tensor, "... k rdim"]:
        """Drop the orthogonal left factor U: returns ``S[:, None] * V.T``, so ``U @ collapse_l() == AB``."""
        return self.S[..., :, None] * self.V.mT

    def collapse_r(self) -> Float[Tensor, "... ldim k"]:
        """Drop the orthogonal right factor V: returns ``U * S`` so that ``collapse_r() @ V.mT == AB``."""
        return self.U * self.S[..., None, :]

    def make_even(self) -> FactoredMatrix:
        """Same matrix, refactored as ``(U sqrt(S)) @ (sqrt(S) V.T)``: both halves carry equal norms."""
        sqrt_s = self.S.sqrt()
        return FactoredMatrix(self.U * sqrt_s[..., None, :], sqrt_s[..., :, None] * self.V.mT)

    @property
    def eigenvalues(self) -> Complex[Tensor, "... mdim"]:
        """The eigenvalues of ``A @ B`` (complex), computed as those of the small ``B @ A``.

        If ``B A v = x v`` then ``A B (A v) = x (A v)``: AB and BA share their non-zero eigenvalues.
        AB has ``ldim - mdim`` extra eigenvalues equal to 0, which are not returned.
        """
        BA = self.BA
        if BA.dtype in (torch.float16, torch.bfloat16):
            BA = BA.float()
        return torch.linalg.eigvals(BA)

    # ------------------------------------------------------------------ products

    def __matmul__(self, other):
        """``self @ other``: a vector [rdim] gives a tensor [..., ldim]; a matrix [..., rdim, k] or a
        FactoredMatrix gives a FactoredMatrix. We keep the smallest inner dimension available.
        ``other`` may be a tensor-like object (ndim, shape, unsqueeze, squeeze, broadcast_to, @)."""
        if isinstance(other, FactoredMatrix):
            if self.rdim != other.ldim:
                raise ValueError(
                    f"FactoredMatrix {tuple(self.shape)} @ FactoredMatrix {tuple(other.shape)}: the left one has "
                    f"{self.rdim} columns but the right one has {other.ldim} rows; they must be equal. "
                    "Check the order of the product, or transpose one factor with .T."
                )
            # Two steps, each of which keeps the smaller inner dim (see the tensor case below),
            # so the result has mdim = min(self.mdim, self.rdim, other.mdim).
            return (self @ other.A) @ other.B
        if not _is_tensor_like(other):
            return NotImplemented
        if other.ndim == 0 or other.shape[-2 if other.ndim >= 2 else -1] != self.rdim:  # rows of other
            raise ValueError(
                f"FactoredMatrix {tuple(self.shape)} @ tensor {tuple(other.shape)}: the tensor needs {self.rdim} "
                f"rows (a vector [{self.rdim}] or a matrix [..., {self.rdim}, k]). Check the order of the product."
            )
        if other.ndim == 1:
            # A vector: collapse to a tensor. unsqueeze/squeeze make it a [rdim, 1] column so that
            # it broadcasts correctly against batched A and B.
            return (self.A @ (self.B @ other.unsqueeze(-1))).squeeze(-1)
        if self.mdim < self.rdim:
            return FactoredMatrix(self.A, self.B @ other)  # inner dim stays mdim
        # rdim <= mdim: A @ B is [ldim, rdim], no bigger than A, so form it and use rdim as inner dim.
        return FactoredMatrix(self.A @ self.B, other)

    def __rmatmul__(self, other):
        """``other @ self``: a vector [ldim] gives a tensor [..., rdim]; a matrix [..., k, ldim] gives a
        FactoredMatrix."""
        if not _is_tensor_like(other):
            return NotImplemented
        if other.ndim == 0 or other.shape[-1] != self.ldim:
            raise ValueError(
                f"tensor {tuple(other.shape)} @ FactoredMatrix {tuple(self.shape)}: the tensor needs {self.ldim} "
                f"columns (a vector [{self.ldim}] or a matrix [..., k, {self.ldim}]). Check the order of the product."
            )
        if other.ndim == 1:
            return ((other.unsqueeze(-2) @ self.A) @ self.B).squeeze(-2)
        if self.mdim < self.ldim:
            return FactoredMatrix(other @ self.A, self.B)  # inner dim stays mdim
        # ldim <= mdim: A @ B is [ldim, rdim], no bigger than B, so form it and use ldim as inner dim.
        return FactoredMatrix(other, self.A @ self.B)

    def __mul__(self, scalar) -> FactoredMatrix:
        """Multiply by a scalar (a number or a one-element tensor of any shape). For matrix products use ``@``."""
        if isinstance(scalar, FactoredMatrix):
            raise TypeError(
                "FactoredMatrix * FactoredMatrix: the element-wise product of two FactoredMatrix is not supported. "
                "Use @ for the matrix product, or .AB * .AB on small matrices."
            )
        if isinstance(scalar, Tensor):
            if scalar.numel() != 1:
                raise ValueError(
                    f"FactoredMatrix * tensor: the tensor must hold a single number, got shape {tuple(scalar.shape)}. "
                    "Use @ for matrix products, or .item() on a one-element tensor."
                )
            scalar = scalar.reshape(())  # a one-element tensor with dims must not add dims to A
        elif not isinstance(scalar, (int, float)):
            return NotImplemented
        return FactoredMatrix(self.A * scalar, self.B)

    __rmul__ = __mul__

    # ------------------------------------------------------------------ indexing and reshaping

    def __getitem__(self, idx) -> FactoredMatrix:
        """Index the batch dims; a longer index also selects rows of A and then columns of B.

        With n batch dims: ``fm[i]`` (up to n entries) indexes both factors; an index of n + 1 entries
        also picks rows of the product (rows of A); n + 2 entries also pick columns (columns of B).
        An integer row/column index is kept as a length-1 dimension, so the result is still a matrix.
        """
        idx = idx if isinstance(idx, tuple) else (idx,)
        if any(i is Ellipsis for i in idx):  # expand "..." into the right number of ":"
            n_given = sum(1 for i in idx if i is not None and i is not Ellipsis)
            pos = next(k for k, i in enumerate(idx) if i is Ellipsis)
            idx = idx[:pos] + (slice(None),) * (self.ndim - n_given) + idx[pos + 1 :]
        n_batch = self.ndim - 2
        length = sum(1 for i in idx if i is not None)
        if length <= n_batch:
            return FactoredMatrix(self.A[idx], self.B[idx])
        idx = idx[:-1] + (_keep_dim(idx[-1]),)
        if length == n_batch + 1:  # last entry selects rows of A
            return FactoredMatrix(self.A[idx], self.B[idx[:-1]])
        if length == n_batch + 2:  # last two entries: rows of A, columns of B
            idx = idx[:-2] + (_keep_dim(idx[-2]), idx[-1])
            return FactoredMatrix(self.A[idx[:-1]], self.B[idx[:-2] + (slice(None), idx[-1])])
        raise ValueError(
            f"FactoredMatrix[{idx}]: an index of {length} entries is too long for shape {tuple(self.shape)}; "
            f"at most {n_batch + 2} (the {n_batch} leading dims, then rows, then columns)."
        )

    def unsqueeze(self, k: int) -> FactoredMatrix:
        """Insert a batch dimension of size 1 at position k (k counts in the full shape, like torch)."""
        if k < 0:
            k += self.ndim + 1
        if not 0 <= k <= self.ndim - 2:
            raise ValueError(
                f"unsqueeze({k}) on a FactoredMatrix of shape {tuple(self.shape)} would split its two matrix dims; "
                f"k must be between {-self.ndim - 1} and {self.ndim - 2} (a new leading dim)."
            )
        return FactoredMatrix(self.A.unsqueeze(k), self.B.unsqueeze(k))

    def get_corner(self, k: int = 3) -> Float[Tensor, "..."]:
        """The top-left corner of the product, every dim cut to its first k entries (cheap: only
        ``A[:k] @ B[:, :k]`` is computed). Handy to peek at a huge matrix."""
        corner = self.A[..., :k, :] @ self.B[..., :, :k]
        return corner[tuple(slice(0, k) for _ in range(corner.ndim))]


def _is_tensor_like(x) -> bool:
    """A torch.Tensor, or an object with the few tensor methods the products use."""
    return isinstance(x, Tensor) or all(
        hasattr(x, a) for a in ("ndim", "shape", "unsqueeze", "squeeze", "broadcast_to", "__matmul__"))


def _check_factor(name: str, x, expected: str) -> None:
    if not _is_tensor_like(x):
        raise TypeError(
            f"FactoredMatrix(A, B): {name} must be a torch.Tensor {expected}, got {type(x).__name__}. "
            f"Convert it with torch.as_tensor({name})."
        )
    if x.ndim < 2:
        raise ValueError(
            f"FactoredMatrix(A, B): {name} must have at least 2 dims {expected}, got shape {tuple(x.shape)}. "
            f"For a vector, use {name}[:, None] (a column) or {name}[None, :] (a row)."
        )
    if isinstance(x, Tensor) and not (x.is_floating_point() or x.is_complex()):
        raise TypeError(
            f"FactoredMatrix(A, B): {name} has dtype {x.dtype}; the SVD and eigenvalues need floating point. "
            f"Convert it with {name}.float()."
        )


def _keep_dim(i):
    """Turn an integer index into a length-1 slice, so indexing keeps that dimension."""
    if isinstance(i, int):
        return slice(i, i + 1 if i != -1 else None)  # slice(-1, 0) would be empty
    return i


def composition_score(W_A: FactoredMatrix, W_B: FactoredMatrix) -> Float[Tensor, "..."]:
    """How much ``W_B`` reads what ``W_A`` writes: ``|W_A W_B|_F / (|W_A|_F |W_B|_F)``, in [0, 1].

    The composition score of *A Mathematical Framework for Transformer Circuits* (Elhage et al., 2021),
    in this library's row-vector convention (``x @ W``): W_A is the OV circuit [..., d_model, d_model] of
    an earlier head, W_B the circuit of a later head that reads its output, and leading dims broadcast:
    Q-composition W_B = the later head's QK, K-composition W_B = QK.T, V-composition W_B = its OV.
    E.g. every (layer-0 head, layer-1 head) pair: ``composition_score(model.OV[0][:, None], model.QK[1][None])``.
    """
    for name, W in (("W_A", W_A), ("W_B", W_B)):
        if not isinstance(W, FactoredMatrix):
            raise TypeError(f"{name} must be a FactoredMatrix (e.g. model.OV[layer]), not {type(W).__name__}; "
                            "wrap a dense matrix M as FactoredMatrix(M, torch.eye(M.shape[-1])).")
    return (W_A @ W_B).norm() / (W_A.norm() * W_B.norm())
