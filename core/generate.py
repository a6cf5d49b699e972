"""ICM-LoRA-style adapter generation (Shao et al. 2025, "In-Context Meta LoRA Generation").

A conditional VAE learns the distribution of adapter weights ``theta`` given a task
condition ``c``, from a bank of adapters of related tasks; a new task then gets an adapter
without training: ``theta = decoder(z = 0, c(description))``.

Pieces (shapes: ``N`` bank adapters, ``D`` adapter numbers, ``C`` condition size,
``Z`` latent size):

- ``AdapterLayout``: the tensors of a saved adapter folder as one vector (``D``) and back,
  in a fixed key order; ``write`` produces a folder that ``load_adapter`` reads.
- ``embed_description``: the condition ``c`` (``C``). The paper conditions on in-context
  task vectors (an LLM's hidden states on a few examples of the task); here ``c`` is a
  hand-made embedding of the description text: signed hashed words plus, for each number
  in it, ``[x, sin(k x), cos(k x)]`` for ``k`` in ``NUMBER_FREQS`` (so a held-out number
  lands between the bank's numbers). Any ``text -> vector`` function can replace it.
- ``CVAE``: encoder ``q(z | theta, c) = N(mu, diag(exp(logvar)))``, decoder
  ``p(theta | z, c) = N(dec(z, c), sigma^2 I)``, prior ``N(0, I)``. Weights are
  standardised by the bank mean and one scalar std before the encoder.
- ``elbo``: per adapter, the negative ELBO up to a constant,
  ``sum_d (theta_d - dec_d)^2 + beta * KL``, with
  ``KL = 1/2 sum_j (exp(logvar_j) + mu_j^2 - 1 - logvar_j)``, averaged over the batch
  (``z = mu + exp(logvar / 2) * eps``).

Choices (named hyper-parameters of ``fit_generator``): ``latent`` (Z), ``hidden``,
``beta`` (default 1, the plain ELBO: with ``beta = 1e-3`` the decoder carried the task in
``z`` rather than in ``c``, and decoding at ``z = 0`` landed near the bank mean: bank
reconstruction error 0.9 of the mean's against 0.04 with ``beta = 1`` on the test's toy
family), ``steps``, ``lr``. Bank adapters should share their initialisation (same
``A`` seed): LoRA's ``B A`` has many equivalent factorisations, and a common start keeps
the bank's weights on one smooth branch that a generator can interpolate.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .io import CONFIG_NAME, WEIGHTS_NAME, atomic_write

NUMBER_FREQS = (1.0, 2.0, 4.0)
_NUMBER = re.compile(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?")


@dataclass(frozen=True)
class AdapterLayout:
    """Key order and shapes of an adapter's tensors, and the folder they came from."""

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    template: Path

    @classmethod
    def from_folder(cls, directory: str | Path, keys: Sequence[str] | None = None) -> AdapterLayout:
        """All floating tensors of the folder (or ``keys``), sorted by key."""
        directory = Path(directory)
        tensors = load_file(str(directory / WEIGHTS_NAME))
        chosen = sorted(keys) if keys is not None else sorted(
            k for k, t in tensors.items() if t.is_floating_point()
        )
        missing = [k for k in chosen if k not in tensors]
        if missing:
            raise ValueError(f"{directory / WEIGHTS_NAME}: no tensor {missing[0]!r}")
        return cls(tuple(chosen), tuple(tuple(tensors[k].shape) for k in chosen), directory)

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def flatten(self, tensors: dict[str, Tensor]) -> Tensor:
        """``(D,)`` float32: the tensors of ``keys`` raveled and concatenated."""
        for k, s in zip(self.keys, self.shapes, strict=True):
            if k not in tensors:
                raise ValueError(f"adapter has no tensor {k!r}: not the bank's layout")
            if tuple(tensors[k].shape) != s:
                raise ValueError(f"tensor {k} has shape {tuple(tensors[k].shape)}, layout {s}")
        return torch.cat([tensors[k].detach().float().reshape(-1) for k in self.keys])

    def read(self, directory: str | Path) -> Tensor:
        path = Path(directory) / WEIGHTS_NAME
        try:
            return self.flatten(load_file(str(path)))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def unflatten(self, vector: Tensor) -> dict[str, Tensor]:
        if vector.shape != (self.size,):
            raise ValueError(f"vector has shape {tuple(vector.shape)}, layout needs ({self.size},)")
        parts = vector.detach().split([math.prod(s) for s in self.shapes])
        return {k: p.reshape(s).clone() for k, p, s in zip(self.keys, parts, self.shapes, strict=True)}

    def write(self, vector: Tensor, directory: str | Path) -> Path:
        """A folder like ``template`` with the layout's tensors taken from ``vector``
        (other tensors and the config copied), in the template's dtypes."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = load_file(str(self.template / WEIGHTS_NAME))
        for k, t in self.unflatten(vector.cpu()).items():
            tensors[k] = t.to(tensors[k].dtype).contiguous()
        config = (self.template / CONFIG_NAME).read_text()
        atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, p))
        atomic_write(directory / CONFIG_NAME, lambda p: Path(p).write_text(config))
        return directory


def embed_description(text: str, dim: int = 32, numbers: int = 2) -> Tensor:
    """``(dim,)`` condition vector: the first ``dim - numbers * (1 + 2 * len(NUMBER_FREQS))``
    entries are signed hashed word counts; then, for the first ``numbers`` numbers in the
    text, ``[x, sin(k x), cos(k x) for k in NUMBER_FREQS]`` (zeros when absent)."""
    per = 1 + 2 * len(NUMBER_FREQS)
    words = dim - numbers * per
    if words < 1:
        raise ValueError(f"embed_description: dim {dim} is too small for {numbers} numbers")
    out = torch.zeros(dim)
    for w in re.findall(r"[a-z]+", text.lower()):
        h = zlib.crc32(w.encode())
        out[h % words] += 1.0 if (h >> 16) & 1 else -1.0
    for i, s in enumerate(_NUMBER.findall(text)[:numbers]):
        x = float(s)
        feats = [x] + [f(k * x) for k in NUMBER_FREQS for f in (math.sin, math.cos)]
        out[words + i * per: words + (i + 1) * per] = torch.tensor(feats)
    return out


class CVAE(nn.Module):
    """``q(z | theta, c)`` and ``p(theta | z, c)`` as two MLPs on standardised weights."""

    def __init__(self, dim: int, cond: int, latent: int = 8, hidden: int = 128):
        super().__init__()
        self.latent = latent
        self.enc = nn.Sequential(nn.Linear(dim + cond, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(
            nn.Linear(latent + cond, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim),
        )
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(()))

    def encode(self, theta_n: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.enc(torch.cat([theta_n, c], -1)).chunk(2, -1)
        return mu, logvar

    def decode(self, z: Tensor, c: Tensor) -> Tensor:
        return self.dec(torch.cat([z, c], -1))

    def generate(self, c: Tensor) -> Tensor:
        """The adapter vector at the prior's mean ``z = 0``, in the bank's units."""
        z = torch.zeros(*c.shape[:-1], self.latent, device=c.device)
        return self.decode(z, c) * self.std + self.mean


def elbo(model: CVAE, theta_n: Tensor, c: Tensor, beta: float = 1.0,
         eps: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(loss, recon, kl)``, batch means: ``loss = recon + beta * kl`` (module docstring)."""
    mu, logvar = model.encode(theta_n, c)
    eps = torch.randn_like(mu) if eps is None else eps
    z = mu + torch.exp(0.5 * logvar) * eps
    recon = (model.decode(z, c) - theta_n).pow(2).sum(-1).mean()
    kl = 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(-1).mean()
    return recon + beta * kl, recon, kl


@dataclass
class AdapterGenerator:
    """A trained CVAE with the layout it writes and the condition function it reads."""

    cvae: CVAE
    layout: AdapterLayout
    embed: Callable[[str], Tensor]

    @torch.no_grad()
    def vector(self, description: str) -> Tensor:
        return self.cvae.eval().generate(self.embed(description)[None])[0]

    def generate(self, description: str, directory: str | Path) -> Path:
        """The adapter folder for ``description`` (``load_adapter`` reads it)."""
        return self.layout.write(self.vector(description), directory)


def fit_generator(folders: Sequence[str | Path], descriptions: Sequence[str], *,
                  embed: Callable[[str], Tensor] = embed_description, latent: int = 8,
                  hidden: int = 128, beta: float = 1.0, steps: int = 1000, lr: float = 2e-3,
                  seed: int = 0) -> AdapterGenerator:
    """Train the CVAE on the bank ``folders`` (one adapter per description) by the ELBO,
    full batch, Adam; every folder must have the first one's layout."""
    if len(folders) != len(descriptions) or len(folders) < 2:
        raise ValueError("fit_generator: need at least 2 folders, one description each")
    layout = AdapterLayout.from_folder(folders[0])
    theta = torch.stack([layout.read(f) for f in folders])
    c = torch.stack([embed(d) for d in descriptions])
    torch.manual_seed(seed)
    cvae = CVAE(layout.size, c.shape[1], latent, hidden)
    cvae.mean.copy_(theta.mean(0))
    cvae.std.copy_((theta - cvae.mean).std().clamp_min(1e-8))
    theta_n = (theta - cvae.mean) / cvae.std
    opt = torch.optim.Adam(cvae.parameters(), lr=lr)
    for _ in range(steps):
        loss, _, _ = elbo(cvae, theta_n, c, beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return AdapterGenerator(cvae.eval(), layout, embed)



BANK_GENERATOR_DIR = "generator"  # a bank's generator folder, next to its entries


def fit_bank_generator(bank, embed: Callable[[str], Tensor], condition: str, *,
                       steps: int = 1500, latent: int = 8, hidden: int = 128, beta: float = 1.0,
                       lr: float = 2e-3, seed: int = 0) -> dict:  # fmt: skip
    """Fit the CVAE on a bank's finished adapters (``bank.entries``: ``(task, folder)`` with
    ``task.description`` and ``folder/adapter``) and save it to ``bank.root/generator``
    (``condition``: the name of ``embed``, recorded); returns its summary, with the mean
    bank reconstruction error relative to the bank mean's (CLIP and Whisper banks share it)."""
    if len(bank.entries) < 2:
        raise ValueError(f"the bank at {bank.root} has 1 finished adapter; the generator needs 2+")
    folders = [d / "adapter" for _, d in bank.entries]
    descs = [t.description for t, _ in bank.entries]
    gen = fit_generator(folders, descs, embed=embed, latent=latent, hidden=hidden,
                        beta=beta, steps=steps, lr=lr, seed=seed)  # fmt: skip
    theta = torch.stack([gen.layout.read(f) for f in folders])
    mean = theta.mean(0)
    errs = [float((gen.vector(d) - t).norm() / (mean - t).norm().clamp_min(1e-12))
            for d, t in zip(descs, theta, strict=True)]  # fmt: skip
    info = {"bank": len(folders), "dim": gen.layout.size, "steps": steps, "latent": latent,
            "hidden": hidden, "beta": beta, "lr": lr, "seed": seed,
            "bank_error_vs_mean": sum(errs) / len(errs)}  # fmt: skip
    save_generator(gen, Path(bank.root) / BANK_GENERATOR_DIR, {**info, "condition": condition})
    return info


def load_bank_generator(root: str | Path, embed: Callable[[str], Tensor]) -> AdapterGenerator:
    """The generator ``fit_bank_generator`` saved in the bank at ``root``, or one line."""
    root = Path(root)
    if not (root / BANK_GENERATOR_DIR).is_dir():
        raise ValueError(f"the bank at {root} has no trained generator; run "
                         f"`lorakit generate train --bank {root}`")  # fmt: skip
    return load_generator(root / BANK_GENERATOR_DIR, embed=embed)[0]


GENERATOR_FILE = "generator.safetensors"
TEMPLATE_DIR = "template"


def save_generator(gen: AdapterGenerator, directory: str | Path, meta: dict | None = None) -> Path:
    """Write ``gen`` to ``directory``: ``generator.safetensors`` (the CVAE's tensors, never
    pickle; its sizes, the layout and ``meta`` as JSON metadata) and ``template/`` (a copy
    of the layout's template adapter folder), so the folder alone can generate adapters."""
    import json

    directory = Path(directory)
    template = directory / TEMPLATE_DIR
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        data = (gen.layout.template / name).read_bytes()
        atomic_write(template / name, lambda p, d=data: Path(p).write_bytes(d))
    cvae = gen.cvae
    header = {
        "dim": gen.layout.size, "cond": cvae.enc[0].in_features - gen.layout.size,
        "latent": cvae.latent, "hidden": cvae.enc[0].out_features,
        "keys": list(gen.layout.keys), "shapes": [list(s) for s in gen.layout.shapes],
        "meta": meta or {},
    }  # fmt: skip
    tensors = {k: v.detach().contiguous() for k, v in cvae.state_dict().items()}
    atomic_write(directory / GENERATOR_FILE,
                 lambda p: save_file(tensors, p, metadata={"lorakit_generator": json.dumps(header)}))  # fmt: skip
    return directory


def load_generator(directory: str | Path, embed: Callable[[str], Tensor] = embed_description
                   ) -> tuple[AdapterGenerator, dict]:  # fmt: skip
    """``(generator, meta)`` from a folder ``save_generator`` wrote; a folder that is not
    one (or a damaged file) is a one-line ``ValueError`` naming it."""
    import json

    from safetensors import safe_open

    directory = Path(directory)
    path = directory / GENERATOR_FILE
    if not path.is_file():
        raise ValueError(f"no generator at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {})["lorakit_generator"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
        cvae = CVAE(header["dim"], header["cond"], header["latent"], header["hidden"])
        cvae.load_state_dict(tensors)
    except Exception as e:  # noqa: BLE001 - any damage is the same one-line message
        raise ValueError(f"{path} is not a readable lorakit generator ({type(e).__name__})") from None
    layout = AdapterLayout(tuple(header["keys"]), tuple(tuple(s) for s in header["shapes"]),
                           directory / TEMPLATE_DIR)  # fmt: skip
    return AdapterGenerator(cvae.eval(), layout, embed), header["meta"]
