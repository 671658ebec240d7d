"""`figure cmo-samples` (grid of samples made by the CMO mixer), `report table1` and `data stats` from split lists."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.data.synthetic_lt import build_synthetic_lt
from benchmark.report.plots import overlapping
from benchmark.tools.figures import GRID_DPI, TILE_IN, cmo_samples, grid_figure

runner = CliRunner()


def _one_error_line(res) -> None:  # noqa: ANN001
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1, res.output


def test_cmo_samples_cli_writes_the_grid(tmp_path: Path) -> None:
    out = tmp_path / "fig" / "cmo.png"
    res = runner.invoke(app, ["figure", "cmo-samples", "--out", str(out), "--rows", "2", "--cols", "3"])
    assert res.exit_code == 0, res.output
    assert "2 x 4 images" in res.output
    im = Image.open(out)
    assert im.size[0] == round(4 * TILE_IN * GRID_DPI)  # 1 foreground + 3 samples per row, 1.25 in at 150 dpi
    assert round(2 * TILE_IN * GRID_DPI) < im.size[1] < round((2 * TILE_IN + 1) * GRID_DPI)
    assert abs(im.info["dpi"][0] - GRID_DPI) < 0.5
    assert (out.stat().st_mode & 0o077) != 0o000 and not list(out.parent.glob(".*"))


def test_cmo_samples_grid_from_the_mixer() -> None:
    data = build_synthetic_lt(imbalance_ratio=10.0)
    grid = cmo_samples(data, rows=3, cols=4, seed=0)
    assert grid.images.shape == (3, 5, 32, 32, 3)
    counts = np.asarray(data.class_counts)
    for i in range(3):
        fg = grid.images[i, 0]
        assert grid.captions[i][0].startswith(data.class_names[grid.foreground_classes[i]])
        for j in range(1, 5):
            same = np.all(np.isclose(grid.images[i, j], fg, atol=1e-6), axis=-1)  # pixels from the foreground
            area = float(grid.captions[i][j].split("\n")[0].rsplit(" ", 1)[1])  # caption: class, 1 - lam
            assert abs(same.mean() - area) <= 0.006  # the pasted pixels cover the captioned area (2 decimals)
            if same.any():  # ... and form one rectangle: the CutMix box
                r, c = np.nonzero(same)
                assert same[r.min():r.max() + 1, c.min():c.max() + 1].all()
    # the foreground comes from Q = per-sample weight 1/n_k: every class equally likely (10 % each here), where the
    # instance stream P would draw the rarest class with probability n_min / N (30 / 1,222 images, 2.5 %)
    many = cmo_samples(data, rows=300, cols=1, seed=1)
    drawn = np.bincount(many.foreground_classes, minlength=len(counts))
    assert drawn.min() >= 12 and drawn[counts.argmin()] / 300 > 2 * counts.min() / counts.sum()


def test_cmo_samples_grid_text_does_not_overlap() -> None:
    grid = cmo_samples(build_synthetic_lt(imbalance_ratio=10.0), rows=2, cols=6, seed=0)
    fig = grid_figure(grid, "a title that is long enough to need two lines when it is wrapped for\nthe figure")
    texts = [ax.title for ax in fig.axes] + [fig._suptitle]
    assert not overlapping(fig, texts)
    plt.close(fig)


@pytest.mark.parametrize("args", [["--out", "x.jpg"], ["--out", "x.png", "--data", "bogus=1"],
                                  ["--out", "x.png", "--mixer", "remix"], ["--out", "x.png", "--mixer", "nope"],
                                  ["--out", "x.png", "--dataset", "cifar10_lt", "--data", "root=/nonexistent"],
                                  ["--out", "x.png", "--rows", "0"]])
def test_cmo_samples_bad_input_exits_2(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _one_error_line(runner.invoke(app, ["figure", "cmo-samples", *args]))
    assert not list(tmp_path.iterdir())


def _train_list(path: Path, counts: list[int]) -> Path:
    path.write_text("".join(f"train/c{k}/{i}.jpg {k}\n" for k, n in enumerate(counts) for i in range(n)))
    return path


def test_data_stats_split_list_prints_the_real_ratio(tmp_path: Path) -> None:
    counts = [40] * 10 + [8] * 990  # ImageNet-LT has 1000 classes: max 40, min 8
    lst = _train_list(tmp_path / "train.txt", counts)
    res = runner.invoke(app, ["data", "stats", "imagenet_lt", "--train-list", str(lst), "--imbalance-ratio", "256",
                              "--json"])
    out = json.loads(res.output)
    assert (out["imbalance_ratio"], out["ratio_ignored"], out["total"]) == (5.0, True, 400 + 7920)
    assert out["groups"] == {"many": 0, "medium": 10, "few": 990}
    res = runner.invoke(app, ["data", "stats", "imagenet_lt", "--train-list", str(lst), "--imbalance-ratio", "256"])
    assert "imbalance ratio max/min 5 (--imbalance-ratio 256 ignored" in res.output
    res = runner.invoke(app, ["data", "stats", "cifar100_lt", "--imbalance-ratio", "50", "--json"])
    assert json.loads(res.output)["imbalance_ratio"] == 50.0 and not json.loads(res.output)["ratio_ignored"]
    _one_error_line(runner.invoke(app, ["data", "stats", "imagenet_lt", "--train-list", str(tmp_path / "no.txt")]))


def test_report_table1(tmp_path: Path) -> None:
    lst = _train_list(tmp_path / "train.txt", [1280] + [5] * 999)
    res = runner.invoke(app, ["report", "table1", "--split-list", f"imagenet_lt={lst}", "--out-dir",
                              str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "table1.md").read_text()
    assert "| CIFAR-100-LT (ρ = 100) | 100 | 50K | {10, 50, 100} | 100 | 10,847 | 500 | 5 | 100 | 35 / 35 / 30 |" in md
    assert "| CIFAR-10-LT (ρ = 50) | n/a | n/a | n/a | 10 | 13,996 | 5,000 | 100 | 50 | 9 / 1 / 0 |" in md
    assert "| ImageNet-LT | 1,000 | 115.8K | 256 | 1,000 | 6,275 | 1,280 | 5 | 256 | 1 / 0 / 999 |" in md
    inat = next(ln for ln in md.splitlines() if ln.startswith("| iNaturalist 2018"))
    assert inat.count("n/a") == 6 and "--split-list inat2018=PATH" in md
    tex = (tmp_path / "rep" / "table1.tex").read_text()
    assert r"CIFAR-100-LT ($\rho$ = 100) & 100 & 50K" in tex
    _one_error_line(runner.invoke(app, ["report", "table1", "--split-list", "imagenet=x", "--out-dir",
                                        str(tmp_path / "r2")]))
    _one_error_line(runner.invoke(app, ["report", "table1", "--split-list", f"inat2018={tmp_path / 'none.txt'}",
                                        "--out-dir", str(tmp_path / "r2")]))
