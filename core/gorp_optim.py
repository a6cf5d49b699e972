"""GORP's optimizer: GaLore-style projected Adam on full weights, plain Adam on LoRA.

lorakit's reading of GORP (METHODS.md, "GORP"); the paper publishes no code.

Full weights (group ``gorp=True``): a weight's gradient viewed as ``G`` (``m x n``,
transposed when it has more rows than columns, so ``m <= n``) is projected,
``R = P^T G`` (``r_g x n``), with ``P`` (``m x r_g``, orthonormal) the top-``r_g`` left
singular vectors of ``G``, refreshed every ``T`` steps. Adam's two moments live in the
``r_g x n`` space; the update is ``W <- W - lr * P adam(R)``. As in GaLore, the moments
are kept when ``P`` is refreshed (no rotation into the new basis), and no extra scale
factor is applied to the projected update (METHODS.md gives none).

Across tasks, ``end_task()`` lifts each weight's first moment (``P M1``, ``m x n``), keeps
its top left singular directions up to the energy fraction ``energy_cl`` and appends them
to an orthonormal basis ``Q`` (``m x k``). Later ``P`` is taken from ``G - Q Q^T G`` (inside
the orthogonal complement of ``Q``), so ``Q^T dW = 0``: new full-rank updates avoid the
directions earlier tasks used. Moments and step counters restart with each task.

When the subspace is the whole allowed space (``r_g >= m`` and no ``Q``), ``P`` is the
identity and is not stored: the update is then exactly ``torch.optim.Adam`` on ``W``.

LoRA parameters (group ``gorp=False``) get plain Adam with the same hyper-parameters.
``state_dict`` / ``load_state_dict`` keep every tensor bit-exactly (``P``, ``Q``, moments,
steps), so an interrupted run resumes identically.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .method import pair_signs


def _as_matrix(t: Tensor) -> tuple[Tensor, bool]:
    """A ``(m, n)`` view with ``m <= n`` and whether it is the transpose of the weight."""
    w = t.reshape(t.shape[0], -1)
    return (w.T, True) if w.shape[0] > w.shape[1] else (w, False)


def complement(q: Tensor, m: int) -> Tensor:
    """An orthonormal basis ``(m, m - k)`` of the complement of ``Q``'s columns."""
    if q.shape[1] == 0:
        return torch.eye(m, dtype=q.dtype, device=q.device)
    full, _ = torch.linalg.qr(q, mode="complete")
    return full[:, q.shape[1] :]


def projector(g: Tensor, q: Tensor, r_g: int) -> Tensor | None:
    """``P`` for gradient ``g`` (``m x n``): top-``r_g`` left singular vectors of the part
    of ``g`` outside ``Q``, with columns exactly in ``Q``'s complement. ``None`` means the
    identity (no ``Q`` and ``r_g >= m``). Column signs as in ``thin_svd``
    (``pair_signs``): the moments are kept across refreshes, so a column flipped by LAPACK's
    machine-dependent sign choice would change the run."""
    m, k = g.shape[0], q.shape[1]
    if k == 0 and r_g >= m:
        return None
    basis = complement(q, m)  # (m, m - k)
    if r_g >= m - k:
        return basis.contiguous()
    u = torch.linalg.svd(basis.T @ g, full_matrices=False)[0]
    p = basis @ u[:, :r_g]
    return (p * pair_signs(p)).contiguous()


def energy_directions(lifted: Tensor, q: Tensor, energy: float) -> Tensor:
    """Top left singular directions of ``lifted`` (outside ``Q``) holding ``energy`` of its
    squared singular values, orthonormalised against ``Q``; ``(m, k_new)``."""
    m = lifted.shape[0]
    rest = lifted - q @ (q.T @ lifted)
    u, s, _ = torch.linalg.svd(rest, full_matrices=False)
    total = float((s * s).sum())
    room = m - q.shape[1]
    if total <= 0.0 or room == 0:
        return lifted.new_zeros(m, 0)
    frac = torch.cumsum(s * s, 0) / total
    k = min(int((frac < energy - 1e-12).sum()) + 1, room, u.shape[1])
    new = u[:, :k] - q @ (q.T @ u[:, :k])
    return torch.linalg.qr(new)[0]


class GORPAdam(torch.optim.Optimizer):
    """Adam with GORP's projected full-weight updates (see the module docstring).

    full_params: weights trained full-rank (2-D or more; a Conv2d kernel is flattened).
    lora_params: adapter parameters, plain Adam. r_g: projection rank; T: refresh interval
    of ``P``; energy_cl: fraction of the lifted first moment's energy kept in ``Q``.
    """

    adapter_name: str | None = None  # the gorp adapter it trains (set by ``make_optimizer``)

    def __init__(
        self,
        full_params,
        lora_params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        r_g: int = 32,
        T: int = 200,
        energy_cl: float = 0.9,
    ):
        full, lora = list(full_params), list(lora_params)
        if not lr > 0:
            raise ValueError(f"gorp: lr must be positive, got {lr!r}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"gorp: betas must be in [0, 1), got {betas!r}")
        if not isinstance(r_g, int) or r_g < 1:
            raise ValueError(f"gorp: r_g must be a positive integer, got {r_g!r}")
        if not isinstance(T, int) or T < 1:
            raise ValueError(f"gorp: T must be a positive integer, got {T!r}")
        if not 0 < energy_cl <= 1:
            raise ValueError(f"gorp: energy_cl must be in (0, 1], got {energy_cl!r}")
        if any(p.dim() < 2 for p in full):
            raise ValueError("gorp: full weights must be matrices (2-D or a conv kernel)")
        if {id(p) for p in full} & {id(p) for p in lora}:
            raise ValueError("gorp: a parameter is both a full weight and a LoRA parameter")
        defaults = dict(lr=lr, betas=betas, eps=eps, r_g=r_g, T=T, energy_cl=energy_cl)
        groups = [{"params": full, "gorp": True}, {"params": lora, "gorp": False}]
        super().__init__([g for g in groups if g["params"]], defaults)

    @staticmethod
    def _adam(group: dict, st: dict, grad: Tensor) -> tuple[Tensor, float]:
        """Advance the moments with ``grad``; return ``(denom, step_size)`` as torch's Adam."""
        b1, b2 = group["betas"]
        st["step"] += 1
        st["exp_avg"].lerp_(grad, 1 - b1)
        st["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
        bc1, bc2 = 1 - b1 ** st["step"], 1 - b2 ** st["step"]
        denom = (st["exp_avg_sq"].sqrt() / math.sqrt(bc2)).add_(group["eps"])
        return denom, group["lr"] / bc1

    def _step_full(self, group: dict, p: Tensor) -> None:
        st = self.state[p]
        g, _ = _as_matrix(p.grad.float())
        m, n = g.shape
        if not st:
            st.update(step=0, q=g.new_zeros(m, 0))
        r_eff = min(group["r_g"], m - st["q"].shape[1])
        if r_eff == 0:
            return  # every direction belongs to earlier tasks: the weight is frozen
        if st["step"] % group["T"] == 0 or "exp_avg" not in st:
            st["proj"] = projector(g, st["q"], r_eff)
            if "exp_avg" not in st:
                st["exp_avg"], st["exp_avg_sq"] = g.new_zeros(r_eff, n), g.new_zeros(r_eff, n)
        proj = st["proj"]
        w, _ = _as_matrix(p.data)
        if proj is None:  # full space: exactly Adam (same ops as torch's single-tensor path)
            denom, step_size = self._adam(group, st, g)
            if w.dtype == torch.float32:
                w.addcdiv_(st["exp_avg"], denom, value=-step_size)
            else:
                w.add_((st["exp_avg"] / denom * -step_size).to(w.dtype))
            return
        denom, step_size = self._adam(group, st, proj.T @ g)
        w.add_((proj @ (st["exp_avg"] / denom)).to(w.dtype), alpha=-step_size)

    def _step_lora(self, group: dict, p: Tensor) -> None:
        st = self.state[p]
        if not st:
            st.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        denom, step_size = self._adam(group, st, p.grad)
        p.data.addcdiv_(st["exp_avg"], denom, value=-step_size)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                (self._step_full if group["gorp"] else self._step_lora)(group, p)
        return loss

    @torch.no_grad()
    def end_task(self, reset_lora: bool = True) -> dict[int, int]:
        """Close a task: grow each full weight's ``Q`` from its lifted first moment, restart
        its moments and projection; restart LoRA moments when ``reset_lora`` (a fresh
        adapter follows). Returns ``{param index: columns of Q}``."""
        sizes, index = {}, 0
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p, {})
                if group["gorp"]:
                    if "exp_avg" in st:
                        proj, m1 = st["proj"], st["exp_avg"]
                        lifted = m1 if proj is None else proj @ m1
                        new = energy_directions(lifted, st["q"], group["energy_cl"])
                        st["q"] = torch.cat([st["q"], new], 1)
                        for key in ("exp_avg", "exp_avg_sq", "proj"):
                            st.pop(key, None)
                        st["step"] = 0
                    sizes[index] = st["q"].shape[1] if "q" in st else 0
                elif reset_lora:
                    self.state.pop(p, None)
                index += 1
        return sizes

    def load_state_dict(self, state_dict: dict) -> None:
        """As torch's, but every state tensor is kept as saved (torch would cast ``P`` and
        ``Q`` to a bf16 weight's dtype), so a resumed run is bit-identical."""
        super().load_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        for idx, saved in state_dict["state"].items():
            p = params[idx]
            for key, value in saved.items():
                if isinstance(value, Tensor):
                    self.state[p][key] = value.detach().clone().to(p.device)

    def memory(self) -> list[dict]:
        """Optimizer-state size of each full weight, in numbers: GORP's moments
        ``2 r_g n`` (plus ``P``: ``m r_g`` and ``Q``: ``m k``) against Adam's ``2 m n``."""
        rows = []
        for group in self.param_groups:
            if not group["gorp"]:
                continue
            for p in group["params"]:
                m, n = sorted((p.shape[0], p[0].numel()))
                k = self.state[p]["q"].shape[1] if "q" in self.state.get(p, {}) else 0
                r = min(group["r_g"], m - k)
                full_space = k == 0 and r >= m
                rows.append(
                    dict(
                        shape=tuple(p.shape), m=m, n=n, r_g=r, q_cols=k,
                        moments=2 * r * n, projection=0 if full_space else m * r,
                        basis=m * k, adam=2 * m * n,
                    )
                )  # fmt: skip
        return rows
