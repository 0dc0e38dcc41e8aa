"""The meeting flow: validate → normalise → denoise → VAD → transcribe → diarise → align → notes
→ persist (`<stem>.json`, `<stem>.rttm`, `<stem>.srt`), for each recording; every input ends in a
result or a typed rejection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast

from prefect import flow
from prefect.states import State
from pydantic import BaseModel

from mmflow.blocks.providers import resolve_provider
from mmflow.flows.runs import InputSummary, RunReport, RunSettings, run_name, run_scenario
from mmflow.flows.steps import StepRunner
from mmflow.tasks.audio.models import MeetingNotes, Transcript
from mmflow.tasks.audio.outputs import DEFAULT_FORMATS, OutputFormat, render_outputs
from mmflow.tasks.caching import Stamped, source_key, unless_rejected
from mmflow.tasks.meeting import (
    ALIGN,
    DENOISE,
    DIARISE,
    NORMALISE,
    NOTES,
    TRANSCRIBE,
    VAD,
    VALIDATE,
    MeetingOptions,
    MeetingOutcome,
    assemble_meeting,
    forget_waveforms,
)
from mmflow.tasks.meeting_provider import (
    MeetingProvider,
    ProviderAttempt,
    ProviderUse,
    record_attempts,
    run_provider_notes,
    run_provider_transcription,
)
from mmflow.tasks.models import Usd
from mmflow.tasks.persist import join, write_text
from mmflow.tasks.provider import Budget


def process_meeting(
    uri: str,
    sha256: str,
    steps: StepRunner,
    options: MeetingOptions,
    run_id: str,
    provider: MeetingProvider | None = None,
) -> MeetingOutcome:
    """One recording through every step; raises `Stopped` when a step rejected it.

    With `provider`, transcription and/or notes go to the model first; those steps run
    uncached, inline, because they hold a live provider block, and when the provider fails the
    offline step runs (cached as usual) and `processing.provider` says why.
    """
    source = source_key(sha256)
    validated = unless_rejected(
        steps.run(VALIDATE, [source], uri=uri, max_duration_s=options.max_duration_s)
    )
    normalised = unless_rejected(steps.run(NORMALISE, [validated]))
    denoised = unless_rejected(steps.run(DENOISE, [normalised], mode=options.denoise))
    regions = steps.run(VAD, [denoised])
    attempts: dict[str, ProviderAttempt] = {}
    transcript: Stamped[Transcript] | None = None
    if provider is not None and "transcribe" in provider.use:
        transcript, attempts["transcribe"] = run_provider_transcription(
            denoised, regions, provider, options.language, run_id
        )
    if transcript is None:
        transcript = steps.run(
            TRANSCRIBE, [denoised, regions], language=options.language, stt_model=options.stt_model
        )
    diarisation = steps.run(
        DIARISE, [denoised, regions, transcript], settings=options.diarisation_settings()
    )
    segments = steps.run(ALIGN, [transcript, diarisation])
    notes: Stamped[MeetingNotes] | None = None
    if provider is not None and "notes" in provider.use:
        notes, attempts["notes"] = run_provider_notes(segments, provider, run_id)
    if notes is None:
        notes = steps.run(NOTES, [segments])
    chain = [validated, normalised, denoised, regions, transcript, diarisation, segments, notes]
    outcome = assemble_meeting(
        validated, denoised, regions, transcript, diarisation, segments, notes, chain, run_id
    )
    return record_attempts(outcome, attempts)


@dataclass(frozen=True)
class MeetingPipeline:
    """The meeting scenario for the runner (flows/runs.py)."""

    Options: ClassVar[type[BaseModel]] = MeetingOptions
    options: MeetingOptions = field(default_factory=MeetingOptions)
    provider: MeetingProvider | None = None  # a live provider: transcription and/or notes
    formats: tuple[OutputFormat, ...] = DEFAULT_FORMATS  # files written per recording
    name: str = "meeting"

    def process(self, uri: str, sha256: str, steps: StepRunner, run_id: str) -> BaseModel:
        try:
            return process_meeting(uri, sha256, steps, self.options, run_id, self.provider)
        finally:
            forget_waveforms(sha256)

    def write(self, result: BaseModel, out: str, stem: str) -> dict[str, bytes]:
        """`<stem>.<format>` per format (default json, rttm, srt), through fsspec (folders or
        s3://); the first is the manifest's `output`."""
        outcome = cast(MeetingOutcome, result)
        rendered = render_outputs(outcome.result, outcome.diarisation, stem, self.formats)
        return {
            join(out, f"{stem}.{kind.value}"): write_text(join(out, f"{stem}.{kind.value}"), text)
            for kind, text in rendered.items()
        }

    def details(self, result: BaseModel) -> dict[str, Any]:
        meeting = cast(MeetingOutcome, result).result
        duration = meeting.source.duration_s
        return {
            "duration_s": round(duration, 3),
            "progress_units": duration,  # the CLI's bar advances over audio time
            "speakers": len(meeting.speakers),
            "words": sum(len(s.words) for s in meeting.segments),
            "language": meeting.language,
            "denoised": bool(meeting.processing.get("denoise", {}).get("applied")),
            "warnings": [f"{c.name}: {c.detail}" for c in meeting.checks if c.status == "warn"],
        }

    def finish(self, out: str, summaries: list[InputSummary]) -> dict[str, Any]:
        return {"audio_s": round(sum(s.details.get("duration_s", 0.0) for s in summaries), 3)}


@flow(name="meeting", flow_run_name=run_name("meeting"), log_prints=True)
def meeting_flow(
    inputs: list[str],
    out: str,
    options: MeetingOptions = MeetingOptions(),
    provider: str | None = None,
    max_usd: Usd | None = None,
    provider_for: list[Literal["transcribe", "notes"]] | None = None,
    formats: list[OutputFormat] | None = None,
    names: list[str] | None = None,
    run: RunSettings = RunSettings(),
) -> RunReport | State[Any]:
    """Transcribe recordings of meetings and calls: who said what when, and the notes.

    Args:
        inputs: Audio or video files, folders, globs or s3:// URIs to process.
        out: Absolute folder or s3:// prefix for the JSON, RTTM and SRT results and
            manifest.jsonl.
        options: Speakers, language, diarisation backend and noise reduction.
        provider: Name of a saved provider block that transcribes and/or writes the notes;
            empty runs fully offline.
        max_usd: Most the run may spend on model calls, in US dollars.
        provider_for: The steps the provider does (default both: transcribe and notes).
        formats: The files written per recording: json, rttm, srt, vtt, txt (default the
            first three).
        names: Display names of the inputs, in order (the webhook passes uploaded file names).
        run: Workers, caching, timeouts and strictness of the run.
    """
    block = resolve_provider(provider)
    uses: frozenset[ProviderUse] = frozenset(provider_for or ("transcribe", "notes"))
    settings = (
        MeetingProvider(block, Budget(max_usd_per_run=max_usd), uses) if block is not None else None
    )
    pipeline = MeetingPipeline(
        options, settings, formats=tuple(formats) if formats else DEFAULT_FORMATS
    )
    return run_scenario(pipeline, inputs, out, run, names)
