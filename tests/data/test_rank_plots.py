"""The rank heatmap: layers x modules, labelled axes, colour bar label, run title."""

import pytest
import yaml

from lorakit.data import plots as data_plots
from lorakit.data.rank_plots import rank_heatmap


@pytest.fixture
def figures(monkeypatch):
    kept = []
    monkeypatch.setattr(data_plots.plt, "close", lambda fig=None: kept.append(fig))
    yield kept
    data_plots.plt.close("all")


def test_rank_heatmap_is_layers_by_modules_and_labelled(tmp_path, figures):
    run = tmp_path / "r"
    (run / "plots").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"head": {}, "adapter": {"method": "sora"}}))
    ranks = {
        f"{tower}transformer.resblocks.{i}.attn:{s}": (i + j) % 5
        for i in range(3) for j, s in enumerate("qkv") for tower in ("visual.", "")
    }
    rank_heatmap(ranks, run / "plots" / "ranks.png", "sora")
    (fig,) = figures
    ax, bar = fig.axes
    assert fig.get_suptitle() == "run r: clip pipeline, method sora"
    assert "sora" in ax.get_title() and f"total {sum(ranks.values())}" in ax.get_title()
    assert ax.get_xlabel().startswith("module") and ax.get_ylabel().startswith("layer")
    assert bar.get_ylabel() == "rank"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert len(cols) == 6 and "vision.attn:q" in cols and "text.attn:v" in cols
    grid = ax.get_images()[0].get_array()
    assert grid.shape == (3, 6)
    assert grid[2, cols.index("vision.attn:k")] == (2 + 1) % 5
    assert (run / "plots" / "ranks.png").stat().st_size > 0
    assert rank_heatmap({}, run / "plots" / "none.png", "x") is None
