import numpy as np
import py_sod_metrics as sod
import pytest

from lorakit.data.cod import CODSample
from lorakit.vision.sam.evaluate import SODScores, overlay, overlay_grid


def _disk(n=48, r=12):
    yy, xx = np.mgrid[:n, :n]
    return (yy - 20) ** 2 + (xx - 26) ** 2 < r**2


def test_perfect_and_inverted_masks():
    gt = _disk()
    perfect = SODScores()
    perfect.add(gt.astype(float), gt)
    r = perfect.results()
    assert r["s_measure"] == pytest.approx(1.0) and r["mae"] == 0.0
    assert r["weighted_f"] == pytest.approx(1.0) and r["e_measure_max"] == pytest.approx(
        1.0, abs=1e-3
    )
    wrong = SODScores()
    wrong.add((~gt).astype(float), gt)
    assert wrong.results()["mae"] == pytest.approx(1.0) and wrong.results()["s_measure"] < 0.1


def test_agrees_with_pysodmetrics():
    rng = np.random.default_rng(0)
    gt = _disk()
    prob = np.clip(gt * 0.7 + rng.random(gt.shape) * 0.4, 0, 1)
    ours = SODScores()
    ours.add(prob, gt)
    pred, gt8 = (prob * 255).round().astype(np.uint8), gt.astype(np.uint8) * 255
    sm, wf, mae, em = sod.Smeasure(), sod.WeightedFmeasure(), sod.MAE(), sod.Emeasure()
    for m in (sm, wf, mae, em):
        m.step(pred=pred, gt=gt8)
    r = ours.results()
    assert r["s_measure"] == pytest.approx(sm.get_results()["sm"])
    assert r["weighted_f"] == pytest.approx(wf.get_results()["wfm"])
    assert r["mae"] == pytest.approx(mae.get_results()["mae"])
    assert r["e_measure_mean"] == pytest.approx(em.get_results()["em"]["curve"].mean())
    with pytest.raises(ValueError, match="differ in size"):
        ours.add(prob[:10], gt)


def test_overlay_grid(tmp_path):
    gt = _disk()
    img = np.full(gt.shape + (3,), 128, np.uint8)
    out = overlay(img, gt)
    assert (out[gt] != 128).any() and (out[0, 0] == 128).all()
    png = overlay_grid([(CODSample("a", img, gt=gt), gt.astype(float))] * 2, tmp_path / "g.png")
    assert png.stat().st_size > 1000
