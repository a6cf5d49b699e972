"""demos/quant_asr_train.py: each row is a ``lorakit train asr`` run on the base its
``backbone.quantize`` names (tiny random Whisper, two steps), and the report holds the keys
the benchmark's table reads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

DEMOS = Path(__file__).resolve().parents[3] / "demos"


def _demo(name: str):
    spec = importlib.util.spec_from_file_location(name, DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_train_on_their_quantized_base_and_report(corpus, tmp_path):
    qt = _demo("quant_asr_train")
    overrides = ["backbone.name=tiny-random", "eval.sample_len=4", "optim.batch_size=2"]
    args = qt.parser().parse_args(
        ["--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), "--steps", "2",
         *(a for o in overrides for a in ("--set", o))]  # fmt: skip
    )
    data = {"train": corpus["train"], "test": corpus["test"], "heldout": corpus["test"]}
    rows = [qt.run_row(name, args, data) for name in ("fp32-lora", "3bit-qlora")]
    for row in rows:
        assert set(qt.ROW_KEYS) <= set(row) and row["steps"] == 2
        assert len(row["errors"]) == 4 and {e[0] for e in row["errors"]} == {
            "heldout_adult", "heldout_child"}  # fmt: skip
    fp, q3 = rows
    assert fp["quant_bits"] is None and fp["method"] == "lora"
    # the run trained on 3-bit codes of every block Linear (32 in tiny-random), as asked
    assert q3["quant_bits"] == [3] and q3["quant"]["layers"] == 32
    assert q3["quant"]["quantized_layer_bytes"] < 0.2 * q3["quant"]["quantized_layer_fp32_bytes"]
    assert q3["trainable_parameters"] == fp["trainable_parameters"] > 0
    qt.deltas(rows)
    assert "delta_wer_heldout_child" not in fp and len(q3["delta_wer_heldout_child"]) == 3
    lo, hi = q3["delta_wer_heldout_adult"][1:]
    assert lo <= q3["delta_wer_heldout_adult"][0] <= hi
    result = {"rows": rows, "steps": 2, "recipe_steps": 200, "batch": 2, "rank": 8,
              "lr": args.lr, "sentences": 2, "utterances": 4, "untrained": "", "seconds": 1}  # fmt: skip
    qt.report(result, args.out)
    saved = json.loads((args.out / "bench_quant_train.json").read_text())
    assert [r["label"] for r in saved["rows"]] == ["fp32 LoRA", "3-bit QLoRA"]
    md = (args.out / "bench_quant_train.md").read_text()
    assert "**2 steps**" in md and "| 3-bit QLoRA | 3 |" in md
    assert (args.out / "bench_quant_train.png").stat().st_size > 0
