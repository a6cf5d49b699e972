"""The ASR benchmark scripts: demos/transcribe_asr.py (lorakit transcribe vs openai-whisper's
own transcribe) and demos/bench_asr.py's configuration for a second model size."""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorakit.data.manifest import read_manifest

DEMOS = Path(__file__).resolve().parents[3] / "demos"


def _demo(name: str):
    spec = importlib.util.spec_from_file_location(name, DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_group_scores_count_a_looping_child_transcript(heldout_manifest):
    tr = _demo("transcribe_asr")
    utts = read_manifest(heldout_manifest)
    hyps = [u.text for u in utts]
    loop = next(i for i, u in enumerate(utts) if u.group == "heldout_child")
    hyps[loop] = "my best friend has a " + "hands to " * 40  # the looping transcript
    out = tr.group_scores(utts, hyps)
    assert out["looping"] == [loop]
    assert out["heldout_adult"]["wer"] == 0.0
    assert out["heldout_child"]["wer"] > 0.15  # one 80-word loop: ~400 reference words
    lo, hi = out["heldout_child"]["ci95"]
    assert lo <= out["heldout_child"]["wer"] <= hi


def test_paired_prefixes_hold_both_voices_of_the_same_sentences(heldout_manifest):
    tr = _demo("transcribe_asr")
    utts = read_manifest(heldout_manifest)
    random.Random(0).shuffle(utts)  # voices and sentences in any order
    first = tr.paired(utts, 4)
    assert [u.group for u in first] == ["heldout_adult", "heldout_child"] * 2
    assert first[0].text == first[1].text != first[2].text == first[3].text
    every = tr.paired(utts)
    assert sorted(map(str, (u.audio for u in every))) == sorted(map(str, (u.audio for u in utts)))


def test_summary_scores_only_the_decoded_prefix(heldout_manifest):
    tr = _demo("transcribe_asr")
    utts = tr.paired(read_manifest(heldout_manifest))
    hyps = {m: [u.text for u in utts[:4]] for m in tr.MODES}
    hyps["openai_whisper"][3] = "something else"
    out = tr.summary(utts, hyps, {"openai_whisper": 1.0})
    assert out["n_files"] == 4 and out["identical_lorakit_vs_openai"] == 3
    assert out["scores"]["lorakit"]["heldout_child"]["wer"] == 0.0
    assert out["scores"]["openai_whisper"]["heldout_child"]["wer"] > 0.0


def test_lorakit_mode_is_what_the_cli_prints(heldout_manifest, tmp_path):
    """The demo's ``lorakit`` column decodes exactly as ``lorakit transcribe --json``
    (224 tokens, fallback on) and its ``lorakit_no_fallback`` as ``--no-fallback``; on a
    random-weights Whisper, whose greedy text loops to the token limit, both differ."""
    from lorakit.apps.cli.commands import app
    from lorakit.speech.whisper.build import load_whisper

    tr = _demo("transcribe_asr")
    utts = tr.paired(read_manifest(heldout_manifest), 2)
    got = tr.lorakit_transcribe(load_whisper("tiny-random"), utts)
    for mode, flags in (("lorakit", []), ("lorakit_no_fallback", ["--no-fallback"])):
        cmd = [
            "transcribe",
            "--model",
            "tiny-random",
            "--json",
            *flags,
            *(str(u.audio) for u in utts),
        ]
        res = CliRunner().invoke(app, cmd)
        assert res.exit_code == 0, res.output
        printed = [json.loads(line)["text"] for line in res.output.splitlines()]
        assert got[mode] == printed, mode
    assert got["lorakit"] != got["lorakit_no_fallback"]


def _bench_args(**kw) -> argparse.Namespace:
    return argparse.Namespace(
        **{"config": DEMOS / "asr.yaml", "set": [], "steps": 0, "seed": 0, "no_ct2": True,
           "ct2_files": 0, **kw}
    )


def test_bench_config_runs_base_with_the_same_budget_for_both_methods():
    bench = _demo("bench_asr")
    args = _bench_args(
        config=DEMOS / "asr_base.yaml", set=["data.generate.val_sentences=16"], steps=40, seed=2
    )
    s2, lora = bench.bench_config("s2_lora", args), bench.bench_config("lora", args)
    for cfg in (s2, lora):
        assert cfg["backbone"]["name"] == "base-ct2"
        assert cfg["data"]["generate"]["val_sentences"] == 16
        assert cfg["trainer"]["max_steps"] == 40 and cfg["trainer"]["seed"] == 2
    assert s2["adapter"]["method"] == "s2_lora" and lora["adapter"]["method"] == "lora"
    assert lora["adapter"]["targets"] == s2["adapter"]["targets"]
    assert lora["optim"]["lr"] == bench.LORA_LR != s2["optim"]["lr"]
    tiny = bench.bench_config("s2_lora", _bench_args())
    assert tiny["backbone"]["name"] == "tiny.en-ct2" and tiny["trainer"]["max_steps"] == 200


def test_pooled_intervals_resample_seeds_as_well_as_sentences():
    seeds = _demo("asr_seeds")
    sentences = [f"s{i}" for i in range(8)]
    right = {s: (0, 5) for s in sentences}  # every word right
    wrong = {s: (5, 5) for s in sentences}  # every word wrong
    assert seeds.pooled({0: right, 1: wrong}) == 0.5
    assert seeds.interval({0: right}) == (0.0, 0.0)
    # sentences agree within each seed: all the spread is between seeds
    lo, hi = seeds.interval({0: right, 1: wrong})
    assert lo == 0.0 and hi == 1.0
    uneven = {f"s{i}": (i, 8) for i in range(8)}  # WER 0 .. 7/8 by sentence
    lo, hi = seeds.interval({0: uneven})
    assert lo < seeds.pooled({0: uneven}) < hi and hi - lo > 0.2


def test_paired_differences_hold_the_sentences_together_and_reuse_the_base():
    seeds = _demo("asr_seeds")
    base = {f"s{i}": (i, 8) for i in range(8)}  # sentences of very different difficulty
    better = {s: (max(e - 1, 0), w) for s, (e, w) in base.items()}  # one error fewer each
    d, lo, hi = seeds.paired({0: better, 1: better, 2: better}, {0: base})
    assert d == -7 / 64 and lo < 0 and hi < 0  # separate intervals would overlap
    assert hi - lo < 0.05
    assert seeds.paired({2: better}, {0: base}) == seeds.paired({0: better}, {0: base})  # one seed, not 0
    blo, bhi = seeds.interval({0: base})
    assert bhi - blo > 0.2
    other = {f"t{i}": (0, 8) for i in range(8)}
    with pytest.raises(ValueError, match="different held-out sentences"):
        seeds.paired({0: other}, {0: base})


def test_read_scores_keeps_the_held_out_groups_by_sentence(tmp_path):
    seeds = _demo("asr_seeds")
    rows = [
        ("test-0", "child", "a b", 1, 2),
        ("h-0", "heldout_child", "a b", 1, 2),
        ("h-1", "heldout_child", "c d e", 0, 3),
        ("h-2", "heldout_adult", "a b", 2, 2),
    ]
    path = tmp_path / "utterances.csv"
    path.write_text(
        "id,group,ref_normalized,word_errors,ref_words\n"
        + "".join(f"{i},{g},{r},{e},{w}\n" for i, g, r, e, w in rows)
    )
    got = seeds.read_scores(path)
    assert got == {
        "heldout_child": {"a b": (1, 2), "c d e": (0, 3)},
        "heldout_adult": {"a b": (2, 2)},
    }


def test_the_hubs_premade_child_speech_run_is_the_benchmarks_recipe(tmp_path):
    """The hub's pre-made run trains exactly what demos/bench_asr.py --set eval.fallback=false
    scores (seed 0, S2-LoRA): only paths, logging and the sets scored may differ, so it can
    stand as that seed."""
    from lorakit.apps.web.prebuilt import profile, resolve

    bench = _demo("bench_asr")
    spec = next(s for s in profile("demo", tmp_path) if s.key == "asr-s2_lora")
    greedy = _bench_args(set=["eval.fallback=false"])  # the benchmark's decoding
    assert bench.recipe_differences(resolve(spec), bench.bench_config("s2_lora", greedy)) == []
    assert bench.recipe_differences(resolve(spec), bench.bench_config("s2_lora", _bench_args()))
    lora = bench.bench_config("lora", greedy)
    diff = bench.recipe_differences(resolve(spec), lora)
    assert any(d.startswith("adapter.method") for d in diff)
    assert any(d.startswith("optim.lr") for d in diff)


def _fake_run(folder: Path, cfg: dict, errors: list[int], ranks=None, base=None) -> None:
    import yaml

    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    metrics = {"trainable_parameters": 100 if ranks else 1000, "seconds_per_step": 2.0}
    if ranks:
        metrics["s2_lora_ranks"] = ranks
    (folder / "metrics.json").write_text(json.dumps(metrics))

    def csv(errs):
        head = "id,group,ref_normalized,word_errors,ref_words\n"
        return head + "".join(
            f"{g}-{i},heldout_{g},s{i},{e},10\n"
            for g in ("child", "adult")
            for i, e in enumerate(errs)
        )

    (folder / "utterances.csv").write_text(csv(errors))
    if base:
        (folder / "baseline_utterances.csv").write_text(csv(base))


def test_the_seed_table_pools_finished_runs_and_refuses_another_recipe(tmp_path, capsys):
    bench = _demo("bench_asr")
    args = _bench_args(out=tmp_path, seeds=[0, 1], methods=["s2_lora", "lora"], report=False)
    for seed in (0, 1):
        a = _bench_args(seed=seed)
        s2 = tmp_path / f"seed{seed}" / "s2_lora"
        _fake_run(
            s2,
            bench.bench_config("s2_lora", a),
            [1, 2, 1, 2],
            {"l": 3},
            [4, 4, 4, 4] if seed == 0 else None,
        )
        _fake_run(tmp_path / f"seed{seed}" / "lora", bench.bench_config("lora", a), [seed, 1, 1, 2])
    bench.seeds_main(args)  # every run finished: nothing trains, only the table
    out = json.loads((tmp_path / "bench_asr.json").read_text())
    assert out["rows"]["base"]["wer_child"] == 0.4 and out["rows"]["s2_lora"]["wer_child"] == 0.15
    assert out["rows"]["lora"]["wer_child_per_seed"] == [0.1, 0.125]
    assert out["differences"]["s2_lora - base, child"][0] == -0.25
    assert out["goals"]["child WER at least a third lower than base"]
    assert not out["goals"]["within 1 point of LoRA's child WER"]
    assert (tmp_path / "bench_asr.png").stat().st_size > 10_000
    assert "| s2_lora | 0, 1 |" in (tmp_path / "bench_asr.md").read_text()
    assert "--set" not in (tmp_path / "bench_asr.md").read_text()
    # runs off the recipe (--set) say so in the table's first line and the plot's title
    import matplotlib.axes

    titles = []
    real_title = matplotlib.axes.Axes.set_title
    matplotlib.axes.Axes.set_title = lambda ax, t, **kw: titles.append(t) or real_title(ax, t, **kw)
    try:
        bench.report_seeds(_bench_args(out=tmp_path, seeds=[0, 1], methods=["s2_lora", "lora"],
                                       set=["adapter.lam_lr_scale=1.0"]))  # fmt: skip
    finally:
        matplotlib.axes.Axes.set_title = real_title
    first = (tmp_path / "bench_asr.md").read_text().splitlines()[0]
    assert first.endswith("; adapters trained with --set adapter.lam_lr_scale=1.0")
    assert titles[-1].endswith("\nwith --set adapter.lam_lr_scale=1.0")
    # with the CTranslate2 check: the first seed's S2-LoRA run is exported and compared
    got = []
    row = {"compute_type": "int8_float32", "batch_size": 1, "identical": 3, "n": 4, "threads": 1,
           "ct2_wer_heldout": 0.25, "speedup": 1.5}  # fmt: skip
    bench.ct2_check = lambda a: got.append((a.out, a.ct2_files)) or [row]
    bench.seeds_main(_bench_args(out=tmp_path, seeds=[1, 0], methods=["s2_lora", "lora"], no_ct2=False,
                                 ct2_files=7))  # fmt: skip
    assert got == [(tmp_path / "seed1", 7)]
    assert json.loads((tmp_path / "bench_asr.json").read_text())["ct2"] == [row]
    assert "| int8_float32 | 1 | 3/4 | 25.0 % | 1.5x |" in (tmp_path / "bench_asr.md").read_text()
    # a kept run of another recipe (here: another lr) is not counted as a seed
    import yaml

    cfg_path = tmp_path / "seed1" / "lora" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["optim"]["lr"] = 0.1
    cfg_path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit, match="optim.lr"):
        bench.seeds_main(args)
    (tmp_path / "seed1" / "lora" / "metrics.json").unlink()
    with pytest.raises(SystemExit, match="not finished"):
        bench.report_seeds(args)
    # a run another process trains in is refused at once, before any run of the batch starts
    import subprocess
    import sys

    hold = "import sys, time\nfrom lorakit.data import run_lock\nrun_lock.acquire(sys.argv[1])\n"
    holder = subprocess.Popen([sys.executable, "-c", hold + "print('locked', flush=True)\ntime.sleep(60)",
                               str(tmp_path / "seed1" / "lora")], stdout=subprocess.PIPE, text=True)  # fmt: skip
    started = []
    bench.worker_pool = lambda n: started.append(n)  # nothing may start
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit, match=f"seed1/lora is in use: process {holder.pid} "):
            bench.seeds_main(args)
    finally:
        holder.kill()
        holder.wait()
    assert started == [] and bench.run_lock.holder(tmp_path / "seed1" / "lora") is None


def test_recipe_round_three_candidates_share_pairs_as_named():
    """S2-LoRA's sharing-group candidates: one A/B pair per weight shape by default, one per
    shape and projection type with ``share-proj``, one per shape and block with
    ``share-block``; trainable = r (d_in + d_out) per pair + r per layer, counted here."""
    from lorakit.core import inject
    from lorakit.data.runs import load_config
    from lorakit.speech.whisper import pipeline
    from lorakit.speech.whisper.build import load_whisper

    recipe = _demo("recipe_asr")
    base = load_config(None, ["backbone.name=tiny-random"], pipeline.DEFAULTS)
    model = load_whisper("tiny-random")
    d, blocks, r = model.dims.n_audio_state, model.dims.n_audio_layer, 8
    shapes = {"attn": (d, d), "mlp0": (4 * d, d), "mlp2": (d, 4 * d)}
    pair = {k: r * (a + b) for k, (a, b) in shapes.items()}
    per_layer = r * 6 * blocks  # q, k, v, out, mlp.0, mlp.2 in every block
    expected = {
        "enc-mlp-sparse": sum(pair.values()) + per_layer,
        "enc-mlp-share-proj": 4 * pair["attn"] + pair["mlp0"] + pair["mlp2"] + per_layer,
        "enc-mlp-share-block": blocks * sum(pair.values()) + per_layer,
        "enc-mlp-r4": (sum(pair.values()) + per_layer) // 2,
        "enc-mlp-r16": 2 * (sum(pair.values()) + per_layer),
    }
    for name, want in expected.items():
        cfg = recipe.candidate_config(base, name, 2)
        report = inject(load_whisper("tiny-random"), pipeline.adapter_config(cfg))
        assert report.trainable == want, name
    for name in ("enc-mlp-prox2", "enc-mlp-lamlr30"):
        adapter = recipe.candidate_config(base, name, 2)["adapter"]
        assert (adapter["prox_threshold"], adapter["lam_lr_scale"]) in ((2.0, 10.0), (0.5, 30.0))


def test_recipe_report_reads_finished_and_stopped_candidates(tmp_path, capsys):
    """``recipe_asr.py --report``: finished candidates from their json, a stopped one from
    the validation WER its metrics.csv logged at the validation steps only."""
    recipe = _demo("recipe_asr")
    done = {"trainable": 37056, "history": [[0, 0.6], [20, 0.3], [40, 0.2]], "best_step": 40,
            "best_wer": 0.2, "kept_ranks": {"a": 3, "b": 5}}  # fmt: skip
    (tmp_path / "recipe_enc-mlp-sparse.json").write_text(json.dumps({"enc-mlp-sparse": done}))
    log = tmp_path / "enc-mlp-r4" / "logs" / "metrics.csv"
    log.parent.mkdir(parents=True)
    rows = ["epoch,step,train_ce,train_loss,train_reg,val_wer"]
    rows += [f"0,{s},1,1,0,{w}" for s, w in ((4, ""), (19, 0.25), (24, 0.25), (39, 0.22), (44, 0.22))]
    log.write_text("\n".join(rows) + "\n")
    names = ["enc-mlp-sparse", "enc-mlp-r4"]
    got = recipe.gathered(tmp_path, [], names, every=20)
    assert got["enc-mlp-r4"]["history"] == [(20, 0.25), (40, 0.22)]
    assert got["enc-mlp-r4"]["stopped"] == 40 and got["enc-mlp-r4"]["best_step"] == 40
    recipe.report(got, tmp_path / "out" / "round3", "title")
    md = (tmp_path / "out" / "round3.md").read_text()
    assert "| enc-mlp-sparse | 37,056 | 0.600 | 0.300 | 0.200 | **0.200** (40) | 8/16 |" in md
    assert "| enc-mlp-r4 | - | - | 0.250 | 0.220 | **0.220** (40), stopped at 40 | - |" in md
    assert (tmp_path / "out" / "round3.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="no results for enc-mlp-r16"):
        recipe.gathered(tmp_path, [], [*names, "enc-mlp-r16"], every=20)


def test_a_festival_training_arm_is_chosen_on_the_engine_it_has_not_trained_on():
    """With Festival in an arm's training set, Festival validation is no longer an unseen
    engine: ``auto`` chooses on espeak-ng only; without such an arm, on both sets."""
    aug = _demo("augment_asr")
    vals = {"espeak": [1], "festival": [2]}
    assert aug.choice_sets(["recipe", "reverb"], vals, "auto") == ["espeak", "festival"]
    assert aug.choice_sets(["recipe", "festival"], vals, "auto") == ["espeak"]
    assert aug.choice_sets(["recipe", "festival"], vals, "mean") == ["espeak", "festival"]
    assert aug.choice_sets(["recipe"], vals, "espeak") == ["espeak"]


def test_festival_training_speech_keeps_each_sentence_and_group(tmp_path):
    """Festival's copy of the training set: the same sentence and group per utterance,
    spoken by ked (never a held-out flite voice), cached on the second call."""
    from lorakit.data.festival import available
    from lorakit.data.manifest import Utterance

    if not available():
        pytest.skip("festival's ked voice is not installed")
    aug = _demo("augment_asr")
    train = [Utterance(id=f"u{i}", audio=tmp_path / "x.wav", text=t, speaker="espeak-ng:en", group=g,
                       duration=1.0) for i, (t, g) in enumerate([("a red ball", "adult"), ("the dog ran", "child")])]  # fmt: skip
    out = aug.festival_train(train, tmp_path / "fest")
    assert [(u.text, u.group, u.speaker) for u in out] == [
        ("a red ball", "adult", "festival:ked"), ("the dog ran", "child", "festival:ked")]  # fmt: skip
    assert all(u.audio.is_file() and u.duration > 0.3 for u in out)
    real = aug.speak_festival
    aug.speak_festival = None  # the cache is read, nothing is spoken
    assert aug.festival_train(train, tmp_path / "fest") == out
    aug.speak_festival = real
    (tmp_path / "fest" / "wav" / "festival-u0.wav").unlink()  # a half-copied cache is redone
    assert aug.festival_train(train, tmp_path / "fest") == out


def test_recipe_search_refuses_a_candidate_another_search_trains(tmp_path, monkeypatch):
    """Two searches given the same candidate and --out would train into one folder: the
    second is refused in one line before any of its candidates starts."""
    import subprocess
    import sys

    recipe = _demo("recipe_asr")
    folder = tmp_path / "lora-enc-mlp-lr2e-3"
    folder.mkdir()
    hold = "import sys, time\nfrom lorakit.data import run_lock\nrun_lock.acquire(sys.argv[1])\n"
    holder = subprocess.Popen([sys.executable, "-c", hold + "print('locked', flush=True)\ntime.sleep(60)",
                               str(folder)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    started = []
    row = {"trainable": 1, "history": [[0, 0.5]], "best_step": 0, "best_wer": 0.5, "kept_ranks": None}
    monkeypatch.setattr(recipe, "run_candidate", lambda name, *a: started.append(name) or row)
    argv = ["recipe_asr.py", "--out", str(tmp_path), "--only", "enc-mlp-sparse", "lora-enc-mlp-lr2e-3"]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit, match=f"lora-enc-mlp-lr2e-3 is in use: process {holder.pid} "):
            recipe.main()
    finally:
        holder.kill()
        holder.wait()
    assert started == []
    recipe.main()  # the holder gone: both candidates run
    assert started == ["enc-mlp-sparse", "lora-enc-mlp-lr2e-3"]


def test_rescore_loads_a_candidates_best_tensors_and_counts_agreeing_pairs(tmp_path):
    """``rescore_asr.py``: a recipe candidate's ``last.ckpt`` tensors land in a freshly
    built model of that candidate; a checkpoint of another rank is refused in one line; the
    concordance counts the pairs a validation set orders as held-out child WER does."""
    import torch

    from lorakit.core import inject
    from lorakit.data.runs import load_config
    from lorakit.speech.whisper import pipeline
    from lorakit.speech.whisper.build import load_whisper

    rescore, recipe = _demo("rescore_asr"), _demo("recipe_asr")
    cfg = load_config(DEMOS / "asr.yaml", ["backbone.name=tiny-random"], pipeline.DEFAULTS)
    trained = load_whisper("tiny-random")
    inject(trained, pipeline.adapter_config(recipe.candidate_config(cfg, "enc-mlp-lamlr1", 4)))
    torch.manual_seed(3)
    with torch.no_grad():
        for p in trained.parameters():
            if p.requires_grad:
                p.copy_(torch.randn_like(p))
    state = {f"model.{k}": v for k, v in trained.state_dict().items()}
    for name in ("enc-mlp-lamlr1", "enc-mlp-r4"):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        torch.save({"state_dict": state}, tmp_path / name / "checkpoints" / "last.ckpt")
    model = rescore.candidate_model(cfg, "enc-mlp-lamlr1", tmp_path)
    want = {k: v for k, v in trained.named_parameters() if v.requires_grad}
    got = dict(model.named_parameters())
    assert want and all(torch.equal(got[k], v) for k, v in want.items())
    with pytest.raises(SystemExit, match="does not fit candidate enc-mlp-r4 .*another shape"):
        rescore.candidate_model(cfg, "enc-mlp-r4", tmp_path)  # r=8 tensors, r=4 candidate
    rows = {
        "a": {"espeak": 0.1, "festival": 0.30, "heldout_child": 0.25},
        "b": {"espeak": 0.2, "festival": 0.20, "heldout_child": 0.20},
        "c": {"espeak": 0.3, "festival": 0.25, "heldout_child": 0.22},
        "d": {"espeak": 0.0, "festival": 0.10},  # no held-out score: in no pair
        "e": {"espeak": 0.4, "festival": 0.20, "heldout_child": 0.30},  # festival ties b
    }
    assert rescore.concordance(rows, "espeak") == (4, 6)  # all but (a, b), (a, c)
    assert rescore.concordance(rows, "festival") == (3, 6)  # (a, b), (a, c), (b, c); a tie is not
    text = rescore.report(rows, tmp_path / "out" / "r", 64)
    assert "- festival validation orders 3 of 6 pairs" in text
    assert "- lowest espeak validation WER: d (0.0)." in text
    assert (tmp_path / "out" / "r.png").stat().st_size > 10_000


def test_a_stopped_rescore_resumes_from_its_kept_rows(tmp_path):
    rescore = _demo("rescore_asr")
    made = []

    def maker(name, metrics=None, fail=False):
        def make():
            made.append(name)
            if fail:
                raise KeyboardInterrupt  # stopped while scoring this model
            return name, metrics
        return make

    scores = lambda model: {"espeak": len(model) / 10, "festival": 0.5}  # noqa: E731
    partial = tmp_path / "r.partial.json"
    held = {"wer_heldout_child": 0.2, "wer_heldout_adult": 0.1}
    with pytest.raises(KeyboardInterrupt):
        rescore.score_all([("a", maker("a", held)), ("bb", maker("bb", fail=True))], scores, partial, 64)
    made.clear()
    rows = rescore.score_all([("a", maker("a")), ("bb", maker("bb"))], scores, partial, 64)
    assert made == ["bb"]  # a's row was kept, with its held-out scores
    assert rows == {"a": {"espeak": 0.1, "festival": 0.5, "heldout_child": 0.2, "heldout_adult": 0.1},
                    "bb": {"espeak": 0.2, "festival": 0.5}}  # fmt: skip
    made.clear()
    rescore.score_all([("a", maker("a")), ("bb", maker("bb"))], scores, partial, 16)
    assert made == ["a", "bb"]  # kept rows of another validation size are not reused
