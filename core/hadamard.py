"""Walsh-Hadamard matrices of size ``p * 2**k`` and their fast transform.

``H_n = H_p (x) S_{2**k}`` (Kronecker) with ``S`` Sylvester's ``[[1, 1], [1, -1]]`` powers
and ``H_p`` a Paley type-I matrix for ``p = q + 1``, ``q`` a prime ``= 3 (mod 4)``
(``p`` = 4, 8, 12, 20, 24, 32, 44, 48, 60, 68, 72, ...): ``H_p = I + [[0, 1^T], [-1, Q]]``
with the Jacobsthal matrix ``Q[i, j] = chi(j - i)`` (Legendre symbol mod ``q``). Every such
``H`` has entries +-1 and ``H H^T = n I``, so ``H^-1 = H^T / n`` (Whisper's 384 = 12 * 32
and 1536 = 12 * 128 are covered). ``wht(x) = x H`` costs ``O(n (k + p))`` per row.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def _is_prime(q: int) -> bool:
    return q > 1 and all(q % d for d in range(2, int(q**0.5) + 1))


@functools.cache
def paley(p: int) -> Tensor:
    """The Paley I Hadamard matrix of size ``p`` (``p - 1`` prime, ``= 3 mod 4``)."""
    q = p - 1
    if not (_is_prime(q) and q % 4 == 3):
        raise ValueError(f"no Paley I Hadamard matrix of size {p}")
    squares = {(i * i) % q for i in range(1, q)}
    chi = torch.tensor([0] + [1 if a in squares else -1 for a in range(1, q)])
    idx = (torch.arange(q)[None] - torch.arange(q)[:, None]) % q
    s = torch.zeros(p, p)
    s[0, 1:], s[1:, 0], s[1:, 1:] = 1, -1, chi[idx].float()
    return torch.eye(p) + s


def factor(n: int) -> tuple[int, int] | None:
    """``(p, 2**k)`` with ``n = p * 2**k`` and a Hadamard matrix of size ``p``; None if none."""
    p = n // (n & -n)  # the odd part; powers of 2 move into p until H_p exists
    while p <= n:
        if p == 1 or (p % 4 == 0 and _is_prime(p - 1) and (p - 1) % 4 == 3):
            return p, n // p
        p *= 2
    return None


def hadamard_size(d: int) -> int:
    """The smallest ``n >= d`` with a Hadamard matrix here."""
    n = max(d, 1)
    while factor(n) is None:
        n += 1
    return n


def _butterfly(x: Tensor) -> Tensor:
    """``x @ S_m`` along the last axis (``m`` a power of 2), unnormalised."""
    m = x.shape[-1]
    h = 1
    while h < m:
        y = x.unflatten(-1, (m // (2 * h), 2, h))
        x = torch.cat([y[..., 0, :] + y[..., 1, :], y[..., 0, :] - y[..., 1, :]], -1).flatten(-2)
        h *= 2
    return x


def wht(x: Tensor, transpose: bool = False) -> Tensor:
    """``x @ H_n`` (or ``x @ H_n^T``) along the last axis, ``n = x.shape[-1]``."""
    n = x.shape[-1]
    f = factor(n)
    if f is None:
        raise ValueError(f"no Walsh-Hadamard matrix of size {n} (use hadamard_size to pad)")
    p, m = f
    z = _butterfly(x.unflatten(-1, (p, m)))
    if p > 1:
        hp = paley(p).to(x)
        z = torch.einsum("ai,...ib->...ab" if transpose else "ia,...ib->...ab", hp, z)
    return z.flatten(-2)


def hadamard_matrix(n: int) -> Tensor:
    """The dense ``H_n`` (tests, small sizes)."""
    return wht(torch.eye(n))
