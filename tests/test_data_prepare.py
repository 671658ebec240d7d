"""Synthetic JPEG sets in the official layouts, `data prepare` and `data check` (one line per problem, exit 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.data.base import DataError
from benchmark.data.prepare import PAPER, check, coco_entries, list_stats, prepare
from benchmark.data.split_lists import build_imagenet_lt, build_inat2018, read_split
from benchmark.data.synthetic_jpeg import SynthSpec, pareto_counts, write_synthetic

SPLITS = Path("/work/shared/data/splits")


def synth(root: Path, kind: str, **kw: int) -> Path:
    write_synthetic(SynthSpec(kind, **{"classes": 6, "max_per_class": 9, "min_per_class": 2, **kw}), root)
    return root


def test_pareto_counts_fall_from_max_to_min_as_a_power_law() -> None:
    # a = log(8/2) / log(3) = 1.2619; sizes 8, round(8 * 2^-a) = round(3.33) = 3, 2; dealt in a random order
    assert sorted(pareto_counts(3, 8, 2, seed=1)) == [2, 3, 8]
    counts = pareto_counts(50, 500, 5, seed=0)
    assert max(counts) == 500 and min(counts) == 5 and counts[0] != 500  # the head is not forced to label 0
    with pytest.raises(ValueError):
        pareto_counts(3, 2, 5)


def test_imagenet_lt_synthetic_set_has_the_official_lists(tmp_path: Path) -> None:
    out = write_synthetic(SynthSpec("imagenet_lt", classes=5, max_per_class=8, min_per_class=2, test_per_class=3),
                          tmp_path)
    train = (tmp_path / "ImageNet_LT_train.txt").read_text().splitlines()
    assert all(re.fullmatch(r"train/(n\d{8})/\1_\d+\.JPEG \d+", line) for line in train)
    test = (tmp_path / "ImageNet_LT_test.txt").read_text().splitlines()
    assert all(re.fullmatch(r"val/n\d{8}/ILSVRC2012_val_\d{8}\.JPEG \d+", line) for line in test)
    assert len(test) == 15 and len((tmp_path / "ImageNet_LT_val.txt").read_text().splitlines()) == 5
    _, y = read_split(tmp_path / "ImageNet_LT_train.txt")
    assert np.bincount(y).tolist() == out.counts and sum(out.counts) == len(train)
    data = build_imagenet_lt(str(tmp_path), num_classes=5)  # the project's loader reads them as they are
    assert data.num_classes == 5 and data.class_counts == out.counts
    img, label = data.datasets(None, None)[0][0]
    assert img.mode == "RGB" and max(img.size) == 64 and label == int(y[0])
    with pytest.raises(DataError, match="labels span 0..4, expected 0..999"):
        build_imagenet_lt(str(tmp_path))


def test_inat_synthetic_set_is_coco_json_and_prepare_writes_the_lists(tmp_path: Path) -> None:
    out = write_synthetic(SynthSpec("inat2018", classes=4, max_per_class=6, min_per_class=2, test_per_class=3),
                          tmp_path)
    doc = json.loads((tmp_path / "train2018.json").read_text())
    assert {"images", "annotations", "categories"} <= set(doc) and len(doc["categories"]) == 4
    im = doc["images"][0]
    assert (tmp_path / im["file_name"]).is_file() and {"id", "width", "height"} <= set(im)
    assert [p.name for p in prepare("inat2018", tmp_path)] == ["iNaturalist18_train.txt", "iNaturalist18_val.txt"]
    lines = (tmp_path / "iNaturalist18_train.txt").read_text().splitlines()
    for line in lines:  # MiSLAS format: the class folder is the label
        m = re.fullmatch(r"train_val2018/[A-Za-z]+/(\d+)/[0-9a-f]{32}\.jpg (\d+)", line)
        assert m and m.group(1) == m.group(2)
    assert len(lines) == sum(out.counts) and len((tmp_path / "iNaturalist18_val.txt").read_text().splitlines()) == 12
    assert build_inat2018(str(tmp_path), num_classes=4).class_counts == out.counts


@pytest.mark.parametrize("kind", ["imagenet_lt", "inat2018"])
def test_prepare_then_check_passes_on_the_synthetic_set(tmp_path: Path, kind: str) -> None:
    synth(tmp_path, kind)
    prepare(kind, tmp_path)
    res = check(kind, tmp_path, expect="synthetic")
    assert res.problems == [] and res.checked_files == res.stats["images"] + res.stats["test_images"]
    assert res.stats["classes"] == 6 and res.stats["max"] == 9 and res.stats["min"] == 2
    assert check(kind, tmp_path, expect="synthetic", sample=3).checked_files == 3
    assert check(kind, tmp_path, expect="paper").problems == [
        f"classes: the train list has images of 6 classes (labels 0..5 over both lists), expected "
        f"{PAPER[kind]['classes']} (paper)"]


def _cli(kind: str, root: Path, *extra: str) -> tuple[int, list[str]]:
    res = CliRunner().invoke(app, ["data", "check", kind, "--root", str(root), "--expect", "synthetic", *extra])
    return res.exit_code, [line for line in res.output.splitlines() if line.startswith("error:")]


def test_each_corrupted_variant_is_one_line_and_exit_2(tmp_path: Path) -> None:
    root = synth(tmp_path, "imagenet_lt")
    prepare("imagenet_lt", root)
    assert _cli("imagenet_lt", root) == (0, [])
    first = (root / "ImageNet_LT_train.txt").read_text().splitlines()[0].split()[0]
    second = (root / "ImageNet_LT_test.txt").read_text().splitlines()[0].split()[0]

    (root / first).rename(root / "moved.JPEG")  # a missing file
    code, lines = _cli("imagenet_lt", root)
    assert code == 2 and lines == [f"error: missing image: {root / first}"]
    (root / "moved.JPEG").rename(root / first)

    (root / second).write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")  # an undecodable file
    code, lines = _cli("imagenet_lt", root)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: undecodable image: {root / second} ")

    train = (root / "ImageNet_LT_train.txt").read_text()  # a list with one class too many
    (root / "ImageNet_LT_train.txt").write_text(train + f"{first} 6\n")
    (root / second).write_bytes((root / first).read_bytes())
    code, lines = _cli("imagenet_lt", root)
    assert code == 2 and lines == ["error: classes: the train list has images of 7 classes (labels 0..6 over both "
                                   "lists), expected 6 (synthetic)"]


def test_many_problems_of_one_kind_are_capped(tmp_path: Path) -> None:
    root = synth(tmp_path, "inat2018", max_per_class=30)
    prepare("inat2018", root)
    for line in (root / "iNaturalist18_train.txt").read_text().splitlines()[:15]:
        (root / line.split()[0]).unlink()
    problems = check("inat2018", root, expect="synthetic").problems
    assert len(problems) == 11 and problems[-1] == "missing image: 5 more (first 10 shown)"


def test_prepare_imagenet_lt_copies_validated_lists_and_reports_bad_input(tmp_path: Path) -> None:
    src = synth(tmp_path / "official", "imagenet_lt")
    written = prepare("imagenet_lt", tmp_path / "data", source=src)
    assert [p.read_text() for p in written] == [(src / p.name).read_text() for p in written]
    (src / "ImageNet_LT_test.txt").write_text("val/x.JPEG zero\n")
    with pytest.raises(DataError, match=r"ImageNet_LT_test.txt:1: malformed line"):
        prepare("imagenet_lt", tmp_path / "data", source=src)
    (tmp_path / "bad.json").write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}')
    with pytest.raises(DataError, match="1 image\\(s\\) without an annotation, e.g. a.jpg"):
        coco_entries(tmp_path / "bad.json")
    res = CliRunner().invoke(app, ["data", "prepare", "inat2018", "--root", str(tmp_path / "none")])
    assert res.exit_code == 2 and res.output.count("error:") == 1


@pytest.mark.skipif(not SPLITS.is_dir(), reason="the real split lists (shared/data/splits) are not here")
def test_the_real_test_lists_match_the_expected_statistics() -> None:
    for kind, name in (("imagenet_lt", "ImageNet_LT_test.txt"), ("inat2018", "iNaturalist18_val.txt")):
        _, y = read_split(SPLITS / name)
        st = list_stats(y, PAPER[kind]["classes"], y)
        assert st["classes"] == PAPER[kind]["classes"] and st["test_per_class"] == PAPER[kind]["test_per_class"]
    _, y = read_split(SPLITS / "ImageNet_LT_val.txt")  # the LT val list: 20 per class from the train folder
    assert np.bincount(y).tolist() == [20] * 1000


def test_cli_synth_prepare_check_round_trip(tmp_path: Path) -> None:
    run = CliRunner().invoke
    res = run(app, ["data", "synth", "inat2018", "--root", str(tmp_path), "--classes", "4", "--max-per-class", "7",
                    "--min-per-class", "2", "--size", "32"])
    assert res.exit_code == 0 and "data.num_classes=4" in res.output
    assert run(app, ["data", "prepare", "inat2018", "--root", str(tmp_path)]).exit_code == 0
    res = run(app, ["data", "check", "inat2018", "--root", str(tmp_path), "--expect", "synthetic", "--json"])
    doc = json.loads(res.output)
    assert res.exit_code == 0 and doc["problems"] == [] and doc["stats"]["max"] == 7 and doc["stats"]["classes"] == 4
    bad = run(app, ["data", "synth", "inat2018", "--root", str(tmp_path / "x"), "--min-per-class", "50"])
    assert bad.exit_code == 2 and bad.output.count("error:") == 1
