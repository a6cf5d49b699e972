"""The PNGs a run writes say what they show: run and method in the title, labelled axes,
lines a reader can tell apart, nothing off a log axis (checked on the figure objects)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from lorakit.data import plots as data_plots
from lorakit.data.corruptions import CORRUPTIONS
from lorakit.vision.ood import plots as ood_plots


@pytest.fixture
def figures(monkeypatch):
    """Figures the plot functions close after saving, kept for inspection."""
    kept = []
    monkeypatch.setattr(data_plots.plt, "close", lambda fig=None: kept.append(fig))
    yield kept
    data_plots.plt.close("all")


def make_run(tmp_path, name: str, cfg: dict):
    run = tmp_path / name
    (run / "plots").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run


@pytest.mark.parametrize(
    "cfg, expected",
    [
        ({"head": {}, "adapter": {"method": "block_lora"}}, "clip pipeline, method block_lora"),
        ({"prompts": {}, "adapter": {"method": "fora"}}, "cod pipeline, method fora"),
        ({"model": {"name": "tiny.en-ct2"}, "adapter": {"method": "s2_lora"}}, "asr pipeline"),
        ({"method": {"name": "largo"}, "data": {}}, "ood pipeline, method largo"),
        ({"backbone": {"name": "tiny.en-ct2"}, "augment": {}, "adapter": {"method": "lora"}},
         "asr pipeline, method lora"),
        ({"adapter": {"method": "largo"}, "data": {"shift": {}}}, "ood pipeline, method largo"),
    ],
)
def test_training_curve_title_names_run_and_method(tmp_path, figures, cfg, expected):
    run = make_run(tmp_path, "my-run", cfg)
    (run / "logs").mkdir()
    (run / "logs" / "metrics.csv").write_text("step,train_loss\n0,2.0\n5,1.5\n10,1.0\n")
    data_plots.plot_training_curve(run / "logs" / "metrics.csv", run / "plots" / "curve.png")
    (fig,) = figures
    assert fig.get_suptitle() == f"run my-run: {expected}" or expected in fig.get_suptitle()
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert (run / "plots" / "curve.png").is_file()


def test_severity_lines_are_distinct_and_the_legend_is_outside(tmp_path, figures):
    run = make_run(tmp_path, "rob", {"method": {"name": "lora"}})
    table = {c: {str(s): 0.9 - 0.1 * s for s in range(1, 6)} for c in CORRUPTIONS}
    ood_plots.severity_curves(table, run / "plots" / "severity.png", clean=0.95)
    (fig,) = figures
    assert "run rob" in fig.get_suptitle() and "method lora" in fig.get_suptitle()
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_label() in CORRUPTIONS]
    assert len(lines) == len(CORRUPTIONS) == 14
    styles = {(ln.get_color(), ln.get_linestyle(), ln.get_marker()) for ln in lines}
    assert len(styles) == len(lines)
    assert len({ln.get_color() for ln in lines}) == len(lines)  # colour alone tells them apart
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # the legend covers no data


def test_largo_plot_is_labelled_and_stays_on_its_log_axes(tmp_path, figures):
    run = make_run(tmp_path, "largo-run", {"method": {"name": "largo"}})
    steps = list(range(0, 60, 10))
    series = {
        f"layer{i}": {
            "step": steps,
            "gamma": [0.01 * (1 + i) * 0.9**k for k in range(6)],
            "effective_norm": [0.0] + [1e-3 * (1 + i) * k for k in range(1, 6)],
            "update_norm": [0.0] + [3e-3 * (1 + i) * k for k in range(1, 6)],
        }
        for i in range(15)
    }
    ood_plots.largo_curves(series, run / "plots" / "largo.png")
    (fig,) = figures
    assert "run largo-run: ood pipeline, method largo" == fig.get_suptitle()
    a, b = fig.axes[:2]
    for ax in (a, b):
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        assert ax.get_yscale() == "log"
        lo, hi = ax.get_ylim()
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), float)
            y = y[np.isfinite(y)]
            assert (y > 0).all() and (y >= lo).all() and (y <= hi).all()
    assert b.get_legend() is not None
    assert any("layer" in (ax.get_ylabel() or "") for ax in fig.axes[2:])  # the colour bar


def test_no_label_outside_a_run_folder(tmp_path):
    assert data_plots.run_label(tmp_path / "x.png") is None


def test_a_figure_keeps_its_own_suptitle_under_the_run_label(tmp_path, figures):
    run = make_run(tmp_path, "cod-run", {"prompts": {}, "adapter": {"method": "fora"}})
    fig, _ = data_plots.plt.subplots()
    fig.suptitle("synthetic: S=0.80")
    data_plots.save_figure(fig, run / "plots" / "overlays.png")
    assert fig.get_suptitle() == "run cod-run: cod pipeline, method fora\nsynthetic: S=0.80"


def test_a_figure_with_a_colorbar_gets_the_label_too(tmp_path, figures):
    run = make_run(tmp_path, "asr-run", {"model": {}, "adapter": {"method": "s2_lora"}})
    fig, ax = data_plots.plt.subplots()
    fig.colorbar(ax.imshow(np.eye(3)), ax=ax)  # a colorbar fixes the figure's layout engine
    fig.tight_layout()
    data_plots.save_figure(fig, run / "plots" / "heat.png")
    assert fig.get_suptitle().startswith("run asr-run: asr pipeline")
    assert (run / "plots" / "heat.png").is_file()
