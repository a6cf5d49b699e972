"""SAM for camouflaged objects: adapters (FoRA or LoRA), the fusion head, prompted decoding.

``Sam.forward`` runs under ``torch.no_grad``, so training calls the three parts directly:
``image_encoder`` once per batch, then ``prompt_encoder`` and ``mask_decoder`` per image
(SAM's decoder expects one image embedding per prompt set).

What trains: the adapter tensors injected into the image encoder's ``qkv`` (and, with
``decoder: true``, the decoder's image-side attention projections) plus the fusion head,
which is one of the adapter's ``modules_to_save`` (a trainable copy, saved in the adapter
file). Everything else stays frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from segment_anything.modeling import Sam
from torch import Tensor, nn

from lorakit.core import (
    inject,
    load_adapter,
    make_config,
    read_adapter_config,
    save_adapter,
)

from .config import AdapterSpec
from .fusion import FrequencyFusion, FusedUpscaling

# decoder layers that see the image token grid (FoRA needs a grid; LoRA uses the same set)
DECODER_GRID_LAYERS = (
    r"mask_decoder\.transformer\.layers\.\d+\.cross_attn_token_to_image\.(k_proj|v_proj)",
    r"mask_decoder\.transformer\.layers\.\d+\.cross_attn_image_to_token\.q_proj",
    r"mask_decoder\.transformer\.final_attn_token_to_image\.(k_proj|v_proj)",
)
FUSION_MODULE = "mask_decoder.output_upscaling.fusion"  # inside ``sam``, where we inject
LEGACY_FUSION_FILE = "fusion.safetensors"  # the head beside the adapter, before modules_to_save


@dataclass
class Prompt:
    """Prompts for one image in model-input pixels: points (N, 3) [x, y, label 1/0], box (4,)."""

    points: Tensor | None = None
    box: Tensor | None = None


class SamCOD(nn.Module):
    """forward(images (B, 3, S, S) in 0-255, prompts) -> (logits (B, 1, S, S), features (B, C, S/4, S/4))."""

    def __init__(self, sam: Sam, spec: AdapterSpec, inject_fn=inject, calibration=None):
        """``inject_fn(sam, adapter_config)``: how the adapter goes in (the shared run's
        ``QuantizedBase.inject`` quantizes the base first). ``calibration(self)``: the
        run's batches and loss for this model (``Calibration``), handed to ``inject_fn``
        when the adapter estimates from data before its init (LQ-LoRA's ``fisher: true``)."""
        super().__init__()
        spec.validate()
        self.sam, self.spec = sam, spec
        self.grid = sam.image_encoder.img_size // 16
        decoder = sam.mask_decoder
        fusion = None
        if spec.fusion and spec.method != "none":
            with torch.random.fork_rng(devices=[]):  # placeholder, initialised below
                fusion = FrequencyFusion(decoder.transformer_dim // 8, tuple(spec.fusion_scales))
        decoder.output_upscaling = FusedUpscaling(decoder.output_upscaling, fusion)
        if spec.method != "none":  # after the fusion exists: it is one of modules_to_save
            cfg = self._config()
            extra = ({"calibration": calibration(self)}
                     if calibration is not None and getattr(cfg, "fisher", False) else {})
            self.report = inject_fn(sam, cfg, **extra)
            if fusion is not None:  # drawn after the adapters, as before (same runs per seed)
                init = FrequencyFusion(decoder.transformer_dim // 8, tuple(spec.fusion_scales))
                saved = decoder.output_upscaling.fusion
                for m in (saved.original, *saved.copies.values()):
                    m.load_state_dict(init.state_dict())
        else:
            for p in sam.parameters():
                p.requires_grad_(False)

    def _config(self):
        targets = ("sam-qkv",) + (DECODER_GRID_LAYERS if self.spec.decoder else ())
        hyper = dict(
            r=self.spec.r, alpha=self.spec.alpha, dropout=self.spec.dropout, targets=targets
        )
        if self.spec.fusion:  # the head trains in full and lives in the adapter file
            hyper["modules_to_save"] = (FUSION_MODULE,)
        if self.spec.method == "fora":
            hyper.update(n_bands=self.spec.n_bands, grid=(self.grid, self.grid))
        return make_config(self.spec.method, **hyper, **self.spec.hyper)

    @property
    def fusion(self) -> FrequencyFusion | None:
        return self.sam.mask_decoder.output_upscaling.fusion

    @property
    def size(self) -> int:
        return int(self.sam.image_encoder.img_size)

    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) 0-255 -> image embeddings (B, dim, S/16, S/16)."""
        x = (images - self.sam.pixel_mean) / self.sam.pixel_std
        return self.sam.image_encoder(x)

    def decode(self, embedding: Tensor, prompt: Prompt) -> tuple[Tensor, Tensor]:
        """One image: embedding (1, dim, g, g) -> (logits (1, 1, S/4, S/4), features (1, C, S/4, S/4))."""
        points = None
        if prompt.points is not None and len(prompt.points):
            pts = prompt.points.to(embedding.device, torch.float32)
            points = (pts[None, :, :2], pts[None, :, 2].long())
        box = (
            prompt.box[None].to(embedding.device, torch.float32) if prompt.box is not None else None
        )
        if points is None and box is None:
            raise ValueError("SAM needs a prompt: give points or a box for every image")
        sparse, dense = self.sam.prompt_encoder(points=points, boxes=box, masks=None)
        up = self.sam.mask_decoder.output_upscaling
        logits, _ = self.sam.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        feats, up.features = up.features, None
        return logits, feats

    def forward(self, images: Tensor, prompts: list[Prompt]) -> tuple[Tensor, Tensor]:
        emb = self.embed(images)
        outs = [self.decode(emb[i : i + 1], p) for i, p in enumerate(prompts)]
        low = torch.cat([o[0] for o in outs])
        logits = F.interpolate(low, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits, torch.cat([o[1] for o in outs])

    # ----------------------------------------------------------------- files

    def save(self, directory: str | Path) -> Path:
        """adapter/ = core's adapter files; the fusion head (when used) is in them, under
        ``modules_to_save.mask_decoder.output_upscaling.fusion.*``."""
        directory = Path(directory)
        if self.spec.method == "none":
            raise ValueError("SAM zero-shot (adapter.method: none) has no adapter to save")
        return save_adapter(self.sam, directory)

    @classmethod
    def load(cls, sam: Sam, spec: AdapterSpec, directory: str | Path, restore=None) -> SamCOD:
        """Rebuild the adapted model from a frozen ``sam`` and a saved adapter folder;
        ``restore(sam)`` (a quantized run's base) runs once the modules are those training
        saw, before the adapter is loaded.

        Legacy folders (no ``modules_to_save`` in adapter_config.json) keep the fusion head
        in ``fusion.safetensors`` beside the adapter; that file is read for them.
        """
        directory = Path(directory)
        saved = read_adapter_config(directory).get("modules_to_save", [])
        legacy = spec.fusion and FUSION_MODULE not in saved
        path = directory / LEGACY_FUSION_FILE
        if legacy and not path.is_file():
            raise ValueError(
                f"adapter folder {directory} carries no fusion head (neither modules_to_save "
                f"nor {LEGACY_FUSION_FILE}), but adapter.fusion is true"
            )
        model = cls(sam, AdapterSpec(**{**spec.__dict__, "method": "none", "fusion": False}))
        dec = model.sam.mask_decoder
        fusion = None
        if spec.fusion:
            fusion = FrequencyFusion(dec.transformer_dim // 8, tuple(spec.fusion_scales))
        dec.output_upscaling = FusedUpscaling(dec.output_upscaling.upscaling, fusion)
        if restore is not None:
            restore(model.sam)
        load_adapter(model.sam, directory)  # wraps and loads the fusion when it is saved
        model.spec = spec
        if legacy:
            try:
                fusion.load_state_dict(load_file(str(path)))
            except RuntimeError as e:
                raise ValueError(f"{path} does not fit this model's fusion head: {e}") from None
        return model.eval()
