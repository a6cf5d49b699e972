"""LoCA (location-aware cosine adaptation): the update is the inverse 2-D DCT of a sparse spectrum.

``dW = s * iDCT2(S) = s * C_out^T S C_in`` with ``C_d`` the orthonormal DCT-II matrix of size
``d`` and ``S (d_out x d_in)`` zero except ``n_coef`` trainable coefficients ``c`` at
locations ``(u_i, v_i)``: ``dW = s * C_out[u]^T diag(c) C_in[v]`` (gathered rows; cost
``n_coef d_out d_in`` per call, then ``delta(x) = dW x``; with few tokens and no gradient
capture pending, ``x -> C_in[v] x -> c * . -> C_out[u]^T .`` instead, the cheaper of the two).
Locations start at ``n_coef`` distinct random frequencies and are buffers saved with the
adapter. Location re-selection **(reading of the paper's alternating scheme)**: while
``relocate_every > 0`` and fewer than ``relocate_until`` optimizer steps have passed, every
``relocate_every`` steps a hook on ``dW`` captures that step's weight gradient ``G_W`` (the
other steps take the cheaper path) and ``after_step`` scores, for each coefficient, the
move to each of its 4 neighbour frequencies keeping its value. Moving ``c`` from cell ``p``
to ``q`` changes ``S`` by ``c (e_q - e_p)``, a step of size ``sqrt(2) |c|``, not an
infinitesimal one, so the loss change is scored to second order:
``dL ~ c (g[q] - g[p]) + h c^2``, ``g = dL/dS = s C_out G_W C_in^T``, ``h`` the loss's
curvature along one spectral coefficient (``d^2L/dS_q^2``, taken equal for every cell;
cross terms dropped). ``h`` is a secant (Barzilai-Borwein) estimate from the coefficients'
own gradients at consecutive steps, ``h = sum (g_t - g_{t-1}).(c_t - c_{t-1}) /
sum ||c_t - c_{t-1}||^2`` over the steps of the window, and ``g[p]`` is carried to the
coefficients' values after the step (``+ h dc``). A coefficient moves to its best free
neighbour only when that score is negative; with no positive curvature estimate yet,
nothing moves. On a quadratic loss with ``H_S = h I`` (e.g. ``0.5 ||dW - T||^2``, where
``h = s^2``) the score is the exact loss change, so a relocation never raises it (a test).
The first-order score alone (``h = 0``, this file before the fix) predicts a gain for
almost every trained coefficient and moved them to worse cells (measured on such a
quadratic: 29.9 -> 30.8). The authors' code instead treats each location as a continuous
parameter trained by Adam on a clamped central difference ``c (g[u+1] - g[u-1]) / 2`` for
the first part of training; lorakit keeps discrete moves and scores them to second order.
Trainable: ``n_coef`` per layer. Mergeable. Defaults **(reading)**: n_coef=1000,
alpha=1 (``s = alpha``; ``r`` is unused), relocate_every=20, relocate_until=1000, c = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo
from .randlora import dense_is_cheaper

NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1))


@dataclass
class LoCAConfig(AdapterConfig):
    alpha: float = 1.0
    n_coef: int = 1000
    relocate_every: int = 20
    relocate_until: int = 1000
    method = "loca"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.n_coef, int) or self.n_coef < 1:
            raise ValueError(f"loca: n_coef must be a positive integer, got {self.n_coef!r}")
        if self.relocate_every < 0 or self.relocate_until < 0:
            raise ValueError("loca: relocate_every and relocate_until must be >= 0")


def dct_matrix(n: int) -> Tensor:
    """Orthonormal DCT-II: ``C[k, i] = sqrt(2/n) c_k cos(pi (2i+1) k / 2n)``, ``c_0 = 1/sqrt2``."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None]
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.float()


class DCTBank(nn.Module):
    """DCT matrices by size, shared by every slot of an inject call (not saved)."""

    def __init__(self):
        super().__init__()

    def get(self, n: int) -> Tensor:
        name = f"C{n}"
        if name not in self._buffers:
            self.register_buffer(name, dct_matrix(n), persistent=False)
        return self._buffers[name]


class LoCA(Method):
    name = "loca"
    test_hyper = {"n_coef": 24, "alpha": 0.5}
    formula = "n_coef per layer (DCT matrices shared; locations are saved buffers)"
    # the relocation's curvature sums came later: files saved before them still load
    optional_state = frozenset({"sec_prev", "sec_valid", "sec_sum"})

    def __init__(self, cfg: LoCAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.s = float(cfg.alpha)
        d_out, d_in, n = self.d_out, self.d_in, cfg.n_coef
        if n > d_out * d_in:
            raise ValueError(
                f"loca: n_coef={n} is larger than layer {slot.name} allows "
                f"(weight {d_out}x{d_in}, at most {d_out * d_in})"
            )
        bank = slot.context.setdefault("loca_dct", DCTBank())
        bank.get(d_out), bank.get(d_in)
        self.dct = bank
        flat = torch.randperm(d_out * d_in)[:n]
        self.register_buffer("loc_u", flat // d_in)
        self.register_buffer("loc_v", flat % d_in)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("grad_w", torch.zeros(0), persistent=False)
        # secant curvature: the previous step's (coef, grad) pair, whether it is valid, and
        # the running sums (sum y.d, sum d.d); persistent, so a resumed run scores alike
        self.register_buffer("sec_prev", torch.zeros(2, n))
        self.register_buffer("sec_valid", torch.zeros((), dtype=torch.bool))
        self.register_buffer("sec_sum", torch.zeros(2, dtype=torch.float64))
        self._point: Tensor | None = None  # coef at this step's training forward
        self.coef = nn.Parameter(torch.zeros(n))
        self.every, self.until = cfg.relocate_every, cfg.relocate_until
        self._steps_key, self._steps_val = None, 0

    def check_rank(self, r: int, limit: int, slot: SlotInfo) -> None:
        return None  # r is unused; n_coef is checked instead

    def spectrum(self) -> Tensor:
        """The dense ``S (d_out x d_in)`` (for tests and inspection)."""
        s = torch.zeros(self.d_out, self.d_in, dtype=self.coef.dtype, device=self.coef.device)
        s[self.loc_u, self.loc_v] = self.coef.detach()
        return s

    def step_count(self) -> int:
        """``steps`` as an int, re-read only when the buffer changed (no GPU sync per call)."""
        key = (id(self.steps), self.steps._version)
        if key != self._steps_key:
            self._steps_key, self._steps_val = key, int(self.steps)
        return self._steps_val

    def relocating(self) -> bool:
        return self.every > 0 and self.step_count() < self.until

    def capturing(self) -> bool:
        """True on the step whose ``after_step`` relocates: only then is the dense weight
        gradient needed (the other steps take the cheaper path)."""
        return self.relocating() and (self.step_count() + 1) % self.every == 0

    def delta_weight(self) -> Tensor:
        c_out, c_in = self.dct.get(self.d_out), self.dct.get(self.d_in)
        return self.s * (c_out[self.loc_u].T * self.coef) @ c_in[self.loc_v]

    def delta(self, x: Tensor) -> Tensor:
        x = self.drop(x)
        capturing = self.capturing()  # the path depends on state only, never on train/eval
        if self._point is None and self.coef.requires_grad and torch.is_grad_enabled():
            if self.relocating():  # the first forward of a step: where its gradient is taken
                self._point = self.coef.detach().float().clone()
        n = self.coef.numel()
        if not capturing and not dense_is_cheaper(
            x, self.ops.channel_dim, n, self.d_out, self.d_in
        ):
            c_out, c_in = self.dct.get(self.d_out), self.dct.get(self.d_in)
            z = self.ops.scale_channels(self.ops.down(x, c_in[self.loc_v]), self.coef)
            return self.ops.mix(z, c_out[self.loc_u].T) * self.s
        dw = self.delta_weight()
        if capturing and self.training and dw.requires_grad:
            dw.register_hook(self._capture)  # relocation needs the dense weight gradient
        return self.ops.down(x, dw)

    @torch.no_grad()
    def _capture(self, grad: Tensor) -> None:
        g = grad.detach().float()
        self.grad_w = g if self.grad_w.shape != g.shape else self.grad_w + g

    def curvature(self) -> float | None:
        """The secant estimate ``h`` of ``d^2L/dS^2`` per coefficient, or None (no positive
        estimate yet)."""
        num, den = (float(v) for v in self.sec_sum)
        h = num / den if den > 0 else float("nan")
        return h if math.isfinite(h) and h > 0 else None

    @torch.no_grad()
    def _secant(self, point: Tensor | None) -> None:
        """Add the pair (previous step, this step) of (coef, grad) to the curvature sums."""
        grad = self.coef.grad
        if point is None or grad is None or not bool(torch.isfinite(grad).all()):
            self.sec_valid.fill_(False)
            return
        grad = grad.detach().float()
        if bool(self.sec_valid):
            d = point - self.sec_prev[0]
            y = grad - self.sec_prev[1]
            self.sec_sum += torch.stack([(y * d).sum(), (d * d).sum()]).double()
        self.sec_prev.copy_(torch.stack([point, grad]))
        self.sec_valid.fill_(True)

    @torch.no_grad()
    def after_step(self) -> None:
        if not self.relocating():
            return
        point, self._point = self._point, None
        self._secant(point)
        self.steps += 1
        if self.step_count() % self.every == 0 and self.grad_w.numel():
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():  # every rank moves alike
                dist.all_reduce(self.grad_w)
                self.grad_w /= dist.get_world_size()  # the mean, as DDP's coef gradient
            h = self.curvature()
            if h is not None and point is not None:
                shift = (self.coef.detach().float() - point) * h  # g[p] after this step
                if self.relocate(self.grad_w, curvature=h, shift=shift):
                    self.sec_valid.fill_(False)  # no secant across a move
        self.grad_w = torch.zeros(0, device=self.coef.device)

    @torch.no_grad()
    def relocate(self, grad_w: Tensor, curvature: float, shift: Tensor | None = None) -> int:
        """Move coefficients to their best free neighbour frequency; returns moves made.

        ``grad_w``: ``dL/dW`` of the slot (the weight gradient). ``curvature``: ``h`` of the
        score ``c (g[q] - g[p]) + h c^2`` (``after_step`` passes the secant estimate).
        ``shift``: added to ``g[p]`` of the occupied cells (the gradient's change since
        ``grad_w`` was taken). All coefficients are scored at once; when two pick the same
        free cell, the one with the larger estimated loss decrease gets it."""
        c_out, c_in = self.dct.get(self.d_out), self.dct.get(self.d_in)
        g_s = self.s * (c_out @ grad_w.to(c_out.dtype) @ c_in.T)  # dL/dS, frequency space
        u, v, coef = self.loc_u, self.loc_v, self.coef.detach().float()
        step = torch.tensor(NEIGHBOURS, device=u.device)
        nu, nv = u[None] + step[:, :1], v[None] + step[:, 1:]  # (4, n) candidate cells
        inside = (nu >= 0) & (nu < self.d_out) & (nv >= 0) & (nv < self.d_in)
        nu, nv = nu.clamp(0, self.d_out - 1), nv.clamp(0, self.d_in - 1)
        occupied = torch.zeros(self.d_out, self.d_in, dtype=torch.bool, device=u.device)
        occupied[u, v] = True
        here = g_s[u, v] if shift is None else g_s[u, v] + shift.to(g_s.dtype)
        est = coef[None] * (g_s[nu, nv] - here[None]) + float(curvature) * coef[None] ** 2
        est = est.masked_fill(~inside | occupied[nu, nv], float("inf"))
        best, which = est.min(0)
        movers = torch.nonzero(best < 0).flatten()
        movers = movers[torch.argsort(best[movers])]  # most promising first
        cols = torch.arange(u.numel(), device=u.device)
        tu, tv = nu[which, cols][movers], nv[which, cols][movers]
        flat = tu * self.d_in + tv
        first = torch.ones_like(flat, dtype=torch.bool)
        seen: set[int] = set()
        for j, f in enumerate(flat.tolist()):  # keep the first claim of each target cell
            first[j] = f not in seen
            seen.add(f)
        movers, tu, tv = movers[first], tu[first], tv[first]
        self.loc_u[movers], self.loc_v[movers] = tu, tv
        return int(movers.numel())

    def extra_repr(self) -> str:
        return f"d_out={self.d_out}, d_in={self.d_in}, n_coef={self.coef.numel()}, s={self.s:g}"
