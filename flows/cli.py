"""The `mmflow` command: run a scenario over files, folders and globs; score outputs."""

from __future__ import annotations

import os

# Prefect's own console logs would tear through the progress bar; the UI still gets them all.
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from flows.progress import ItemDone, listening
from tasks.models import FIELD_NAMES, Status
from tasks.ocr import OcrEngine

if TYPE_CHECKING:
    from flows.invoice import InvoiceRunReport
    from tasks.invoice import InvoiceOptions

app = typer.Typer(
    help="Multimodal document, image and audio processing on Prefect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
run_app = typer.Typer(help="Run a scenario's flow over inputs.", no_args_is_help=True)
eval_app = typer.Typer(help="Score outputs against ground truth.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(eval_app, name="eval")
console = Console()

Inputs = Annotated[list[str], typer.Argument(help="Files, folders, globs or s3:// URIs.")]
Out = Annotated[str, typer.Option("--out", "-o", help="Output folder (or s3:// prefix).")]


def _status_style(status: Status) -> str:
    return {"ok": "green", "rejected": "yellow", "failed": "red"}[status.value]


@run_app.command("invoice")
def run_invoice(
    inputs: Inputs,
    out: Out = "out",
    ocr_engine: Annotated[
        OcrEngine, typer.Option(help="OCR engine for pages without a usable text layer.")
    ] = OcrEngine.RAPIDOCR,
    workers: Annotated[int, typer.Option(min=1, help="Concurrent task runs.")] = 2,
    cache: Annotated[bool, typer.Option(help="Reuse results of unchanged steps.")] = True,
    cache_dir: Annotated[
        str | None, typer.Option(help="Where step results persist (default ~/.cache/mmflow).")
    ] = None,
    dpi: Annotated[int, typer.Option(min=72, max=600, help="Rendering DPI for OCR.")] = 200,
) -> None:
    """Extract verified fields and line items from invoices and receipts."""
    from tasks.invoice import InvoiceOptions
    from tasks.route import RouteOptions

    options = InvoiceOptions(ocr_engine=ocr_engine, route=RouteOptions(render_dpi=dpi))
    report = _invoice_with_progress(inputs, out, options, cache, cache_dir, workers)
    _print_invoice_report(report)
    if report.failed:
        raise typer.Exit(1)


def _invoice_with_progress(
    inputs: list[str],
    out: str,
    options: InvoiceOptions,
    cache: bool = True,
    cache_dir: str | None = None,
    workers: int = 2,
) -> InvoiceRunReport:
    from flows.invoice import invoice_flow_with_workers
    from tasks.inputs import expand_inputs

    total = len(expand_inputs(inputs))
    if total == 0:
        console.print("[red]No inputs found.[/] Name files, folders or globs.")
        raise typer.Exit(2)
    progress = Progress(
        TextColumn("[bold]invoice"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
    )
    with progress:
        bar = progress.add_task("starting Prefect…", total=total)

        def advance(event: ItemDone) -> None:
            progress.update(bar, advance=event.units, description=Path(event.uri).name)

        with listening(advance):
            report: InvoiceRunReport = invoice_flow_with_workers(workers)(
                inputs=inputs,
                out=out,
                options=options,
                cache=cache,
                cache_dir=cache_dir,
                workers=workers,
            )
    return report


def _print_invoice_report(report: InvoiceRunReport) -> None:
    table = Table(title=f"mmflow invoice → {report.out}")
    for column in ("input", "status", "route", "total", "checks", "detail"):
        table.add_column(column, overflow="fold")
    for doc in report.documents:
        checks = " ".join(f"{n} {k}" for k, n in sorted(doc.checks.items()))
        total, currency = doc.fields.get("total"), doc.fields.get("currency")
        total_text = f"{total} {currency or ''}".strip() if total else "—"
        detail = f"{doc.error.code}: {doc.error.message}" if doc.error else ""
        table.add_row(
            Path(doc.uri).name,
            f"[{_status_style(doc.status)}]{doc.status.value}[/]",
            ",".join(sorted(set(doc.routes))),
            total_text,
            checks,
            detail,
        )
    console.print(table)
    counts = {s: sum(d.status is s for d in report.documents) for s in Status}
    console.print(
        f"{counts[Status.OK]} ok, {counts[Status.REJECTED]} rejected, "
        f"{counts[Status.FAILED]} failed · manifest: {report.out}/manifest.jsonl"
    )


@eval_app.command("invoice")
def eval_invoice(
    outputs: Annotated[Path, typer.Argument(help="Folder of mmflow invoice outputs.")],
    gold: Annotated[Path, typer.Option(help="Folder of ground truth (invoice2data or SROIE).")],
) -> None:
    """Per-field accuracy of invoice outputs against ground truth."""
    from tasks.evaluate import evaluate, load_predictions, render_report

    report = evaluate(load_predictions(outputs), gold)
    console.print(render_report(report))


@app.command("samples")
def samples(
    out: Annotated[Path, typer.Argument(help="Folder to write sample inputs into.")] = Path(
        "samples"
    ),
) -> None:
    """Write mmflow's own sample invoices: a text PDF, a scan and a phone photo."""
    from tasks.samples import make_samples

    for path in make_samples(out):
        console.print(str(path))


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Where samples and outputs go.")] = Path("out/demo"),
) -> None:
    """Make the sample invoices and run the invoice flow on them with embedded defaults."""
    from tasks.evaluate import values_match
    from tasks.invoice import InvoiceOptions
    from tasks.samples import make_samples, sample_truth

    paths = make_samples(out / "samples")
    console.print(f"[bold]{len(paths)} sample inputs[/] written to {out / 'samples'}")
    report = _invoice_with_progress([str(p) for p in paths], str(out / "results"), InvoiceOptions())
    _print_invoice_report(report)

    table = Table(title="extracted vs the samples' known truth")
    for column in ("sample", "form", "fields right", "line items", "wrong or missing"):
        table.add_column(column, overflow="fold")
    for path, doc in zip(paths, report.documents, strict=True):
        truth = sample_truth(path)
        wrong = [
            name
            for name in FIELD_NAMES
            if truth.get(name) is not None
            and not values_match(name, str(truth[name]), doc.fields.get(name))
        ]
        expected = [f for f in FIELD_NAMES if truth.get(f) is not None]
        table.add_row(
            path.name,
            str(truth.get("form", "")),
            f"{len(expected) - len(wrong)}/{len(expected)}",
            f"{len(doc.line_items)}/{len(truth.get('line_items', []))}",
            ", ".join(wrong),
        )
    console.print(table)
    if report.failed:
        raise typer.Exit(1)
