"""SLTrain as a full-weight replacement: a Linear's weight becomes ``W = s B A + S``.

The paper (Han et al. 2024, "SLTrain: a sparse plus low-rank approach for parameter and
memory efficient pretraining") trains every weight in this form: the dense ``W`` is never
stored, only ``A (r x d_in)``, ``B (d_out x r)``, the ``n = floor(density d_out d_in)``
values of ``S`` and their fixed random support. ``replace_weights`` swaps each targeted
``nn.Linear`` for an ``SLTrainLinear`` holding exactly that (and the bias); the dense weight
is dropped, so the layer's weights, their gradients and AdamW's state all shrink from
``d_out d_in`` to ``r (d_in + d_out) + n`` floats each (the adapter form in
``methods/sltrain.py`` keeps the frozen dense ``W0`` besides).

    names = replace_weights(model, SLTrainWeightsConfig(r=8, density=0.05, targets=("mlp",)))

``y = s B (A x) + S x + b`` with ``s = alpha / r`` (the paper's ``x A^T B^T alpha / r + x S^T
+ b``). The low-rank path never forms ``B A``; the sparse path is the adapter's autograd
function (keeps only ``x``, the values and the support for backward; ``recompute``).
Support: ``methods.sltrain.random_support`` from ``seed`` and the layer's name, sorted
``int32`` flat indices ``i * d_in + j`` in a persistent buffer ``support`` (in the model's
``state_dict``, so a checkpoint holds it and loading restores it; nothing redraws it).
Init (``init``):

- ``"svd"`` **(reading: fine-tuning from a pretrained weight, not in the paper, which
  pre-trains from scratch)**: ``s B A`` is the rank-``r`` truncated SVD of ``W0``
  (``B = U_r sqrt(Sigma_r / s)``, ``A = sqrt(Sigma_r / s) V_r^T``) and ``S`` holds the
  residual ``W0 - s B A`` at its support; the bias is ``W0``'s. The start is ``W0`` minus the
  residual off the support (``init_error`` reports its relative Frobenius norm).
- ``"random"`` (the paper's pre-training init, its code's ``SpLoRaLinear``): ``A``
  Kaiming-uniform, ``B = 0``, ``S ~ U(-1/sqrt(d_in), 1/sqrt(d_in))``, bias
  ``U(-1/sqrt(d_out), 1/sqrt(d_out))``; ``W0`` is ignored.

Every tensor of a replaced layer trains (``A``, ``B``, ``values``, ``bias``); the rest of the
model is left as it was. Only ``nn.Linear`` layers whose forward is called (not the
``out_proj`` of an ``nn.MultiheadAttention``, which reads its weight directly; not the
attention's ``in_proj_weight``): the replacement is a module, not a weight.
Defaults: r=8, alpha=8, density=0.01 (the paper code's ``sp_ratio``), seed=0, init="svd",
recompute=True. ``densify`` turns replaced layers back into ``nn.Linear`` (``W = s B A + S``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .hosts import Host
from .method import LINEAR_OPS, kaiming_, thin_svd
from .methods.sltrain import _SparseApply, random_support, scatter_dense
from .targets import _check_not_inside_mha, name_matches, resolve_targets

INITS = ("svd", "random")


@dataclass(frozen=True)
class SLTrainWeightsConfig:
    """r: rank of ``B A``; alpha: ``s = alpha / r``; density: share of ``S``'s entries that
    train; seed: the supports' draw; init: ``svd`` (from ``W0``) or ``random`` (the paper's
    pre-training); recompute: the sparse path keeps no dense ``S``; targets: name patterns
    or presets of ``nn.Linear`` layers (as ``inject``'s)."""

    r: int = 8
    alpha: float = 8.0
    density: float = 0.01
    seed: int = 0
    init: str = "svd"
    recompute: bool = True
    targets: tuple[str, ...] = ()

    def validate(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"sltrain weights: r must be a positive integer, got {self.r!r}")
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"sltrain weights: density must be in (0, 1], got {self.density!r}")
        if self.init not in INITS:
            raise ValueError(f"sltrain weights: init must be one of {INITS}, got {self.init!r}")
        if not self.targets:
            raise ValueError("sltrain weights: targets is empty (name patterns or presets)")


class SLTrainLinear(nn.Module):
    """``y = s B (A x) + S x + b``; ``S`` on the fixed ``support``. No dense weight is held.

    A: (r, d_in), B: (d_out, r), values: (n,), support: (n,) int32 buffer, bias: (d_out,)
    or None; all but ``support`` train.
    """

    def __init__(self, d_in: int, d_out: int, cfg: SLTrainWeightsConfig, key: str, bias: bool):
        super().__init__()
        if cfg.r > min(d_in, d_out):
            raise ValueError(
                f"sltrain weights: rank r={cfg.r} is larger than layer {key} allows "
                f"(weight {d_out}x{d_in}, at most {min(d_in, d_out)})"
            )
        self.in_features, self.out_features, self.r = d_in, d_out, cfg.r
        self.s = cfg.alpha / cfg.r
        self.recompute = cfg.recompute
        self.A = nn.Parameter(torch.empty(cfg.r, d_in))
        self.B = nn.Parameter(torch.zeros(d_out, cfg.r))
        n = max(1, int(cfg.density * d_out * d_in))
        self.register_buffer("support", random_support(d_out * d_in, n, cfg.seed, key))
        self.values = nn.Parameter(torch.zeros(n))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None

    @classmethod
    @torch.no_grad()
    def from_linear(cls, lin: nn.Linear, cfg: SLTrainWeightsConfig, key: str) -> SLTrainLinear:
        """The replacement of ``lin`` (its device and dtype), initialised by ``cfg.init``."""
        w0 = lin.weight.detach()
        new = cls(lin.in_features, lin.out_features, cfg, key, lin.bias is not None)
        if cfg.init == "svd":
            u, sig, vh = thin_svd(w0.float())  # its sign convention: B, A machine-independent
            root = (sig[: cfg.r] / new.s).sqrt()
            new.B.copy_(u[:, : cfg.r] * root)
            new.A.copy_(root[:, None] * vh[: cfg.r])
            residual = w0.float() - new.s * new.B @ new.A
            new.values.copy_(residual.reshape(-1)[new.support.long()])
            if lin.bias is not None:
                new.bias.copy_(lin.bias.detach().float())
        else:  # the paper's pre-training init
            kaiming_(new.A)
            bound = 1.0 / math.sqrt(lin.in_features)
            nn.init.uniform_(new.values, -bound, bound)
            if new.bias is not None:
                nn.init.uniform_(
                    new.bias, -1.0 / math.sqrt(lin.out_features), 1.0 / math.sqrt(lin.out_features)
                )
        return new.to(device=w0.device, dtype=w0.dtype)

    def sparse(self) -> Tensor:
        """The dense ``S (d_out x d_in)`` (for ``densify``, tests and inspection)."""
        return scatter_dense(self.values, self.support, self.out_features, self.in_features)

    @property
    def weight(self) -> Tensor:
        """The dense ``s B A + S``, computed on each read (code that reads ``.weight``)."""
        return self.s * self.B @ self.A + self.sparse()

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(F.linear(x, self.A), self.B) * self.s
        if self.recompute and torch.is_grad_enabled():
            shape = (self.out_features, self.in_features)
            y = y + _SparseApply.apply(x, self.values, self.support, shape, LINEAR_OPS)
        else:
            y = y + F.linear(x, self.sparse())
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
            f"s={self.s:g}, nnz={self.values.numel()}, bias={self.bias is not None}"
        )


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def replace_weights(model: nn.Module, cfg: SLTrainWeightsConfig) -> list[str]:
    """Replace every ``nn.Linear`` whose name matches ``cfg.targets`` by an ``SLTrainLinear``
    (in place); returns the replaced names. A pattern matching no Linear is an error."""
    cfg.validate()
    patterns = resolve_targets(cfg.targets)
    inside_hosts = {
        f"{n}.{sub}" if sub else n
        for n, h in model.named_modules()
        if isinstance(h, Host)
        for sub, _ in h.named_modules()
    }
    names: list[str] = []
    used: set[str] = set()
    for name, mod in list(model.named_modules()):
        hit = [p for p in patterns if name_matches(name, p)]
        if not hit or not isinstance(mod, nn.Linear):
            continue
        if name in inside_hosts:
            raise ValueError(f"layer {name} carries an adapter: replace weights before inject")
        _check_not_inside_mha(model, name)
        _set(model, name, SLTrainLinear.from_linear(mod, cfg, name))
        names.append(name)
        used.update(hit)
    unused = [p for p in patterns if p not in used]
    if unused:
        raise ValueError(f"sltrain weights: no nn.Linear layer matches {unused}")
    return names


def init_error(lin: nn.Linear, new: SLTrainLinear) -> float:
    """``||W0 - (s B A + S)||_F / ||W0||_F``: what the replacement lost at init."""
    with torch.no_grad():
        w0 = lin.weight.float()
        return float((w0 - new.weight.float()).norm() / w0.norm().clamp_min(1e-12))


@torch.no_grad()
def densify(model: nn.Module) -> list[str]:
    """Turn every ``SLTrainLinear`` back into an ``nn.Linear`` with ``W = s B A + S``."""
    names = [n for n, m in model.named_modules() if isinstance(m, SLTrainLinear)]
    for name in names:
        m = model.get_submodule(name)
        lin = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        lin = lin.to(device=m.A.device, dtype=m.A.dtype)
        lin.weight.copy_(m.weight)
        if m.bias is not None:
            lin.bias.copy_(m.bias)
        _set(model, name, lin)
    return names
