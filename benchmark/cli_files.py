"""The `lt-bench data synth | prepare | check` commands and `lt-bench bench --dataset` (Typer, registered by cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from benchmark.cli_common import fail

KindArg = Annotated[str, typer.Argument(help="imagenet_lt or inat2018.")]
RootOpt = Annotated[Path, typer.Option("--root", help="The dataset folder (image tree + split lists).")]
KINDS = ("imagenet_lt", "inat2018")
# long path lines stay whole (a test or a log can grep them), numbers unstyled
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _kind(kind: str) -> str:
    if kind not in KINDS:
        fail(f"unknown dataset '{kind}': choose {' or '.join(KINDS)}")
    return kind


def data_synth(
    kind: KindArg, root: RootOpt,
    classes: Annotated[int, typer.Option("--classes", help="Number of classes.")] = 10,
    max_per_class: Annotated[int, typer.Option("--max-per-class", help="Train images of the head class.")] = 20,
    min_per_class: Annotated[int, typer.Option("--min-per-class", help="Train images of the tail class.")] = 2,
    test_per_class: Annotated[int, typer.Option("--test-per-class", help="Balanced test images per class.")] = 2,
    size: Annotated[int, typer.Option("--size", help="Longer image side in pixels (ImageNet-like: 400).")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the counts and pixels.")] = 0,
    threads: Annotated[int, typer.Option("--threads", help="Threads encoding JPEGs.")] = 8,
) -> None:
    """Write a long-tailed synthetic JPEG set in the official layout (ImageNet-LT lists or iNat 2018 JSONs)."""
    from benchmark.data.synthetic_jpeg import SynthSpec, write_synthetic

    try:
        out = write_synthetic(SynthSpec(_kind(kind), classes, max_per_class, min_per_class, test_per_class,
                                        size=size, seed=seed), root, threads)
    except (ValueError, OSError) as e:
        fail(str(e))
    st = out.stats()
    console.print(f"wrote {st['images']:,} train + {classes * test_per_class:,} test JPEGs of {classes} classes "
                  f"(max {st['max']}, min {st['min']}) and {', '.join(out.files)} under {out.root}; next: lt-bench "
                  f"data prepare {kind} --root {out.root}, then train with data.num_classes={classes}")


def data_prepare(
    kind: KindArg, root: RootOpt,
    source: Annotated[Path | None, typer.Option("--from", help="Folder with the official files (default: --root).")]
    = None,
) -> None:
    """Build the split lists the loader reads (ImageNet_LT_*.txt; iNaturalist18_*.txt from train2018.json /
    val2018.json) in --root from the official files."""
    from benchmark.data.base import DataError
    from benchmark.data.prepare import prepare

    try:
        written = prepare(_kind(kind), root, source)
    except (DataError, OSError) as e:
        fail(str(e))
    console.print(f"{kind}: split lists ready in {root}: {', '.join(p.name for p in written)}; next: lt-bench data "
                  f"check {kind} --root {root}")


def data_check(
    kind: KindArg, root: RootOpt,
    sample: Annotated[int | None, typer.Option("--sample", help="Decode only N listed images drawn at random.")]
    = None,
    expect: Annotated[str, typer.Option("--expect", help="Statistics to match: paper (Table 1), synthetic (what "
                                        "`data synth` wrote) or none.")] = "paper",
    threads: Annotated[int, typer.Option("--threads", help="Threads decoding images.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Verify the split lists, that every listed image exists and decodes, and the Table 1 statistics; one line per
    problem and exit 2 when any."""
    from benchmark.data.base import DataError
    from benchmark.data.prepare import check

    if sample is not None and sample < 1:
        fail(f"--sample {sample}: give a positive number of images")
    try:
        res = check(_kind(kind), root, sample=sample, expect=expect, threads=threads)
    except DataError as e:
        fail(str(e))
    if as_json:
        print(json.dumps({"problems": res.problems, "stats": res.stats, "checked_files": res.checked_files}))
    for line in res.problems:
        err.print(f"error: {line}", markup=False)
    if res.problems:
        raise typer.Exit(2)
    st = res.stats
    if not as_json:
        console.print(f"{kind} OK: {st['images']:,} train images, {st['classes']} classes, max {st['max']}, min "
                      f"{st['min']}, many/medium/few {st['many']}/{st['medium']}/{st['few']}, test "
                      f"{st['test_images']:,} ({st['test_per_class']}/class); {res.checked_files:,} images decoded; "
                      f"statistics as expected ({expect})")


def file_bench_cmd(dataset: str, data_root: Path | None, device: str, steps: int | None, out: Path | None,
                   as_json: bool) -> None:
    """`lt-bench bench --dataset`: PIL reference vs gpu_decode images/s (input alone and training CE + CMO)."""
    from benchmark.data.synthetic_jpeg import write_text
    from benchmark.tools.file_bench import format_file_bench, run_file_bench

    try:
        result = run_file_bench(_kind(dataset), data_root, device=device, steps=steps)
    except ValueError as e:
        fail(str(e))
    print(format_file_bench(result))
    if out:
        write_text(out, json.dumps(result, indent=1, default=str))
    if as_json:
        print(json.dumps(result, indent=1, default=str))


def register(data_app: typer.Typer) -> None:
    """Add synth, prepare and check to `lt-bench data`."""
    data_app.command("synth")(data_synth)
    data_app.command("prepare")(data_prepare)
    data_app.command("check")(data_check)
