"""The `mmflow` command: run a scenario over files, folders and globs; score outputs."""

from __future__ import annotations

import os

# Prefect's own console logs would tear through the progress bar; the UI still gets them all.
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The temporary server needs ~8 s on an idle 2-core machine; give a busy one room.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mmflow.flows.progress import ItemDone, listening
from mmflow.flows.runners import AddressOpt, Runner, RunnerOpt
from mmflow.tasks.errors import MissingDependency
from mmflow.tasks.models import FIELD_NAMES, BatchScenario, Status
from mmflow.tasks.ocr import OcrEngine

if TYPE_CHECKING:
    from decimal import Decimal

    from mmflow.flows.invoice import InvoiceRunReport
    from mmflow.tasks.invoice import InvoiceOptions

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
Workers = Annotated[int, typer.Option(min=1, help="Concurrent task runs.")]
Cache = Annotated[bool, typer.Option(help="Reuse results of unchanged steps.")]
CacheDir = Annotated[
    str | None, typer.Option(help="Where step results persist (default ~/.cache/mmflow).")
]
MaxUsd = Annotated[
    float | None, typer.Option(min=0, help="Budget for the run's model calls, in USD.")
]


def _status_style(status: Status) -> str:
    return {"ok": "green", "rejected": "yellow", "failed": "red"}[status.value]


R = TypeVar("R")


def _with_progress(
    label: str,
    total: float,
    run: Callable[[], R],
    *,
    units: str = "",
    units_of: Callable[[ItemDone], float] = lambda event: event.units,
) -> R:
    """Run a flow while a bar advances as each input ends (flows.progress events)."""
    counter = (
        TextColumn(f"{{task.completed:.0f}}/{{task.total:.0f}} {units}")
        if units
        else MofNCompleteColumn()
    )
    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        counter,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
    )
    with progress:
        bar = progress.add_task("starting Prefect…", total=total or 1.0)

        def advance(event: ItemDone) -> None:
            progress.update(bar, advance=units_of(event), description=Path(event.uri).name)

        with listening(advance):
            return run()


def _print_counts(statuses: list[Status], out: str) -> None:
    counts = {s: statuses.count(s) for s in Status}
    console.print(
        f"{counts[Status.OK]} ok, {counts[Status.REJECTED]} rejected, "
        f"{counts[Status.FAILED]} failed · manifest: {out}/manifest.jsonl"
    )


def _runner_or_exit(
    runner: Runner, address: str | None, workers: int, provider: str | None = None
) -> None:
    """Refuse a runner setting that cannot work, before any input is read."""
    from mmflow.flows.runners import task_runner_for

    if provider is not None and runner is not Runner.THREADS:
        console.print(
            "[red]Invalid options:[/] a run with --provider-block keeps its budget in one "
            "process; use --runner threads"
        )
        raise typer.Exit(2)
    try:
        task_runner_for(runner, workers, address)
    except ValueError as error:
        console.print(f"[red]Invalid options:[/] {escape(str(error))}")
        raise typer.Exit(2) from error
    except MissingDependency as error:  # its text holds extras in brackets: not rich markup
        console.print(f"[red]Missing dependency:[/] {escape(str(error))}")
        raise typer.Exit(2) from error


def _expanded_or_exit(inputs: list[str]) -> list[str]:
    from mmflow.tasks.inputs import expand_inputs

    uris = expand_inputs(inputs)
    if not uris:
        console.print("[red]No inputs found.[/] Name files, folders or globs.")
        raise typer.Exit(2)
    return uris


@run_app.command("invoice")
def run_invoice(
    inputs: Inputs,
    out: Out = "out",
    ocr_engine: Annotated[
        OcrEngine, typer.Option(help="OCR engine for pages without a usable text layer.")
    ] = OcrEngine.RAPIDOCR,
    workers: Workers = 2,
    cache: Cache = True,
    cache_dir: CacheDir = None,
    dpi: Annotated[int, typer.Option(min=72, max=600, help="Rendering DPI for OCR.")] = 200,
    provider_block: Annotated[
        str | None,
        typer.Option(help="Saved provider block name: reads the pages the router sends to vision."),
    ] = None,
    max_usd: MaxUsd = None,
    runner: RunnerOpt = Runner.THREADS,
    address: AddressOpt = None,
) -> None:
    """Extract verified fields and line items from invoices and receipts."""
    from decimal import Decimal

    from mmflow.tasks.invoice import InvoiceOptions
    from mmflow.tasks.route import RouteOptions

    _runner_or_exit(runner, address, workers, provider_block)
    route = RouteOptions(render_dpi=dpi, allow_vision=provider_block is not None)
    options = InvoiceOptions(ocr_engine=ocr_engine, route=route)
    # The block goes by name: the flow loads it (blocks.providers.resolve_provider), so no key is
    # ever a flow-run parameter.
    report = _invoice_with_progress(
        inputs,
        out,
        options,
        cache,
        cache_dir,
        workers,
        provider=provider_block,
        max_usd=Decimal(str(max_usd)) if max_usd is not None else None,
        runner=runner,
        address=address,
    )
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
    provider: str | None = None,
    max_usd: Decimal | None = None,
    runner: Runner = Runner.THREADS,
    address: str | None = None,
) -> InvoiceRunReport:
    from mmflow.flows.invoice import invoice_flow
    from mmflow.flows.runners import run_on

    uris = _expanded_or_exit(inputs)
    return cast(
        "InvoiceRunReport",
        _with_progress(
            "invoice",
            len(uris),
            lambda: run_on(
                invoice_flow,
                runner,
                workers,
                address,
                inputs=uris,
                out=out,
                options=options,
                cache=cache,
                cache_dir=cache_dir,
                workers=workers,
                provider=provider,
                max_usd=max_usd,
            ),
        ),
    )


def _print_invoice_report(report: InvoiceRunReport) -> None:
    table = Table(title=f"mmflow invoice → {report.out}")
    for column in ("input", "status", "route", "total", "checks", "detail"):
        table.add_column(column, overflow="fold")
    for doc in report.documents:
        checks = " ".join(f"{n} {k}" for k, n in sorted(doc.details.get("checks", {}).items()))
        total, currency = doc.details.get("total"), doc.details.get("currency")
        total_text = f"{total} {currency or ''}".strip() if total else "—"
        detail = f"{doc.error.code}: {doc.error.message}" if doc.error else ""
        table.add_row(
            Path(doc.uri).name,
            f"[{_status_style(doc.status)}]{doc.status.value}[/]",
            doc.details.get("route", ""),
            total_text,
            checks,
            detail,
        )
    console.print(table)
    _print_counts([d.status for d in report.documents], report.out)


@run_app.command("batch")
def run_batch(
    source: Annotated[str, typer.Argument(help="A folder, glob or s3:// prefix to process.")],
    out: Out = "out",
    scenario: Annotated[
        BatchScenario, typer.Option(help="What every input is: the scenario to run.")
    ] = BatchScenario.INVOICE,
    workers: Workers = 2,
    group_size: Annotated[
        int | None,
        typer.Option(min=1, help="Inputs per task run (default: two groups per worker, ≤ 25)."),
    ] = None,
    cache: Cache = True,
    cache_dir: CacheDir = None,
    runner: RunnerOpt = Runner.THREADS,
    address: AddressOpt = None,
) -> None:
    """Process a whole folder or bucket prefix; run it again to finish an interrupted batch.

    Inputs already in OUT's manifest are not recomputed, and the same bytes under two names
    are processed once (the second is recorded as a `duplicate`).
    """
    from mmflow.flows.batch import batch_flow
    from mmflow.flows.runners import run_on

    _runner_or_exit(runner, address, workers)
    uris = _expanded_or_exit([source])
    report = _with_progress(
        f"batch {scenario.value}",
        len(uris),
        lambda: run_on(
            batch_flow,
            runner,
            workers,
            address,
            source=source,
            out=out,
            scenario=scenario,
            cache=cache,
            cache_dir=cache_dir,
            workers=workers,
            group_size=group_size,
        ),
        units_of=lambda _event: 1.0,
    )
    table = Table(title=f"mmflow batch {scenario.value} {source} → {out}")
    table.add_column("inputs")
    table.add_column("count", justify="right")
    for label, count in (
        ("listed", report.listed),
        ("processed now", report.processed),
        ("ended by an earlier run", report.resumed),
        ("duplicates", report.duplicates),
    ):
        table.add_row(label, str(count))
    console.print(table)
    for summary in [s for s in report.inputs if s.status is Status.FAILED][:20]:
        console.print(
            f"[red]failed[/] {summary.uri}: {summary.error.message if summary.error else ''}"
        )
    _print_counts([s.status for s in report.inputs], out)
    if report.failed:
        raise typer.Exit(1)


@run_app.command("image")
def run_image(
    inputs: Inputs,
    out: Out = "out",
    task: Annotated[
        str, typer.Option(help="describe | classify | extract-text | chart")
    ] = "describe",
    provider_block: Annotated[
        str | None, typer.Option(help="Saved provider block name; omit to run offline.")
    ] = None,
    max_usd: Annotated[float | None, typer.Option(help="Budget for the whole run, in USD.")] = None,
    cache: Cache = True,
) -> None:
    """Classify, read and cost images; with a provider, answer the task at the cheapest tier."""
    from decimal import Decimal

    from mmflow.flows.image import image_flow
    from mmflow.tasks.image import ImageTask

    if task not in {t.value for t in ImageTask}:
        raise typer.BadParameter(f"{task!r}; choose describe, classify, extract-text or chart")
    uris = _expanded_or_exit(inputs)
    report = _with_progress(
        "image",
        len(uris),
        lambda: image_flow(
            inputs=uris,
            out=out,
            task=ImageTask(task),
            provider=provider_block,
            max_usd_per_run=Decimal(str(max_usd)) if max_usd is not None else None,
            cache=cache,
        ),
    )
    table = Table(title=f"mmflow image ({report.task.value}) → {report.out}")
    for column in ("input", "status", "kind", "tier", "tokens sent / full", "answer", "detail"):
        table.add_column(column, overflow="fold")
    for item in report.images:
        table.add_row(
            Path(item.uri).name,
            f"[{_status_style(item.status)}]{item.status.value}[/]",
            item.kind or "—",
            item.tier or "—",
            f"{item.image_tokens} / {item.full_high_tokens}",
            item.answer_source or "—",
            f"{item.error.code}: {item.error.message}"
            if item.error
            else ("injection flagged" if item.injection_flagged else ""),
        )
    console.print(table)
    console.print(f"spent ${report.spent_usd} · manifest: {report.out}/manifest.jsonl")
    if report.failed:
        raise typer.Exit(1)


@eval_app.command("invoice")
def eval_invoice(
    outputs: Annotated[Path, typer.Argument(help="Folder of mmflow invoice outputs.")],
    gold: Annotated[Path, typer.Option(help="Folder of ground truth (invoice2data or SROIE).")],
) -> None:
    """Per-field accuracy of invoice outputs against ground truth."""
    from mmflow.tasks.evaluate import evaluate, load_predictions, render_report

    predictions = load_predictions(outputs)
    if not predictions:
        console.print(f"[red]No invoice outputs (<stem>.json) found in {outputs}.[/]")
        raise typer.Exit(2)
    report = evaluate(predictions, gold)
    console.print(render_report(report))


# ---------------------------------------------------------------- meeting scenario


@run_app.command("meeting")
def run_meeting(
    inputs: Inputs,
    out: Out = "out",
    speakers: Annotated[
        int | None, typer.Option("--speakers", min=1, help="Exact number of speakers, if known.")
    ] = None,
    min_speakers: Annotated[int, typer.Option(min=1, help="Fewest speakers to consider.")] = 1,
    max_speakers: Annotated[int, typer.Option(min=1, help="Most speakers to consider.")] = 8,
    language: Annotated[
        str | None, typer.Option(help="Spoken language (ISO 639-1, e.g. en); omit to detect.")
    ] = None,
    stt_model: Annotated[
        str | None,
        typer.Option(help="Local faster-whisper model folder; omit for the embedded Whisper base."),
    ] = None,
    diarisation: Annotated[
        str,
        typer.Option(help="Diarisation: auto | segmentation | embeddings | channels | pyannote."),
    ] = "auto",
    pyannote_pipeline: Annotated[
        str | None,
        typer.Option(
            help="For --diarisation pyannote: a pipeline folder (config.yaml + checkpoints) "
            "or a Hugging Face id such as pyannote/speaker-diarization-community-1."
        ),
    ] = None,
    hf_token: Annotated[
        str | None,
        typer.Option(
            help="Hugging Face token for a hub pipeline; prefer the HF_TOKEN variable "
            "(a command line is visible to other users). Never stored or written.",
            show_default=False,
        ),
    ] = None,
    denoise: Annotated[str, typer.Option(help="Noise reduction: auto | on | off.")] = "auto",
    speaker_profiles: Annotated[
        str | None,
        typer.Option(help="Folder with one sub-folder of voice clips per person: names speakers."),
    ] = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format", help="Files per recording, comma-separated: json,rttm,srt,vtt,txt."
        ),
    ] = "json,rttm,srt",
    workers: Workers = 2,
    cache: Cache = True,
    cache_dir: CacheDir = None,
    provider_block: Annotated[
        str | None,
        typer.Option(help="Saved provider block name for transcription and/or notes."),
    ] = None,
    max_usd: MaxUsd = None,
    provider_for: Annotated[
        str,
        typer.Option(help="Steps the provider does, comma-separated: transcribe,notes."),
    ] = "transcribe,notes",
    runner: RunnerOpt = Runner.THREADS,
    address: AddressOpt = None,
) -> None:
    """Transcribe meetings and calls: who said what when (JSON, RTTM, SRT, VTT, TXT) + notes."""
    from decimal import Decimal

    from pydantic import SecretStr, ValidationError

    from mmflow.flows.meeting import MeetingRunReport, meeting_flow
    from mmflow.flows.runners import run_on
    from mmflow.tasks.audio.diarise import DiarisationBackend
    from mmflow.tasks.audio.diarise_pyannote import require_pyannote
    from mmflow.tasks.audio.outputs import parse_formats
    from mmflow.tasks.meeting import DenoiseMode, MeetingOptions, probe_duration_s

    try:
        formats = list(parse_formats(output_format))
        options = MeetingOptions(
            num_speakers=speakers,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            language=language,
            stt_model=stt_model,
            diarisation=DiarisationBackend(diarisation),
            pyannote_pipeline=pyannote_pipeline,
            hf_token=SecretStr(hf_token) if hf_token else None,
            denoise=DenoiseMode(denoise),
            speaker_profiles=speaker_profiles,
        )
        if options.diarisation is DiarisationBackend.PYANNOTE:
            require_pyannote()  # before any file is read: say what to install
        if options.speaker_profiles:
            options.diarisation_settings()  # embeds the clips once (cached), or says why not
    except (ValidationError, ValueError) as error:
        console.print(f"[red]Invalid options:[/] {escape(str(error))}")
        raise typer.Exit(2) from error
    except MissingDependency as error:  # its text holds extras in brackets: not rich markup
        console.print(f"[red]Missing dependency:[/] {escape(str(error))}")
        raise typer.Exit(2) from error
    _runner_or_exit(runner, address, workers, provider_block)
    uses = [part.strip() for part in provider_for.split(",") if part.strip()]
    if not uses or any(use not in ("transcribe", "notes") for use in uses):
        console.print(f"[red]Invalid options:[/] --provider-for {provider_for!r}: transcribe,notes")
        raise typer.Exit(2)
    # The block goes by name: the flow loads it (blocks.providers.resolve_provider), so no key is
    # ever a flow-run parameter.
    with_provider: dict[str, object] = (
        {
            "provider": provider_block,
            "max_usd": Decimal(str(max_usd)) if max_usd is not None else None,
            "provider_for": uses,
        }
        if provider_block is not None
        else {}
    )
    uris = _expanded_or_exit(inputs)
    seconds = {uri: probe_duration_s(uri) for uri in uris}
    report: MeetingRunReport = _with_progress(
        "meeting",
        sum(seconds.values()),
        lambda: run_on(
            meeting_flow,
            runner,
            workers,
            address,
            inputs=uris,
            out=out,
            options=options,
            cache=cache,
            cache_dir=cache_dir,
            workers=workers,
            formats=formats,
            **with_provider,
        ),
        units="s of audio",
        # A rejected file reports no duration of its own: count what ffprobe saw, if any.
        units_of=lambda e: e.units if e.status == "ok" else seconds.get(e.uri, 0.0),
    )
    table = Table(title=f"mmflow meeting → {report.out}")
    for column in ("input", "status", "duration", "speakers", "words", "language", "detail"):
        table.add_column(column, overflow="fold")
    for item in report.recordings:
        found = item.details
        table.add_row(
            Path(item.uri).name,
            f"[{_status_style(item.status)}]{item.status.value}[/]",
            f"{found['duration_s']:.1f} s" if "duration_s" in found else "—",
            str(found.get("speakers", "—")),
            str(found.get("words", "—")),
            found.get("language") or "—",
            f"{item.error.code}: {item.error.message}"
            if item.error
            else "; ".join(found.get("warnings", [])),
        )
    console.print(table)
    _print_counts([r.status for r in report.recordings], report.out)
    if report.failed:
        raise typer.Exit(1)


@eval_app.command("meeting")
def eval_meeting(
    outputs: Annotated[Path, typer.Argument(help="Folder of mmflow meeting outputs.")],
    reference_rttm: Annotated[
        Path | None,
        typer.Option(help="Reference RTTM: one file (many recordings) or a folder of them: DER."),
    ] = None,
    reference_rttm_dir: Annotated[
        Path | None, typer.Option(help="Same as --reference-rttm (kept for old scripts).")
    ] = None,
    uem: Annotated[
        Path | None, typer.Option(help="UEM file: the part of each recording that is scored.")
    ] = None,
    stm: Annotated[
        Path | None,
        typer.Option(
            help="Reference STM with speakers (file or folder): speaker-attributed cpWER."
        ),
    ] = None,
    transcripts: Annotated[
        Path | None,
        typer.Option(
            help='JSON {"<file name>": {"text": …}} of reference transcripts: scores WER.'
        ),
    ] = None,
) -> None:
    """DER (full: collar 0; forgiving: 0.5 s collar, overlap skipped), JER, speaker count,
    cpWER, WER (Whisper-normalised text) and the recogniser's flags, per recording and overall."""
    from mmflow.tasks.audio.meeting_eval import evaluate_paths

    reference = reference_rttm or reference_rttm_dir
    if reference is None and transcripts is None and stm is None:
        console.print("[red]Give --reference-rttm, --stm, --transcripts, or several.[/]")
        raise typer.Exit(2)
    report = evaluate_paths(outputs, reference, uem, stm, transcripts)
    if not report.recordings:
        console.print(f"[red]No meeting outputs in {outputs} match the references given.[/]")
        raise typer.Exit(2)
    table = Table(title="Meeting scores (DER after the optimal speaker mapping)")
    columns = ("recording", "full DER", "forgiving DER", "JER", "speakers found / ref")
    for column in (*columns, "cpWER", "WER", "flagged words"):
        table.add_column(column, overflow="fold")
    percent = lambda value: f"{value:.2%}" if value is not None else "—"  # noqa: E731
    for item in report.recordings:
        der = item.der
        flagged = ", ".join(f"{k} {v}" for k, v in sorted(item.flagged_words.items()))
        table.add_row(
            item.recording,
            percent(der.full if der else None),
            percent(der.forgiving if der else None),
            percent(der.jer if der else None),
            f"{der.hypothesis_speakers} / {der.reference_speakers}" if der else "—",
            percent(item.cpwer.cpwer if item.cpwer else None),
            percent(item.wer.wer if item.wer else None),
            f"{flagged or 'none'} (of {item.words})",
        )
    console.print(table)
    if report.der_total:
        t = report.der_total
        console.print(
            f"overall DER full {t['full']:.2%}, forgiving {t['forgiving']:.2%}, "
            f"JER {t['jer']:.2%}, speaker count right {t['count_right']:.0f} of "
            f"{t['recordings']:.0f}"
        )
    if report.cpwer_total is not None:
        console.print(f"overall cpWER {report.cpwer_total:.2%}")
    if report.wer_total is not None:
        total = report.wer_total
        console.print(
            f"corpus WER {total.wer:.2%} (S={total.substitutions} D={total.deletions} "
            f"I={total.insertions} of {total.reference_words} words)"
        )


@app.command("samples")
def samples(
    out: Annotated[Path, typer.Argument(help="Folder to write sample inputs into.")] = Path(
        "samples"
    ),
) -> None:
    """Write mmflow's own sample invoices: a text PDF, a scan and a phone photo."""
    from mmflow.tasks.samples import make_samples

    for path in make_samples(out):
        console.print(str(path))


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Where samples and outputs go.")] = Path("out/demo"),
) -> None:
    """Make the sample invoices and run the invoice flow on them with embedded defaults."""
    from mmflow.tasks.evaluate import values_match
    from mmflow.tasks.invoice import InvoiceOptions
    from mmflow.tasks.samples import make_samples, sample_truth

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
            and not values_match(name, str(truth[name]), doc.details.get(name))
        ]
        expected = [f for f in FIELD_NAMES if truth.get(f) is not None]
        table.add_row(
            path.name,
            str(truth.get("form", "")),
            f"{len(expected) - len(wrong)}/{len(expected)}",
            f"{len(doc.details.get('line_items', []))}/{len(truth.get('line_items', []))}",
            ", ".join(wrong),
        )
    console.print(table)
    if report.failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------- webhook receiver


@app.command("webhook")
def webhook(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8787,
    storage: Annotated[
        str, typer.Option(help="Folder or s3:// prefix; uploads are kept under <storage>/uploads.")
    ] = "webhook-data",
    outputs: Annotated[
        str | None,
        typer.Option(help="Where the triggered flows write (default <storage>/outputs)."),
    ] = None,
    secret_env: Annotated[
        str, typer.Option(help="Environment variable holding the HMAC secret.")
    ] = "MMFLOW_WEBHOOK_SECRET",
    window: Annotated[
        int, typer.Option(min=1, help="Seconds a signature's timestamp may be off.")
    ] = 300,
    max_mb: Annotated[float, typer.Option(min=0.001, help="Largest upload, in MB.")] = 100.0,
    allow_uri_prefix: Annotated[
        list[str] | None,
        typer.Option(help='Prefixes a JSON {"uri"} may name (repeat; default s3://).'),
    ] = None,
) -> None:
    """Receive signed uploads and start flows through Prefect events (POST /v1/ingest/SCENARIO)."""
    import uvicorn
    from prefect.settings import PREFECT_API_URL

    from mmflow.deployments.webhook import WebhookSettings, create_app
    from mmflow.tasks.filesystems import require_filesystem

    secret = os.environ.get(secret_env, "")
    if not secret:
        console.print(f"[red]Set {secret_env}[/] to the shared HMAC secret (e.g. 32 random bytes).")
        raise typer.Exit(2)
    if not PREFECT_API_URL.value():
        # Without it events would go to a throwaway in-process server and start nothing.
        console.print("[red]Set PREFECT_API_URL[/] to the Prefect server whose deployments run.")
        raise typer.Exit(2)
    require_filesystem(storage)
    settings = WebhookSettings(
        storage=storage,
        outputs=outputs,
        secret=secret.encode(),
        window_s=window,
        max_bytes=int(max_mb * 1024 * 1024),
        allowed_uri_prefixes=tuple(allow_uri_prefix or ("s3://",)),
    )
    console.print(f"mmflow webhook on http://{host}:{port} · uploads → {settings.storage}/uploads")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


# ---------------------------------------------------------------- deployments, served locally


@app.command("serve")
def serve(
    outputs: Annotated[
        str, typer.Option(help="Folder or s3:// prefix the deployments write under.")
    ] = "out",
    batch_source: Annotated[
        str | None,
        typer.Option(
            envvar="MMFLOW_BATCH_SOURCE",
            help="Folder or s3:// prefix of the nightly invoice batch; omit for no batch.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Most flow runs at once (default: no limit).")
    ] = None,
) -> None:
    """Serve every mmflow deployment from this process (no work pool needed); Ctrl-C stops it."""
    from prefect.settings import PREFECT_API_URL

    from mmflow.deployments.serve import serve_all

    if not PREFECT_API_URL.value():
        # A temporary in-process server would vanish with this command: nothing could reach it.
        console.print("[red]Set PREFECT_API_URL[/] to the Prefect server to register with.")
        raise typer.Exit(2)
    serve_all(outputs, batch_source, limit)
