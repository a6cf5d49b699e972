"""The ``trainer:`` section of every pipeline config, checked before anything is made.

Hardware and precision mistakes become one clear ``ValueError`` here (no GPU for
``accelerator: gpu``, an unknown precision or strategy, a bad device count) instead of a
Lightning traceback after data generation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
PRECISION_ALIASES = {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


@dataclass
class TrainerOptions:
    """The ``trainer:`` section of every pipeline config."""

    max_steps: int | None = 100  # optimizer steps (a pipeline may fill in None)
    devices: int | str = 1  # processes per node (int) or "auto"
    nodes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp | ... (Lightning's names)
    accelerator: str = "auto"  # auto | cpu | gpu
    precision: str = "32-true"  # 32-true | bf16-mixed (CPU and GPU) | 16-mixed (GPU)
    accumulate: int = 1  # micro-batches per optimizer step
    log_every: int = 5
    checkpoint_every: int = 50
    seed: int = 0
    progress: bool = True
    resume: bool = True  # continue from checkpoints/last.ckpt when it exists
    grad_clip: float | None = 1.0
    activation_checkpointing: bool = False  # recompute each backbone block in backward

    def validate(self) -> None:
        """Coerce YAML values and reject what Lightning would choke on later."""
        self.validate_light()
        self._check_devices()
        self._check_strategy()

    def validate_light(self) -> None:
        """The checks that need neither torch nor Lightning (run by the CLI before the
        pipeline is imported): integers, precision, accelerator, device count, flags."""
        for name in ("max_steps", "nodes", "accumulate", "log_every", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if value is None and name == "max_steps":
                continue
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(f"trainer.{name} must be an integer, got {value!r}")
            try:
                setattr(self, name, int(value))
            except ValueError:
                raise ValueError(f"trainer.{name} must be an integer, got {value!r}") from None
        for name in ("max_steps", "nodes", "accumulate", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"trainer.{name} must be >= 1, got {value}")
        self.precision = PRECISION_ALIASES.get(str(self.precision), str(self.precision))
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"trainer.precision {self.precision!r} is unknown; choose from {list(PRECISIONS)}"
            )
        self.accelerator = str(self.accelerator).lower()
        if self.accelerator not in ACCELERATORS:
            raise ValueError(
                f"trainer.accelerator {self.accelerator!r} is unknown; "
                f"choose from {list(ACCELERATORS)}"
            )
        self.devices = self._device_count()
        if self.grad_clip is not None:
            try:
                self.grad_clip = float(self.grad_clip)
            except (TypeError, ValueError):
                raise ValueError(f"trainer.grad_clip must be a number, got {self.grad_clip!r}") from None
        for name in ("progress", "resume", "activation_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"trainer.{name} must be true or false")

    def uses_gpu(self) -> bool:
        import torch

        if self.accelerator in ("gpu", "cuda"):
            return True
        return self.accelerator == "auto" and torch.cuda.is_available()

    def _device_count(self) -> int | str:
        d = self.devices
        if isinstance(d, str) and d.strip().lstrip("-").isdigit():
            d = int(d)
        if d != "auto" and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
            raise ValueError(f"trainer.devices must be a positive integer or 'auto', got {d!r}")
        return d

    def _check_devices(self) -> None:
        import torch

        d = self.devices
        if self.accelerator in ("gpu", "cuda"):
            n = torch.cuda.device_count()
            if n == 0:
                raise ValueError(
                    "trainer.accelerator is 'gpu' but no CUDA GPU is visible on this machine; "
                    "use --accelerator cpu (or auto)"
                )
            if isinstance(d, int) and d > n:
                raise ValueError(f"trainer.devices={d} but only {n} GPU(s) are visible")
        if self.accelerator == "mps" and not torch.backends.mps.is_available():
            raise ValueError("trainer.accelerator is 'mps' but MPS is not available here")
        if self.precision == "16-mixed" and not self.uses_gpu():
            raise ValueError(
                "trainer.precision 16-mixed needs a GPU; on the CPU use bf16-mixed or 32-true"
            )

    def _check_strategy(self) -> None:
        from lightning.pytorch.strategies import StrategyRegistry

        if self.strategy == "fsdp" and self.devices == 1 and self.nodes == 1:
            raise ValueError(
                "trainer.strategy fsdp shards the model across processes, and this run has "
                "one: set trainer.devices >= 2, or use strategy auto"
            )

        valid = ["auto", *StrategyRegistry.available_strategies()]
        if self.strategy not in valid:
            names = [s for s in valid if "_" not in s or s.startswith("ddp_")][:12]
            raise ValueError(f"trainer.strategy {self.strategy!r} is unknown; e.g. {names}")


def trainer_options(section: dict | None) -> TrainerOptions:
    """The validated ``trainer:`` section (unknown keys are named)."""
    section = dict(section or {})
    valid = {f.name for f in fields(TrainerOptions)}
    unknown = sorted(set(section) - valid)
    if unknown:
        raise ValueError(f"trainer: unknown key(s) {unknown}; valid: {sorted(valid)}")
    opts = TrainerOptions(**section)
    opts.validate()
    return opts
