"""``backbone.quantize``: the ASR pipeline trains and evaluates on a quantized Whisper base
(tiny random Whisper); the kill-and-rerun check is in the reliability group."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import yaml

from lorakit.core.quant import quant_layers, quantize
from lorakit.core.quant.options import BASE_FILE, quant_options, restore_run_base
from lorakit.data.runs import load_config
from lorakit.speech.whisper import pipeline
from lorakit.speech.whisper.build import load_whisper


def _cfg(corpus, method="qlora", bits=4, overrides=()) -> dict:
    cfg = load_config(None, [f"backbone.quantize.bits={bits}", *overrides], pipeline.DEFAULTS)
    cfg["backbone"]["name"] = "tiny-random"
    cfg["data"].update(train=str(corpus["train"]), test=str(corpus["test"]))
    cfg["adapter"] = {"method": method, "r": 2, "alpha": 4, "targets": ["whisper-attn"]}
    cfg["trainer"].update(max_steps=2, progress=False, checkpoint_every=1)
    cfg["eval"].update(sample_len=4, baseline=False)
    return cfg


class Seen(L.Callback):
    """The quantized layers training ran on: ``{name: packed codes}`` at train start."""

    def __init__(self):
        self.codes = {}

    def on_train_start(self, trainer, module) -> None:
        self.codes = {n: m.packed.clone() for n, m in quant_layers(module.model)}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"bits": 5}, "backbone.quantize: bits must be"),
        ({"bits": 4, "bogus": 1}, r"backbone.quantize: unknown key\(s\) \['bogus'\]"),
        ({"bits": 4, "scheme": "fp"}, "backbone.quantize: scheme"),
        ({"bits": 4, "targets": [3]}, "backbone.quantize.targets"),
    ],
)
def test_bad_quantize_section_is_one_line(section, message, tmp_path):
    with pytest.raises(ValueError, match=message) as e:
        quant_options(section)
    assert "\n" not in str(e.value)
    assert quant_options({"bits": None}) is None and quant_options(None) is None
    cfg = load_config(None, [], pipeline.DEFAULTS)
    cfg["backbone"]["quantize"] = section
    with pytest.raises(ValueError, match=message):  # refused before any data is made
        pipeline.train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def codes(model) -> dict:
    return {n: m.packed for n, m in quant_layers(model)}


def test_plain_codes_are_rebuilt_from_the_config(tmp_path):
    """A run folder without saved codes (written before every quantized run kept them):
    ``eval`` re-quantizes the float model as the config says."""
    opts = quant_options({"bits": 3, "group_size": 32, "targets": ["whisper-attn"]})
    model, reference = load_whisper("tiny-random"), load_whisper("tiny-random")
    quantize(reference, bits=3, group_size=32, targets=("whisper-attn",))
    restore_run_base(model, tmp_path, opts)
    assert codes(model).keys() == codes(reference).keys() and len(codes(model)) == 24
    assert all(torch.equal(codes(model)[n], c) for n, c in codes(reference).items())
    restore_run_base(plain := load_whisper("tiny-random"), tmp_path, None)  # bits null
    assert not codes(plain)


def test_trains_and_evaluates_on_a_quantized_base(corpus, tmp_path):
    """``--set backbone.quantize.bits=2`` with LoftQ: every Linear becomes 2-bit codes before
    training, metrics.json records the base's bytes and errors, the run keeps the codes
    LoftQ chose (``base_quantized``) and ``eval`` loads them rather than re-quantizing
    (which gives other codes), recomputing the same WER. Exports: ``pt`` is a plain float
    Whisper holding ``W_hat + dW``; ``quantized`` re-quantizes it, and the error it reports
    per layer is the one between the two files."""
    seen, out = Seen(), tmp_path / "run"
    cfg = _cfg(corpus, "loftq", 2, ["eval.export=[quantized, pt]"])
    metrics = pipeline.train(cfg, out, callbacks=[seen])
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in load_whisper("tiny-random").modules())
    assert len(seen.codes) == n_linear  # targets [] -> every Linear, hosts' bases included
    q = metrics["quantized"]
    assert q["bits"] == [2] and q["layers"] == n_linear
    assert q["quantized_layer_bytes"] < 0.1 * q["quantized_layer_fp32_bytes"]
    assert q["base_bytes"] < q["base_fp32_bytes"] and metrics["peak_rss_mb"] > 0
    assert q["absorbed_layers"] == 24  # the adapted (attention) layers
    # random weights have no low-rank structure: LoftQ need not beat plain 2-bit codes here
    # (tests/core/test_quant_methods.py checks that it does on pretrained-like weights)
    assert 0 < q["absorbed_rel_error_after_init"] < 1 and 0 < q["absorbed_rel_error_plain"] < 1
    assert (out / BASE_FILE).is_file()
    fresh = load_whisper("tiny-random")
    restore_run_base(fresh, out, quant_options({"bits": 2}))
    assert all(torch.equal(codes(fresh)[n], c.cpu()) for n, c in seen.codes.items())
    plain = load_whisper("tiny-random")
    quantize(plain, bits=2)
    assert any(not torch.equal(codes(plain)[n], c.cpu()) for n, c in seen.codes.items())
    assert pipeline.evaluate(out, {})["wer"] == metrics["wer"]
    check_exports(out, metrics)


@pytest.mark.reliability
def test_killed_quantized_run_resumes_exactly(tmp_path, corpus, runs):
    """A 4-bit base with a LoftQ adapter, killed after its first checkpoint and re-run,
    ends where the uninterrupted run ends (checkpoints hold adapter tensors only; the
    base is re-quantized and re-absorbed deterministically)."""
    cfg = _cfg(corpus, "loftq", 4)
    cfg["trainer"].update(max_steps=6, log_every=1, checkpoint_every=3)
    (tmp_path / "asr.yaml").write_text(yaml.safe_dump(cfg))
    args = ["asr", "--config", str(tmp_path / "asr.yaml")]
    runs.train(args, tmp_path / "reference")
    runs.kill_and_rerun(args, tmp_path / "reference", tmp_path / "killed")


def check_exports(out, metrics) -> None:
    import json

    from lorakit.core.quant import load_quantized

    pt = torch.load(out / "export" / "whisper-merged.pt", weights_only=True)["model_state_dict"]
    assert not any(k.endswith((".packed", ".scales")) for k in pt)  # a plain float Whisper
    errors = json.loads((out / "export" / "quantized_merge_error.json").read_text())
    assert metrics["quantized_merge_error_max"] == pytest.approx(errors["max"], abs=1e-6)
    model = load_quantized(load_whisper("tiny-random"), metrics["exported"]["quantized"])
    layers = dict(quant_layers(model))
    assert len(layers) == 32 and len(errors["relative_error"]) == 24  # adapted: attention
    for name, layer in layers.items():
        w = layer.weight
        measured = float(torch.linalg.norm(w - pt[f"{name}.weight"]) / torch.linalg.norm(w))
        if name in errors["relative_error"]:  # re-quantized W_hat + dW: the reported error
            assert measured == pytest.approx(errors["relative_error"][name], rel=1e-3)
            assert 0 < measured < 1
        else:  # no adapter: the same codes in both files
            assert measured == 0


class FirstAdapter(L.Callback):
    """The trainable adapter tensors (LQ-LoRA's ``L1``, ``L2``) at train start."""

    def __init__(self):
        self.init = {}

    def on_train_start(self, trainer, module) -> None:
        self.init = {n: p.detach().clone() for n, p in module.named_parameters()
                     if p.requires_grad}


def test_lq_lora_fisher_from_the_runs_own_batches(corpus, tmp_path):
    """``adapter.fisher: true``: the Fisher comes from the run's first ``fisher_batches``
    training batches (the decomposition, so the initial ``L1 L2``, changes), recorded in
    metrics.json; eval loads the codes it chose."""
    cfg = _cfg(corpus, "lq_lora", 4)
    cfg["adapter"]["lq_iters"] = 2
    cfg["trainer"]["max_steps"] = 1
    plain, weighted = FirstAdapter(), FirstAdapter()
    off = pipeline.train(cfg, tmp_path / "off", callbacks=[plain])
    cfg["adapter"].update(fisher=True, fisher_batches=2)
    on = pipeline.train(cfg, tmp_path / "on", callbacks=[weighted])
    assert on["quantized"]["fisher_batches"] == 2 and "fisher_batches" not in off["quantized"]
    assert plain.init.keys() == weighted.init.keys() and len(plain.init) == 48
    assert all(not torch.equal(plain.init[n], weighted.init[n]) for n in plain.init)
    assert pipeline.evaluate(tmp_path / "on", {})["wer"] == on["wer"]
