"""The `mmflow` command: run a scenario over files, folders and globs; score outputs; run the
local Prefect server, the deployments and the webhook receiver.

Everything here is presentation and argument checking; the work is in flows/ and deployments/,
imported only by the command that needs it, so `mmflow --help` stays quick.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

import mmflow.cli.runner_client as runner_client
from mmflow.cli.console import Verbosity, console, fail, print_table
from mmflow.cli.costs import costs
from mmflow.cli.evaluation import accept, run_tier, show_history
from mmflow.cli.run import print_invoice_report, run_app

app = typer.Typer(
    help="Multimodal document, image and audio processing on Prefect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
eval_app = typer.Typer(
    help="Score outputs against ground truth; run, gate and accept evaluation tiers.",
    no_args_is_help=True,
)
server_app = typer.Typer(
    help="The local Prefect server mmflow starts when PREFECT_API_URL is not set.",
    no_args_is_help=True,
)
app.add_typer(run_app, name="run")
app.add_typer(eval_app, name="eval")
app.add_typer(server_app, name="server")
app.command("costs")(costs)
eval_app.command("run")(run_tier)
eval_app.command("accept")(accept)
eval_app.command("history")(show_history)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"mmflow {version('mmflow')} (prefect {version('prefect')})")
        raise typer.Exit()


@app.callback()
def main(
    version_: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors and the closing counts.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Prefect's logs too (-vv: debug).")
    ] = 0,
) -> None:
    """Multimodal document, image and audio processing on Prefect."""
    from mmflow.tasks.redaction import install

    install()  # no log line of any command shows a secret (docs/security.md)
    Verbosity.level = -1 if quiet else verbose
    if verbose:
        level = "DEBUG" if verbose > 1 else "INFO"
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = level
        if "prefect.logging.configuration" in sys.modules:  # imported already (a warm runner)
            from prefect.context import refresh_global_settings_context
            from prefect.logging.configuration import setup_logging

            refresh_global_settings_context()
            setup_logging(incremental=False)


# ---------------------------------------------------------------- evaluation


@eval_app.command("invoice")
def eval_invoice(
    outputs: Annotated[Path, typer.Argument(help="Folder of mmflow invoice outputs.")],
    gold: Annotated[Path, typer.Option(help="Folder of ground truth (invoice2data or SROIE).")],
) -> None:
    """Per-field accuracy of invoice outputs against ground truth, and how far confidence
    predicts it. Outputs are matched to gold through the manifest (input sha256 or name)."""
    from mmflow.tasks.evaluate import evaluate, load_predictions, render_reliability, render_report

    predictions = load_predictions(outputs, gold)
    if not predictions:
        raise fail("No invoice outputs", f"no <stem>.json results found in {outputs}")
    report = evaluate(predictions, gold)
    console.print(render_report(report))
    if not report.values_scored:
        console.print(
            f"[red]Nothing scored: none of the {len(predictions)} outputs in {outputs} matches a "
            f"document of {gold} (by input sha256 or file name), or the gold holds no values.[/]"
        )
        raise typer.Exit(1)
    console.print(render_reliability(report))


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
        raise fail(
            "Nothing to score against", "give --reference-rttm, --stm, --transcripts, or several"
        )
    report = evaluate_paths(outputs, reference, uem, stm, transcripts)
    if not report.recordings:
        raise fail("Nothing scored", f"no meeting outputs in {outputs} match the references given")
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
    from mmflow.cli.run import execute, run_settings
    from mmflow.flows.runners import Runner
    from mmflow.tasks.evaluate import values_match
    from mmflow.tasks.invoice import InvoiceOptions
    from mmflow.tasks.models import FIELD_NAMES
    from mmflow.tasks.samples import make_samples, sample_truth

    paths = make_samples(out / "samples")
    console.print(f"[bold]{len(paths)} sample inputs[/] written to {out / 'samples'}")
    report = execute(
        "invoice",
        [str(p) for p in paths],
        str(out / "results"),
        run_settings(workers=2, cache=True, cache_dir=None),
        Runner.THREADS,
        None,
        {"options": InvoiceOptions()},
    )
    print_invoice_report(report)
    rows = []
    for path, doc in zip(paths, report.inputs, strict=True):
        truth = sample_truth(path)
        wrong = [
            name
            for name in FIELD_NAMES
            if truth.get(name) is not None
            and not values_match(name, str(truth[name]), doc.details.get(name))
        ]
        expected = [f for f in FIELD_NAMES if truth.get(f) is not None]
        rows.append(
            [
                path.name,
                str(truth.get("form", "")),
                f"{len(expected) - len(wrong)}/{len(expected)}",
                f"{len(doc.details.get('line_items', []))}/{len(truth.get('line_items', []))}",
                ", ".join(wrong),
            ]
        )
    print_table(
        "extracted vs the samples' known truth",
        ["sample", "form", "fields right", "line items", "wrong or missing"],
        rows,
    )
    if report.failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------- the local Prefect server


@server_app.command("start")
def server_start(
    idle: Annotated[
        float, typer.Option(min=60, help="Stop after this many seconds without use.")
    ] = 3600.0,
) -> None:
    """Start the local server (commands start it themselves when needed)."""
    from mmflow.deployments import local_server

    if local_server.configured_api_url():
        raise fail("PREFECT_API_URL is set", "mmflow uses that server and starts none")
    info = local_server.start(idle)
    console.print(f"local Prefect server: {info.url} (UI {info.url.removesuffix('/api')})")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local server; its database stays for the next start."""
    from mmflow.deployments import local_server

    stopped = local_server.stop()
    runner_client.stop()  # it would end within a second of the server anyway
    console.print("stopped" if stopped else "no local server was running")


@server_app.command("status")
def server_status() -> None:
    """Whether the local server runs, where, and where its database is."""
    from mmflow.deployments import local_server

    configured = local_server.configured_api_url()
    info = local_server.running()
    rows = [
        ["PREFECT_API_URL", configured or "not set (mmflow uses its local server)"],
        ["local server", info.url if info else "not running"],
        ["database folder", info.home if info else str(local_server.server_dir())],
    ]
    if info:
        rows += [["supervisor pid", str(info.pid)], ["idle stop after", f"{info.idle_s:g} s"]]
    runner = runner_client.ping() if runner_client.enabled() else None
    rows.append(
        [
            "warm runner",
            f"ready (pid {runner['pid']}, {runner['served']} commands run)"
            if runner
            else "off (MMFLOW_WARM_RUNNER=0, or not Linux)"
            if not runner_client.enabled()
            else "not running (the next `mmflow run` starts it as it ends)",
        ]
    )
    print_table("mmflow server", ["", ""], rows)


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
    state_dir: Annotated[
        str | None,
        typer.Option(
            help="Local folder for the outbox and replay memory (default <storage>/state, or "
            "~/.local/state/mmflow/webhook/… for s3:// storage)."
        ),
    ] = None,
    secret_env: Annotated[
        str, typer.Option(help="Environment variable holding the HMAC secret (≥ 32 bytes).")
    ] = "MMFLOW_WEBHOOK_SECRET",
    window: Annotated[
        int, typer.Option(min=1, help="Seconds a signature's timestamp may be off.")
    ] = 300,
    max_mb: Annotated[float, typer.Option(min=0.001, help="Largest upload, in MB.")] = 100.0,
    body_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a request body may take to arrive.")
    ] = 60.0,
    allow_uri_prefix: Annotated[
        list[str] | None,
        typer.Option(
            help='Folder or URI prefix a JSON {"uri"} may name (repeat); none by default, '
            "so only uploaded bytes are accepted."
        ),
    ] = None,
) -> None:
    """Receive signed uploads and start flows through Prefect events (docs/webhook.md)."""
    import uvicorn

    from mmflow.cli.run import prefect_api, resolved_out
    from mmflow.deployments.signing import secret_weakness
    from mmflow.deployments.webhook import WebhookSettings, create_app
    from mmflow.deployments.webhook_server import server_config
    from mmflow.tasks.filesystems import require_filesystem

    secret = os.environ.get(secret_env, "").encode()
    if not secret:
        raise fail(f"Set {secret_env}", "to the shared secret (`openssl rand -hex 32`)")
    weakness = secret_weakness(secret)
    if weakness:
        raise fail(f"{secret_env} is too weak", weakness)
    prefect_api()  # the configured server, or the local one: where the deployments run
    require_filesystem(storage)
    outputs = resolved_out(outputs) if outputs else None
    settings = WebhookSettings(
        storage=storage,
        outputs=outputs,
        state_dir=state_dir,
        secret=secret,
        window_s=window,
        max_bytes=int(max_mb * 1024 * 1024),
        body_timeout_s=body_timeout,
        allowed_uri_prefixes=tuple(allow_uri_prefix or ()),
    )
    app = create_app(settings)
    console.print(
        f"mmflow webhook on http://{host}:{port} · uploads → {escape(settings.storage)}/uploads "
        f"· state → {escape(settings.state_root())}"
    )
    uvicorn.Server(server_config(app, host, port, log_level="info")).run()


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
            help="Folder or s3:// prefix of the nightly batch; omit for no batch.",
        ),
    ] = None,
    batch_scenario: Annotated[
        str, typer.Option(help="The scenario of the nightly batch.")
    ] = "invoice",
    limit: Annotated[
        int | None,
        typer.Option(
            min=1, help="Most flow runs at once (default: no limit; 4 with --in-process)."
        ),
    ] = None,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process",
            help="Run flow runs in threads of this process: warm, starts in a fraction of a "
            "second, but no isolation between runs and no cancelling a started run "
            '(docs/webhook.md, "Fast path").',
        ),
    ] = False,
    poll: Annotated[
        float | None,
        typer.Option(
            min=0.05,
            help="Seconds between looks for due flow runs (default: 0.5 with --in-process, "
            "else Prefect's PREFECT_RUNNER_POLL_FREQUENCY, 10).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve Prometheus /metrics of the runs on this port."),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address /metrics listens on.")] = "127.0.0.1",
) -> None:
    """Serve every mmflow deployment from this process (no work pool needed); Ctrl-C stops it
    (with --in-process: once to finish the running flow runs, twice to abandon them)."""
    from mmflow.cli.run import prefect_api, resolved_out
    from mmflow.deployments.serve import DeploymentConflict, serve_all

    if metrics_port is not None:  # before any flow run starts: they inherit its folder
        from mmflow.flows.metrics import serve_metrics

        serve_metrics(metrics_port, metrics_host)
        console.print(f"metrics on http://{metrics_host}:{metrics_port}/metrics")
    outputs = resolved_out(outputs)
    url = prefect_api()
    how = " in this process" if in_process else ""
    console.print(f"serving the mmflow deployments{how} on {url} · outputs under {outputs}")
    try:
        serve_all(outputs, batch_source, limit, batch_scenario, in_process, poll)
    except (DeploymentConflict, ValueError) as error:
        raise fail("Cannot serve", str(error)) from error
