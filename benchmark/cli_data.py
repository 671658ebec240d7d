"""CLI commands on datasets and figures without records: `data stats`, `figure cmo-samples` and `report table1`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli_common import console, fail
from benchmark.config.suite import SuiteError, parse_set
from benchmark.schema.registry import UnknownComponentError

data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
figure_app = typer.Typer(no_args_is_help=True, help="Figures that need no training records (e.g. the paper's Fig. 2).")


@data_app.command("stats")
def data_stats(
    dataset: Annotated[str, typer.Argument(help="Dataset name, e.g. cifar100_lt.")],
    imbalance_ratio: Annotated[float | None, typer.Option(
        "--imbalance-ratio", help="n_max / n_min of the exponential profile (>= 1; default 100). Split-list "
                                  "datasets (imagenet_lt, inat2018) have fixed counts and ignore it.")] = None,
    root: Annotated[str | None, typer.Option("--root", help="Split-list datasets: the data folder.")] = None,
    train_list: Annotated[str | None, typer.Option("--train-list", help="Split-list datasets: the train list "
                                                                        "file.")] = None,
    many_above: Annotated[int, typer.Option(help="Many-shot: n > this.")] = 100,
    few_below: Annotated[int, typer.Option(help="Few-shot: n < this.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Class counts, the real max/min ratio and many/medium/few group sizes of a train split (no images needed)."""
    from benchmark.data.base import DataError
    from benchmark.tools.datastats import dataset_stats, stats_line

    if imbalance_ratio is not None and imbalance_ratio < 1:
        fail(f"--imbalance-ratio {imbalance_ratio}: must be >= 1")
    try:
        out = dataset_stats(dataset, imbalance_ratio, root=root, train_list=train_list, many_above=many_above,
                            few_below=few_below)
    except (UnknownComponentError, DataError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(out))
        return
    console.print(stats_line(out), highlight=False, soft_wrap=True)


@figure_app.command("cmo-samples")
def figure_cmo_samples(
    out: Annotated[Path, typer.Option("--out", help="Output file: .png (150 dpi), .pdf or .svg.")],
    dataset: Annotated[str, typer.Option(help="Dataset (default: embedded, no download).")] = "synthetic_lt",
    data: Annotated[list[str] | None, typer.Option("--data", help="Data setting key=value (repeatable): "
                                                   "imbalance_ratio, root, format, download, image_size.")] = None,
    rows: Annotated[int, typer.Option(help="Foreground images (drawn from Q).")] = 4,
    cols: Annotated[int, typer.Option(help="CMO samples per foreground image.")] = 6,
    alpha: Annotated[float, typer.Option(help="lam ~ Beta(alpha, alpha).")] = 1.0,
    mixer: Annotated[str, typer.Option(help="A two-stream mixer: cmo, cutmix, cmo_back, ...")] = "cmo",
    seed: Annotated[int, typer.Option(help="Seed of the draws and boxes.")] = 0,
) -> None:
    """The paper's Fig. 2: a grid of CMO-augmented samples made by the product's own mixer (each row: a foreground
    image drawn from the minority-weighted Q, then its patch pasted on backgrounds drawn from P)."""
    from benchmark.data.base import DataError
    from benchmark.tools.figures import write_cmo_samples

    try:
        path, grid = write_cmo_samples(out, dataset, parse_set(data or []), rows=rows, cols=cols, alpha=alpha,
                                       mixer=mixer, seed=seed)
    except (SuiteError, UnknownComponentError, DataError, ValueError) as e:
        fail(str(e).splitlines()[0])
    console.print(f"wrote {path}: {rows} x {1 + cols} images (foreground classes "
                  f"{', '.join(map(str, grid.foreground_classes))})", highlight=False, soft_wrap=True)


def table1_report(split_lists: list[str], out_dir: Path) -> None:
    """`report table1`: Table 1 from the dataset statistics (CIFAR-LT at the paper's ratios; ImageNet-LT / iNat from
    their train lists, `--split-list imagenet_lt=PATH`, else their default location)."""
    from benchmark.data.base import DataError
    from benchmark.report.table1 import write_table1
    from benchmark.tools.datastats import table1_stats

    try:
        paths, text = write_table1(table1_stats(split_lists), out_dir)
    except (ValueError, DataError) as e:
        fail(str(e))
    print(text)
    console.print(f"wrote {', '.join(map(str, paths))}", highlight=False, soft_wrap=True)
