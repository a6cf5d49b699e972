"""Every method each vision pipeline offers injects into its real-size model, the way the
pipeline injects it, and the adapted model runs: open_clip ViT-B-16 (both towers, the clip
pipeline's q/k/v), torchvision ``vit_b_16`` (the ood pipeline's targets and trained head)
and SAM vit_b (the cod pipeline's ``SamCOD``: qkv of the 1024 px image encoder, the
decoder's image-side projections, the fusion head). Random weights.

Each injection is timed (``pytest -s`` prints it): the SVD-based initialisations
(Comp-LoRA's basis, LARGO's, SVFit's, ...) run at 768-3072 wide here. A method that brings
its own optimizer (GORP) is refused by the pipelines in one line, which is checked instead.
"""

import copy
import time

import pytest
import torch

from lorakit.core import list_methods, named_hosts
from lorakit.data.runtime import check_method_supported

pytestmark = pytest.mark.slow

METHODS = list_methods()
TIMES: dict[tuple[str, str], float] = {}


def _trains_base(method: str) -> bool:
    try:
        check_method_supported(method)
    except ValueError as e:
        assert "brings its own optimizer" in str(e) and "\n" not in str(e)
        return True
    return False


@pytest.fixture(scope="module")
def clip_b16():
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    tokens = open_clip.get_tokenizer("ViT-B-16")(["a photo of a cat"])
    return model, tokens


@pytest.fixture(scope="module")
def tv_vit_b16():
    import torchvision

    from lorakit.vision.ood.build import IMAGENET_MEAN, IMAGENET_STD, Classifier, _split_head

    torch.manual_seed(0)
    features, head = _split_head(torchvision.models.vit_b_16(weights=None), "vit_b_16")
    return Classifier(features, torch.nn.Linear(head.in_features, 3), IMAGENET_MEAN, IMAGENET_STD)


@pytest.fixture(scope="module")
def sam_vit_b():
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    return sam_model_registry["vit_b"]().eval()


def _timed(kind: str, method: str, fn):
    t0 = time.perf_counter()
    out = fn()
    TIMES[(kind, method)] = time.perf_counter() - t0
    print(f"\n[real size] inject {method} into {kind}: {TIMES[(kind, method)]:.2f} s")
    return out


def _grid(method: str) -> dict:
    return {"grid": (14, 14)} if method == "fora" else {}


def _adapted_and_trainable(model: torch.nn.Module, n_layers: int) -> None:
    hosts = list(named_hosts(model))
    assert len(hosts) == n_layers, [n for n, _ in hosts][:4]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 0


@pytest.mark.parametrize("method", METHODS)
def test_every_clip_method_injects_into_vit_b_16(clip_b16, method):
    from lorakit.core import inject
    from lorakit.vision.clip.train import adapter_config

    base, tokens = clip_b16
    # q, k, v of both towers; FoRA is told the 14 x 14 patch grid, as a user sets
    # adapter.grid, and adapts the image tower only (the text tower's 77 tokens are no grid)
    towers = "vision" if method == "fora" else "both"
    section = {"method": method, "r": 4, "alpha": 4.0, "towers": towers, **_grid(method)}
    acfg = adapter_config(section)
    if _trains_base(method):
        return
    model = copy.deepcopy(base)
    _timed("clip ViT-B-16", method, lambda: inject(model, acfg))
    _adapted_and_trainable(model, 12 if towers == "vision" else 24)
    with torch.no_grad():
        img = model.encode_image(torch.rand(1, 3, 224, 224))
        txt = model.encode_text(tokens)
    assert img.shape == txt.shape == (1, 512)
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()


@pytest.mark.parametrize("method", METHODS)
def test_every_ood_method_injects_into_torchvision_vit_b_16(tv_vit_b16, method):
    from lorakit.vision.ood.build import VIT_TARGETS
    from lorakit.vision.ood.methods import MethodConfig, prepare

    if _trains_base(method):
        return
    model = copy.deepcopy(tv_vit_b16)
    _timed("torchvision vit_b_16", method,
           lambda: prepare(model, MethodConfig(method=method, r=4, alpha=4.0, hyper=_grid(method)), VIT_TARGETS))  # fmt: skip
    _adapted_and_trainable(model, 36)  # 12 x (self_attention, mlp.0, mlp.3)
    with torch.no_grad():
        logits = model.eval()(torch.rand(1, 3, 224, 224))
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()


@pytest.mark.parametrize("method", METHODS)
def test_every_cod_method_injects_into_sam_vit_b(sam_vit_b, method):
    from lorakit.vision.sam.model import AdapterSpec, SamCOD

    if _trains_base(method):
        return
    sam = copy.deepcopy(sam_vit_b)
    cod = _timed("SAM vit_b", method, lambda: SamCOD(sam, AdapterSpec(method=method)))
    _adapted_and_trainable(cod.sam, 12 + 2 * 3 + 2)  # encoder qkv; decoder k/v, q; final k/v
    x = torch.rand(1, 64, 64, 768)  # the 1024 px token grid
    with torch.no_grad():  # a windowed (14 x 14) block and a global (64 x 64) one
        for i in (0, 2):
            y = cod.sam.image_encoder.blocks[i](x)
            assert y.shape == x.shape and torch.isfinite(y).all()


def test_report_injection_times():
    """Prints the slowest injections (runs last in this module)."""
    for (kind, method), t in sorted(TIMES.items(), key=lambda kv: -kv[1])[:12]:
        print(f"[real size] slowest: {kind:<22}{method:<16}{t:7.2f} s")
