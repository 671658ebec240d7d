"""The human view of `run suite --dry-run`: the costed plan's counts, its packs and the data it needs."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from benchmark.run.projection import DryRunPlan, format_count


def print_dry_run(console: Console, report: DryRunPlan) -> None:
    """Counts, projected GPU-hours, the first 40 packs, and missing or to-be-downloaded data (--json has it all)."""
    c, tot, prof = report.counts, report.totals, report.profile
    lines = [
        f"Dry run of {', '.join(s.suite for s in report.suites)}: nothing is trained or written.",
        f"  runs in the suites       {c.planned}",
        f"  distinct runs            {c.distinct}   (settings hash with seed; {c.planned - c.distinct} shared)",
        f"  already finished         {c.finished}   ({c.reuse} runs would get a copy of a finished record, "
        f"{c.skipped} have their own record)",
        f"  to train                 {c.to_train}   ({c.link} more runs get a copy when their twin finishes)",
        f"  packs                    {tot.packs}   (K = {report.pack_size.k}: {report.pack_size.source})",
        f"  member-epochs            {tot.member_epochs:,}",
        f"  images to train          {format_count(tot.train_images)}   (+ {format_count(tot.eval_images)} test "
        f"images evaluated)",
        f"  projected GPU-hours      {tot.projected_gpu_hours:.3g} on one {prof.device_name} "
        f"({tot.projected_runs} runs; profile {prof.file}, {prof.source})",
    ]
    if c.failed:
        lines.append(f"  failed, not retried      {c.failed}   (--retry-failed)")
    for n in tot.not_projected:
        lines.append(f"  not projected            {n.runs} runs on {n.dataset}: {n.member_epochs:,} member-epochs, "
                     f"{format_count(n.train_images)} train + {format_count(n.eval_images)} test images ({n.reason})")
    lines += [f"  note: {n}" for n in report.notes[2:]]  # the first two say where K and the profile come from
    console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
    if report.packs:
        t = Table("#", "K", "dataset", "backbone", "epochs", "images", "img/s", "GPU-h", "runs",
                  title=f"packs ({len(report.packs)})")
        for p in report.packs[:40]:
            first = p.runs[0] + (f" +{len(p.runs) - 1}" if len(p.runs) > 1 else "")
            t.add_row(str(p.index), str(p.size), p.dataset, p.backbone, f"{p.member_epochs:,}",
                      format_count(p.train_images), f"{p.images_per_s:,.0f}" if p.images_per_s else "-",
                      f"{p.gpu_hours:.3f}" if p.gpu_hours is not None else "not projected", first)
        console.print(t)
        if len(report.packs) > 40:
            console.print(f"... {len(report.packs) - 40} more packs (--json lists all)", highlight=False)
    missing = [d for d in report.data if d.status == "missing"]
    download = [d for d in report.data if d.status == "download"]
    if missing:
        console.print(f"Data missing for {len(missing)} rows (these runs would fail):", highlight=False)
        for d in missing:
            cols = f" [{', '.join(d.columns)}]" if d.columns else ""
            console.print(f"  {d.suite} / {d.row}{cols}: {d.message}", highlight=False, markup=False, soft_wrap=True)
    if download:
        for msg in sorted({d.message for d in download}):
            n = sum(d.message == msg for d in download)
            console.print(f"Data to download ({n} rows): {msg}", highlight=False, markup=False, soft_wrap=True)
