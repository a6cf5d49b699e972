"""``lorakit bench size`` on the tiny stand-ins of its models: what each variant trains and
checkpoints, the files it writes, and the one line when PEFT is missing (no timing is
asserted: the command measures, the tests check what it measures)."""

import json

import pytest
from typer.testing import CliRunner

from lorakit.apps.cli import app, bench_size


@pytest.mark.parametrize("model", bench_size.MODELS)
def test_variants_adapt_the_same_layers_and_checkpoint_blocks(model):
    rows = {v: bench_size.measure(model, v, 2, 1, 4, True, "cpu") for v in bench_size.VARIANTS}
    layers = {r["adapted_layers"] for r in rows.values()}
    assert len(layers) == 1 and layers.pop() > 0
    ours, peft = rows["lorakit"]["trainable"], rows["peft"]["trainable"]
    if model == "clip":  # attention: one pair per q/k/v/o slice vs PEFT's packed q/k/v + o
        assert ours * 3 == peft * 4
    else:  # the same Linear layers, the same rank: the same parameters
        assert ours == peft > 0
    for v, r in rows.items():
        assert (r["checkpointed_blocks"] > 0) == v.endswith("+ckpt"), v
        assert r["trainable"] == rows[v.split("+")[0]]["trainable"]
        assert r["peak_mb"] > 0 and len(r["step_times_s"]) == 1


def test_command_writes_json_table_and_plot(tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "size", "--tiny", "--models", "vit", "--steps", "2", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "bench_size_cpu_tiny.json").read_text())
    rows = {r["variant"]: r for r in data["rows"]}
    assert list(rows) == list(bench_size.VARIANTS) and data["steps"] == 2
    assert all(len(r["step_times_s"]) == 2 and r["batch"] == 8 for r in rows.values())
    # each variant measured in its own process, large blocks handed back when freed
    assert {r["malloc_mmap_threshold"] for r in rows.values()} == {"131072"}
    assert data["malloc"] == "MALLOC_MMAP_THRESHOLD_=131072"
    ckpt = rows["lorakit+ckpt"]
    assert ckpt["memory_vs_no_ckpt"] == pytest.approx(ckpt["peak_mb"] / rows["lorakit"]["peak_mb"])
    assert ckpt["time_vs_peft"] == pytest.approx(ckpt["step_s"] / rows["peft+ckpt"]["step_s"])
    assert "memory_vs_peft" not in rows["peft"]
    table = (out / "bench_size_cpu_tiny.md").read_text()
    assert table.count("| vit | 8 |") == 4 and "memory vs PEFT" in table
    assert (out / "bench_size_cpu_tiny.png").read_bytes()[:4] == b"\x89PNG"


def test_without_peft_one_line_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_size, "peft_available", lambda: False)
    monkeypatch.setattr(
        bench_size, "_one_in_subprocess", lambda *a: bench_size.measure(*a[:7])
    )  # in this process: the subprocess path is the test above
    lines = []
    rows = bench_size.run(tmp_path, ("sam",), batch=1, steps=1, tiny=True, echo=lines.append)
    assert [r["variant"] for r in rows] == ["lorakit", "lorakit+ckpt"]
    extra = [line for line in lines if "PEFT is" in line]
    assert extra == [
        "PEFT is not installed, so only lorakit is measured; for the comparison: "
        'pip install "lorakit[bench]"'
    ]
    assert "memory_vs_peft" not in rows[0] and "memory_vs_no_ckpt" in rows[1]


def test_unknown_model_is_one_line():
    result = CliRunner().invoke(app, ["bench", "size", "--models", "clip,resnet"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: bench size: unknown model 'resnet'; choose from clip, sam, vit, whisper"
    )


def test_bf16_mixed_runs_the_forward_in_bfloat16_and_keeps_float32_weights(monkeypatch, tmp_path):
    seen = {}
    real = bench_size.measure

    def spy(*a):
        row = real(*a[:7], a[8])
        seen[row["variant"]] = row
        return row

    monkeypatch.setattr(bench_size, "_one_in_subprocess", spy)
    rows = bench_size.run(
        tmp_path, ("vit",), batch=2, steps=1, tiny=True, echo=lambda _: None,
        precision="bf16-mixed",
    )  # fmt: skip
    assert {r["precision"] for r in rows} == {"bf16-mixed"}
    assert all(r["output_dtype"] == ["bfloat16"] for r in rows)
    data = json.loads((tmp_path / "bench_size_cpu_bf16_tiny.json").read_text())
    assert data["precision"] == "bf16-mixed" and "bf16-mixed" in data["title"]
    fp32 = bench_size.measure("vit", "lorakit", 2, 1, 4, True, "cpu")
    assert fp32["precision"] == "32" and fp32["output_dtype"] == ["float32"]


def test_bad_precision_is_one_line():
    args = ["bench", "size", "--tiny", "--models", "vit", "--precision", "fp8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: bench size: --precision 'fp8'; choose from ('32', 'bf16-mixed')"
    )


def test_whisper_without_the_extra_measures_random_base_weights(monkeypatch):
    from lorakit.speech.whisper.build import tiny_whisper

    def missing(spec):
        raise ValueError(f"model {spec!r} needs the optional extra")

    monkeypatch.setattr(bench_size, "WEIGHTS", {})
    model = bench_size._whisper_base(missing, tiny_whisper)
    assert bench_size.WEIGHTS["whisper"].startswith("random")
    assert model.dims.n_audio_state == 512 and model.dims.n_text_layer == 6
    assert sum(p.numel() for p in model.parameters()) == 71_825_920  # openai-whisper base: 74 M with its buffers
