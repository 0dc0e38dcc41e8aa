"""`mmflow run <scenario>`: what every run command shares, and the commands themselves.

Each scenario in the registry (flows/registry.py) is a `run` command: the built-in ones have
options of their own (below); any other registered scenario gets a generic command whose
scenario options are given as `--set field=value`. All of them resolve OUT, check the inputs,
use a Prefect server (the local one, started if needed, unless PREFECT_API_URL is set), show a
progress bar, stop gently on the first Ctrl-C, and end with a table and an exit status:
0 every input ended ok or rejected, 1 some failed, 130 stopped.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from typer.core import TyperGroup

import mmflow.cli.ending as ending
import mmflow.cli.runner_client as runner_client
from mmflow.cli.console import (
    errors,
    fail,
    name_of,
    note,
    print_counts,
    print_table,
    status_style,
    with_progress,
)
from mmflow.flows import registry, stopping
from mmflow.flows.progress import ItemDone
from mmflow.flows.runners import Runner
from mmflow.tasks.errors import MissingDependency
from mmflow.tasks.models import Status

if TYPE_CHECKING:
    from mmflow.flows.runs import RunReport, RunSettings


class ScenarioGroup(TyperGroup):
    """`mmflow run`: a command per registered scenario; an unknown one lists them all.

    (Typer's click types are private, hence `Any` in these overrides.)"""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(registry.names()))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in registry.names():
            command = generic_command(registry.get(cmd_name))
        return command

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            ctx.fail(
                f"no scenario or command {name!r}; choose one of: "
                f"{', '.join(self.list_commands(ctx))} (`mmflow run --help` describes them)"
            )
        return super().resolve_command(ctx, args)


run_app = typer.Typer(
    cls=ScenarioGroup,
    help="Run a scenario's flow over inputs (files, folders, globs, s3:// URIs).",
    no_args_is_help=True,
)

# ---------------------------------------------------------------- options every run takes

Inputs = Annotated[list[str], typer.Argument(help="Files, folders, globs or s3:// URIs.")]
Out = Annotated[
    str, typer.Option("--out", "-o", help="Output folder or s3:// prefix (created if missing).")
]
Workers = Annotated[int, typer.Option(min=1, max=64, help="Inputs processed at once.")]
Cache = Annotated[bool, typer.Option(help="Reuse the results of unchanged steps.")]
CacheDir = Annotated[
    str | None, typer.Option(help="Where step results persist (default ~/.cache/mmflow).")
]
Strict = Annotated[
    bool,
    typer.Option(help="Inputs whose checks fail outright end `failed` (exit status 1)."),
]
InputTimeout = Annotated[
    float | None,
    typer.Option(
        "--input-timeout",
        min=0.1,
        help="Seconds an input may run; beyond, it ends `failed: timeout` and the run goes on.",
    ),
]
MaxUsd = Annotated[
    float | None, typer.Option(min=0, help="Budget for the run's model calls, in USD.")
]
RunnerOpt = Annotated[
    Runner,
    typer.Option(
        "--runner",
        case_sensitive=False,
        help=(
            "Where task runs execute: threads in this process; `processes`, worker processes "
            "on this machine forked warm (batches of text PDFs: pure-Python work that threads "
            "cannot share out); or worker processes of a Dask or Ray cluster (local, or the one "
            "at --address). A task run in another process costs 0.1–0.35 s more: worth it for "
            "batches, not for a few documents."
        ),
    ),
]
Tenant = Annotated[
    str | None,
    typer.Option(
        help="Who the run is for: labels its traces, metrics and cost-ledger rows, and picks "
        "the tenant's quota (docs/observability.md)."
    ),
]
Feature = Annotated[
    str | None,
    typer.Option(help="What the run serves: `mmflow costs --by feature` reports by it."),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help=(
            "Scheduler of a running cluster: tcp://host:8786 (dask) or ray://host:10001 (ray). "
            "Without it a local cluster of --workers processes starts and stops with the run."
        ),
    ),
]


def run_settings(
    workers: int,
    cache: bool,
    cache_dir: str | None,
    strict: bool = False,
    input_timeout: float | None = None,
    group_size: int | None = None,
    *,
    tenant: str | None = None,
    feature: str | None = None,
) -> RunSettings:
    from pydantic import ValidationError

    start_local_server_early()  # before the imports below, which take about 1.5 s
    from mmflow.flows.runs import RunSettings

    try:
        return RunSettings(
            workers=workers,
            cache=cache,
            cache_dir=cache_dir,
            strict=strict,
            input_timeout_s=input_timeout,
            group_size=group_size,
            tenant=tenant,
            feature=feature,
        )
    except ValidationError as error:
        raise fail("Invalid options", _first_error(error)) from error


def usd(value: float | None) -> Decimal | None:
    return Decimal(str(value)) if value is not None else None


# ---------------------------------------------------------------- checks before a run


def refuse_credentials_now(locations: list[str], what: str) -> None:
    """A location with credentials in it is refused before a run is created: Prefect would
    store it with the run's parameters (docs/security.md)."""
    from mmflow.tasks.inputs import CredentialsInLocation, refuse_credentials

    try:
        refuse_credentials(locations, what)
    except CredentialsInLocation as error:
        raise fail("Credentials in a location", str(error)) from error


def resolved_out(out: str) -> str:
    """OUT as the flow gets it: an absolute folder or a storage URI, never an existing file."""
    refuse_credentials_now([out], "OUT")
    if "://" in out and not out.startswith("file://"):
        return out.rstrip("/")
    path = Path(out.removeprefix("file://")).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise fail("Invalid --out", f"{out} is a file; name a folder (created if missing)")
    return str(path)


def expanded_inputs(inputs: list[str]) -> list[str]:
    """The inputs as the flow will see them; names that match nothing are said at once (they
    still end in the manifest, as `failed: not_found`, and make the exit status 1)."""
    from mmflow.tasks.inputs import expand_inputs

    refuse_credentials_now(inputs, "the input")
    try:
        uris = expand_inputs(inputs)
    except MissingDependency as error:
        raise fail("Missing dependency", str(error)) from error
    if not uris:
        raise fail("No inputs found", "name files, folders or globs")
    for uri in uris:
        if "://" not in uri and not os.path.lexists(uri):
            errors.print(f"[yellow]not found:[/] {uri} (recorded as failed: not_found)")
    return uris


def check_runner(
    runner: Runner, address: str | None, workers: int, provider: str | None = None
) -> None:
    """Refuse a runner setting that cannot work, before any input is read."""
    from mmflow.flows.runners import task_runner_for

    if provider is not None and runner is not Runner.THREADS:
        raise fail(
            "Invalid options",
            "a run with --provider-block keeps its budget in one process; use --runner threads",
        )
    try:
        task_runner_for(runner, workers, address)
    except ValueError as error:
        raise fail("Invalid options", str(error)) from error
    except MissingDependency as error:
        raise fail("Missing dependency", str(error)) from error


_started_early: list[bool] = []  # whether start_local_server_early started the server


def start_local_server_early() -> None:
    """Without `PREFECT_API_URL` in the environment, start the local server now, in the
    background, so it boots while this command imports Prefect and the pipeline (about
    1.5 s); `prefect_api` then waits for it (docs/performance.md)."""
    if os.environ.get("PREFECT_API_URL"):
        return
    from mmflow.deployments import local_server

    if local_server.configured_last_time():  # a Prefect profile named a server last time
        return
    try:
        _started_early.append(local_server.begin_start())
    except (OSError, RuntimeError):
        return  # `prefect_api` tries again, and says what went wrong


def prefect_api() -> str:
    """The Prefect API this command uses: the configured one, else the local server."""
    from mmflow.deployments import local_server

    configured = local_server.configured_api_url()
    if not os.environ.get("PREFECT_API_URL"):  # else it is seen without Prefect's settings
        local_server.remember_configured(configured is not None)
    if configured:
        if any(_started_early):  # a Prefect profile names a server: the local one is not used
            local_server.stop()
        return configured
    if local_server.running() is None:
        note("starting the local Prefect server (once; later commands reuse it)…")
    try:
        url = local_server.ensure_api_url()
    except RuntimeError as error:
        raise fail("Prefect server", str(error), code=1) from error
    # Later `mmflow run` commands skip the imports in a warm runner, started once this
    # command is done so that it never competes with this run (cli/warm_runner.py).
    ending.run_last(runner_client.ensure_running)
    return url


@contextmanager
def gentle_interrupts() -> Iterator[None]:
    """First Ctrl-C: no new input starts, running ones get a grace period, every input still
    ends in the manifest. Second Ctrl-C: stop at once."""
    stopping.reset()

    def on_interrupt(signum: int, frame: object) -> None:
        if stopping.stop_requested():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stopping.request_stop()
        errors.print(
            f"\n[yellow]Stopping:[/] no new input starts; running ones get "
            f"{stopping.GRACE_S:g} s to end. Ctrl-C again stops at once."
        )

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def execute(
    scenario: str,
    inputs: list[str],
    out: str,
    settings: RunSettings,
    runner: Runner,
    address: str | None,
    parameters: dict[str, Any],
    *,
    total: Callable[[list[str]], float] = len,
    units: str = "",
    units_of: Callable[[ItemDone], float] = lambda event: event.units,
) -> RunReport:
    """Run `scenario`'s flow over the inputs with a progress bar; returns its report."""
    from mmflow.flows.runners import run_on

    check_runner(runner, address, settings.workers, parameters.get("provider"))
    out = resolved_out(out)
    uris = expanded_inputs(inputs)
    if runner is Runner.PROCESSES:  # its imports (~1.7 s) overlap the flow run's start
        from mmflow.flows.processes import start_fork_server

        start_fork_server()
    prefect_api()
    flow = registry.get(scenario).load_flow()
    try:
        with gentle_interrupts():
            state = with_progress(
                scenario,
                total(uris),
                lambda: run_on(
                    flow,
                    runner,
                    settings.workers,
                    address,
                    inputs=uris,
                    out=out,
                    run=settings,
                    return_state=True,
                    **parameters,
                ),
                units=units,
                units_of=units_of,
            )
    except KeyboardInterrupt:
        raise fail(
            "Stopped at once",
            f"inputs that ended are in {out}/manifest.jsonl; run the same command to finish",
            code=130,
        ) from None
    from mmflow.flows.runs import report_of

    report = report_of(state.result(raise_on_failure=False))
    if isinstance(report, BaseException):  # the run could not start (a bad option, OUT)
        raise fail(f"{scenario} run failed", str(report), code=1)
    return cast("RunReport", report)


def finish(report: RunReport | Any) -> None:
    """The closing counts and the exit status."""
    print_counts([s.status for s in report.inputs], report.out)
    if getattr(report, "stopped", False):
        raise typer.Exit(130)
    if report.failed:
        raise typer.Exit(1)


def detail_of(summary: Any) -> str:
    return f"{summary.error.code}: {summary.error.message}" if summary.error else ""


# ---------------------------------------------------------------- invoice


@run_app.command("invoice")
def run_invoice(
    inputs: Inputs,
    out: Out = "out",
    ocr_engine: Annotated[
        str, typer.Option(help="OCR engine for pages without a text layer: rapidocr | tesseract.")
    ] = "rapidocr",
    dpi: Annotated[int, typer.Option(min=72, max=600, help="Rendering DPI for OCR.")] = 200,
    workers: Workers = 2,
    cache: Cache = True,
    cache_dir: CacheDir = None,
    strict: Strict = False,
    input_timeout: InputTimeout = None,
    provider_block: Annotated[
        str | None,
        typer.Option(help="Saved provider block name: reads the pages the router sends to vision."),
    ] = None,
    max_usd: MaxUsd = None,
    runner: RunnerOpt = Runner.THREADS,
    address: AddressOpt = None,
    tenant: Tenant = None,
    feature: Feature = None,
) -> None:
    """Extract verified fields and line items from invoices and receipts."""
    from pydantic import ValidationError

    from mmflow.tasks.invoice import InvoiceOptions

    try:
        options = InvoiceOptions.model_validate({"ocr_engine": ocr_engine, "dpi": dpi})
    except ValidationError as error:
        raise fail("Invalid options", _first_error(error)) from error
    # The block goes by name: the flow loads it, so no key is ever a flow-run parameter.
    report = execute(
        "invoice",
        inputs,
        out,
        run_settings(
            workers, cache, cache_dir, strict, input_timeout, tenant=tenant, feature=feature
        ),
        runner,
        address,
        {"options": options, "provider": provider_block, "max_usd": usd(max_usd)},
    )
    print_invoice_report(report)
    finish(report)


def _first_error(error: Any) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "value"
    return f"{where}: {first['msg']}"


def print_invoice_report(report: RunReport) -> None:
    rows = []
    for doc in report.inputs:
        checks = " ".join(f"{n} {k}" for k, n in sorted(doc.details.get("checks", {}).items()))
        total, currency = doc.details.get("total"), doc.details.get("currency")
        rows.append(
            [
                name_of(doc.uri),
                f"[{status_style(doc.status)}]{doc.status.value}[/]",
                doc.details.get("route", ""),
                f"{total} {currency or ''}".strip() if total else "—",
                checks,
                detail_of(doc),
            ]
        )
    print_table(
        f"mmflow invoice → {report.out}",
        ["input", "status", "route", "total", "checks", "detail"],
        rows,
    )


# ---------------------------------------------------------------- meeting


def _audio_seconds(uris: list[str]) -> dict[str, float]:
    """Durations for the progress bar, by ffprobe; only regular files (a FIFO would hang it)."""
    from mmflow.tasks.meeting import probe_duration_s

    seconds: dict[str, float] = {}
    for uri in uris:
        try:
            regular = "://" in uri or stat.S_ISREG(os.stat(uri).st_mode)
        except OSError:
            regular = False
        seconds[uri] = probe_duration_s(uri) if regular else 0.0
    return seconds


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
    strict: Strict = False,
    input_timeout: InputTimeout = None,
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
    tenant: Tenant = None,
    feature: Feature = None,
) -> None:
    """Transcribe meetings and calls: who said what when (JSON, RTTM, SRT, VTT, TXT) + notes."""
    from pydantic import SecretStr, ValidationError

    from mmflow.tasks.audio.diarise_pyannote import require_pyannote
    from mmflow.tasks.audio.outputs import parse_formats
    from mmflow.tasks.audio.speakers import DiarisationBackend
    from mmflow.tasks.meeting import DenoiseMode, MeetingOptions
    from mmflow.tasks.redaction import register_secret

    register_secret(hf_token)  # never echoed, whatever fails below
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
    except ValidationError as error:
        raise fail("Invalid options", _first_error(error)) from error
    except ValueError as error:
        raise fail("Invalid options", str(error)) from error
    except MissingDependency as error:
        raise fail("Missing dependency", str(error)) from error
    uses = [part.strip() for part in provider_for.split(",") if part.strip()]
    if not uses or any(use not in ("transcribe", "notes") for use in uses):
        raise fail("Invalid options", f"--provider-for {provider_for!r}: transcribe,notes")
    parameters: dict[str, Any] = {"options": options, "formats": formats}
    if provider_block is not None:
        parameters |= {"provider": provider_block, "max_usd": usd(max_usd), "provider_for": uses}
    seconds: dict[str, float] = {}

    def total(uris: list[str]) -> float:
        seconds.update(_audio_seconds(uris))
        return sum(seconds.values())

    report = execute(
        "meeting",
        inputs,
        out,
        run_settings(
            workers, cache, cache_dir, strict, input_timeout, tenant=tenant, feature=feature
        ),
        runner,
        address,
        parameters,
        total=total,
        units="s of audio",
        # A rejected file reports no duration of its own: count what ffprobe saw, if any.
        units_of=lambda e: e.units if e.status == "ok" else seconds.get(e.uri, 0.0),
    )
    rows = []
    for item in report.inputs:
        found = item.details
        rows.append(
            [
                name_of(item.uri),
                f"[{status_style(item.status)}]{item.status.value}[/]",
                f"{found['duration_s']:.1f} s" if "duration_s" in found else "—",
                str(found.get("speakers", "—")),
                str(found.get("words", "—")),
                found.get("language") or "—",
                detail_of(item) or "; ".join(found.get("warnings", [])),
            ]
        )
    print_table(
        f"mmflow meeting → {report.out}",
        ["input", "status", "duration", "speakers", "words", "language", "detail"],
        rows,
    )
    finish(report)


# ---------------------------------------------------------------- image


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
    max_usd: MaxUsd = None,
    workers: Workers = 2,
    cache: Cache = True,
    cache_dir: CacheDir = None,
    input_timeout: InputTimeout = None,
    runner: RunnerOpt = Runner.THREADS,
    address: AddressOpt = None,
    tenant: Tenant = None,
    feature: Feature = None,
) -> None:
    """Classify, read and cost images; with a provider, answer the task at the cheapest tier."""
    from mmflow.tasks.image import ImageTask

    if task not in {t.value for t in ImageTask}:
        raise fail("Invalid --task", f"{task!r}; choose describe, classify, extract-text or chart")
    report = execute(
        "image",
        inputs,
        out,
        run_settings(
            workers, cache, cache_dir, False, input_timeout, tenant=tenant, feature=feature
        ),
        runner,
        address,
        {"task": ImageTask(task), "provider": provider_block, "max_usd": usd(max_usd)},
    )
    rows = []
    for item in report.inputs:
        found = item.details
        rows.append(
            [
                name_of(item.uri),
                f"[{status_style(item.status)}]{item.status.value}[/]",
                found.get("kind") or "—",
                found.get("tier") or "—",
                f"{found.get('image_tokens', 0)} / {found.get('full_high_tokens', 0)}",
                found.get("answer_source") or "—",
                detail_of(item) or ("injection flagged" if found.get("injection_flagged") else ""),
            ]
        )
    print_table(
        f"mmflow image ({task}) → {report.out}",
        ["input", "status", "kind", "tier", "tokens sent / full", "answer", "detail"],
        rows,
    )
    note(f"spent ${report.totals.get('spent_usd', '0')}")
    finish(report)


# ---------------------------------------------------------------- any other scenario


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """`--set a.b=value` pairs as a nested dict; values are JSON when they parse, else text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise fail("Invalid --set", f"{pair!r}: write field=value (dots for nested fields)")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = options
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return options


def generic_command(scenario: registry.Scenario) -> Any:
    """`mmflow run <name>` for a registered scenario that brings no command of its own."""

    def command(
        inputs: Inputs,
        out: Out = "out",
        set_: Annotated[
            list[str] | None,
            typer.Option(
                "--set",
                help="A scenario option, field=value (dots for nested fields; repeat).",
            ),
        ] = None,
        workers: Workers = 2,
        cache: Cache = True,
        cache_dir: CacheDir = None,
        strict: Strict = False,
        input_timeout: InputTimeout = None,
        runner: RunnerOpt = Runner.THREADS,
        address: AddressOpt = None,
        tenant: Tenant = None,
        feature: Feature = None,
    ) -> None:
        from pydantic import ValidationError

        try:
            options = scenario.options_model().model_validate(parse_settings(set_ or []))
        except ValidationError as error:
            raise fail("Invalid options", _first_error(error)) from error
        report = execute(
            scenario.name,
            inputs,
            out,
            run_settings(
                workers, cache, cache_dir, strict, input_timeout, tenant=tenant, feature=feature
            ),
            runner,
            address,
            {"options": options},
        )
        scalars = sorted(
            {
                k
                for s in report.inputs
                for k, v in s.details.items()
                if not isinstance(v, list | dict)
            }
        )
        print_table(
            f"mmflow {scenario.name} → {report.out}",
            ["input", "status", *scalars, "detail"],
            [
                [
                    name_of(s.uri),
                    f"[{status_style(s.status)}]{s.status.value}[/]",
                    *[str(s.details.get(k, "—")) for k in scalars],
                    detail_of(s),
                ]
                for s in report.inputs
            ],
        )
        finish(report)

    command.__doc__ = scenario.summary
    sub = typer.Typer()
    sub.command(scenario.name)(command)
    return typer.main.get_command(sub)


# ---------------------------------------------------------------- batch


@run_app.command("batch")
def run_batch(
    source: Annotated[str, typer.Argument(help="A folder, glob or s3:// prefix to process.")],
    out: Out = "out",
    scenario: Annotated[
        str, typer.Option(help="What every input is: a scenario (invoice, meeting, image, …).")
    ] = "invoice",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A scenario option, field=value (dots for nested; repeat)."),
    ] = None,
    workers: Workers = 2,
    group_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Inputs per task run (default: two groups per worker, ≤ 25; with worker "
            "processes, a worker's share, ≤ 100).",
        ),
    ] = None,
    cache: Cache = True,
    cache_dir: CacheDir = None,
    strict: Strict = False,
    input_timeout: InputTimeout = None,
    runner: RunnerOpt = Runner.THREADS,
    address: AddressOpt = None,
    tenant: Tenant = None,
    feature: Feature = None,
) -> None:
    """Process a whole folder or bucket prefix; run it again to finish an interrupted batch.

    Inputs already in OUT's manifest are not recomputed, and the same bytes under two names
    are processed once (the second is recorded as a `duplicate`).
    """
    from mmflow.flows.batch import batch_flow, check_source
    from mmflow.flows.runners import run_on

    try:
        entry = registry.get(scenario)
        source = check_source(source)
    except ValueError as error:
        raise fail("Invalid options", str(error)) from error
    if not entry.batch:
        raise fail("Invalid options", f"scenario {scenario!r} has no batch mode")
    settings = run_settings(
        workers, cache, cache_dir, strict, input_timeout, group_size, tenant=tenant, feature=feature
    )
    check_runner(runner, address, workers)
    out = resolved_out(out)
    uris = expanded_inputs([source])
    prefect_api()
    try:
        with gentle_interrupts():
            state = with_progress(
                f"batch {scenario}",
                len(uris),
                lambda: run_on(
                    batch_flow,
                    runner,
                    workers,
                    address,
                    source=source,
                    out=out,
                    scenario=scenario,
                    options=parse_settings(set_ or []),
                    run=settings,
                    return_state=True,
                ),
                units_of=lambda _event: 1.0,
            )
    except KeyboardInterrupt:
        raise fail("Stopped at once", "run the same command again to finish", code=130) from None
    from mmflow.flows.runs import report_of

    report = report_of(state.result(raise_on_failure=False))  # type: ignore[union-attr]
    if isinstance(report, BaseException):
        raise fail("batch failed", str(report), code=1)
    print_table(
        f"mmflow batch {scenario} {source} → {out}",
        ["inputs", "count"],
        [
            ["listed", str(report.listed)],
            ["processed now", str(report.processed)],
            ["ended by an earlier run", str(report.resumed)],
            ["duplicates", str(report.duplicates)],
            ["redone (result missing)", str(len(report.redone))],
        ],
    )
    for summary in [s for s in report.inputs if s.status is Status.FAILED][:20]:
        errors.print(f"[red]failed[/] {summary.uri}: {detail_of(summary)}")
    finish(report)
