"""The image-analysis flow: validate → normalise → OCR → classify → injection scan → plan (tier
and every provider's cost) for each image; then, with a provider, the vision calls in parallel
(map) and one text-only synthesis over their answers (reduce). Every input ends in the manifest
with a result or a typed rejection.

Without a provider the flow is fully offline: each image gets its kind, OCR text with boxes,
injection report, chosen tier and cost report, and the answer the local pipeline can give.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.filesystems import WritableFileSystem
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote
from pydantic import BaseModel, ConfigDict

from mmflow.blocks.providers import (
    Budget,
    ProviderBlock,
    resolve_provider,
    run_fallback_chain,
)
from mmflow.flows.assets import OutputAsset, output_assets, record_outputs
from mmflow.flows.progress import ItemDone, publish
from mmflow.flows.runs import result_storage
from mmflow.flows.steps import InlineSteps, PrefectSteps, StepRunner, retry_on_io
from mmflow.tasks.caching import Stamped, Stopped, source_key, unless_rejected
from mmflow.tasks.errors import Rejection
from mmflow.tasks.image import (
    CLASSIFY,
    NORMALISE,
    OCR,
    PLAN,
    SCAN,
    VALIDATE,
    ImageAnswer,
    ImageOptions,
    ImagePage,
    ImagePlan,
    ImageResult,
    ImageTask,
    ImageText,
    Synthesis,
    ask_vision,
    synthesis_prompt,
)
from mmflow.tasks.image_kind import KindResult
from mmflow.tasks.injection import InjectionReport
from mmflow.tasks.inputs import expand_inputs, forget_input, hash_input
from mmflow.tasks.models import ErrorInfo, ManifestEntry, SourceInfo, Status
from mmflow.tasks.persist import Manifest, OutputNames, ensure_dir, join, write_model

T = TypeVar("T")


def as_is(value: T) -> T:
    """Hand a task this very object: Prefect must not walk, copy or hash it (the shared
    budget's lock and ledger, the provider's breaker, the manifest's lock)."""
    return cast(T, quote(value))


class ImageSummary(BaseModel):
    """What the flow reports per input (the CLI table and the run's table artifact)."""

    uri: str
    sha256: str | None
    status: Status
    error: ErrorInfo | None = None
    output: str | None = None
    kind: str | None = None
    tier: str | None = None
    answer_source: str | None = None
    image_tokens: int = 0
    full_high_tokens: int = 0
    injection_flagged: bool = False


class SynthesisRecord(BaseModel):
    """`synthesis.json`: the reduce step over every image answered by the provider."""

    task: ImageTask
    inputs: list[str]
    source: str
    value: Synthesis | None = None
    cost_usd: Decimal = Decimal("0")
    error: str | None = None


class ImageRunReport(BaseModel):
    out: str
    task: ImageTask
    images: list[ImageSummary]
    synthesis: SynthesisRecord | None = None
    spent_usd: Decimal = Decimal("0")

    @property
    def failed(self) -> int:
        return sum(i.status is Status.FAILED for i in self.images)


class LocalResult(BaseModel):
    """One image through the local steps: every stamped result, ready for the vision call."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    uri: str
    sha256: str
    validated: Stamped[Any]
    page: Stamped[ImagePage]
    text: Stamped[ImageText]
    kind: Stamped[KindResult]
    injection: Stamped[InjectionReport]
    plan: Stamped[ImagePlan]


def local_steps(uri: str, sha256: str, steps: StepRunner, options: ImageOptions) -> LocalResult:
    """validate → normalise → OCR → classify → scan → plan; raises `Stopped` on a rejection."""
    validated = unless_rejected(
        steps.run(VALIDATE, [source_key(sha256)], uri=uri, limits=options.limits)
    )
    page = unless_rejected(
        steps.run(NORMALISE, [validated], options=options.normalise, pdf_dpi=options.pdf_dpi)
    )
    text = steps.run(OCR, [page], engine=options.ocr_engine, max_side=options.ocr_max_side)
    kind = steps.run(CLASSIFY, [page, text])
    injection = steps.run(SCAN, [text])
    plan = steps.run(PLAN, [page, text, kind], options=options)
    return LocalResult(
        uri=uri,
        sha256=sha256,
        validated=validated,
        page=page,
        text=text,
        kind=kind,
        injection=injection,
        plan=plan,
    )


def _ended(summary: ImageSummary, manifest: Manifest) -> ImageSummary:
    manifest.append(
        ManifestEntry(
            uri=summary.uri,
            sha256=summary.sha256,
            status=summary.status,
            error=summary.error,
            output=summary.output,
        )
    )
    publish(ItemDone(uri=summary.uri, status=summary.status.value))
    return summary


def read_locally(
    uri: str, steps: StepRunner, options: ImageOptions, manifest: Manifest
) -> LocalResult | ImageSummary:
    """The local steps for one input; a rejection or a defect ends in the manifest here."""
    sha256: str | None = None
    try:
        sha256 = hash_input(uri)
        return local_steps(uri, sha256, steps, options)
    except Rejection as rejection:  # the input could not even be read
        error = ErrorInfo(code=rejection.code.value, message=rejection.message)
        status = Status.REJECTED
    except Stopped as stop:
        error, status = stop.rejected.error, Status.REJECTED
    except Exception as exc:  # a defect, not bad input: record it, let the batch go on
        error = ErrorInfo(code="processing_error", message=f"{type(exc).__name__}: {exc}")
        status = Status.FAILED
    forget_input(uri)
    return _ended(ImageSummary(uri=uri, sha256=sha256, status=status, error=error), manifest)


@task(
    name="read-images",
    task_run_name="read {uris[0]} (+{extra})",
    cache_policy=NO_CACHE,  # each step inside caches itself
    retries=2,
    retry_delay_seconds=[2, 8],
    retry_condition_fn=retry_on_io,
)
def read_images(
    uris: list[str],
    extra: int,
    options: ImageOptions,
    storage: WritableFileSystem | None,
    manifest: Manifest,
    run_id: str,
) -> list[LocalResult | ImageSummary]:
    """A group of images through the local steps in one task run (batches)."""
    with InlineSteps(storage, run_id) as steps:
        return [read_locally(u, steps, options, manifest) for u in uris]


@task(name="vision", task_run_name="vision {name}", cache_policy=NO_CACHE)
def vision_call(
    name: str, local: LocalResult, provider: ProviderBlock | None, budget: Budget
) -> ImageAnswer:
    """One image's vision call at its planned tier (or its offline answer)."""
    return ask_vision(
        local.page.value,
        local.plan.value,
        local.kind.value,
        local.text.value,
        local.injection.value,
        provider,
        budget,
    )


@task(name="synthesise", cache_policy=NO_CACHE)
def synthesise(
    task_kind: ImageTask,
    answers: dict[str, ImageAnswer],
    provider: ProviderBlock,
    budget: Budget,
) -> SynthesisRecord:
    """The reduce step: one text-only `complete` call over every image's answer."""

    def call() -> SynthesisRecord:
        result = provider.complete(synthesis_prompt(task_kind, answers), Synthesis, budget=budget)
        return SynthesisRecord(
            task=task_kind,
            inputs=list(answers),
            source=provider.label,
            value=result.value,
            cost_usd=result.cost_usd,
        )

    def offline() -> SynthesisRecord:
        return SynthesisRecord(task=task_kind, inputs=list(answers), source="none")

    outcome = run_fallback_chain([(provider.label, call)], ("none", offline))
    if outcome.failures:
        name, exc = outcome.failures[-1]
        return outcome.value.model_copy(update={"error": f"{name}: {type(exc).__name__}: {exc}"})
    return outcome.value


def assemble(local: LocalResult, answer: ImageAnswer, run_id: str) -> ImageResult:
    """The `<stem>.json` document of one image."""
    source = local.validated.value
    page = local.page.value
    chain: Sequence[Stamped[Any]] = (
        local.validated,
        local.page,
        local.text,
        local.kind,
        local.injection,
        local.plan,
    )
    return ImageResult(
        source=SourceInfo(
            uri=source.uri, sha256=source.sha256, media_type=source.media_type, pages=source.pages
        ),
        task=local.plan.value.task,
        image={"width": page.width, "height": page.height, "notes": page.notes},
        kind=local.kind.value,
        text=local.text.value,
        injection=local.injection.value,
        plan=local.plan.value,
        answer=answer,
        lineage={
            "input_sha256": source.sha256,
            "mmflow_version": version("mmflow"),
            "flags": [*source.flags, *page.flags],
            "steps": [
                s.lineage.model_copy(update={"cached": s.run_id != run_id}).model_dump(mode="json")
                for s in chain
            ],
        },
    )


def _read_all(
    uris: list[str],
    options: ImageOptions,
    storage: WritableFileSystem | None,
    manifest: Manifest,
    run_id: str,
    stepwise_max: int,
) -> list[LocalResult | ImageSummary]:
    if len(uris) <= stepwise_max:
        return [
            read_locally(uri, PrefectSteps(storage, run_id, Path(uri).name), options, manifest)
            for uri in uris
        ]
    size = max(1, min(25, math.ceil(len(uris) / 4)))
    groups = [uris[i : i + size] for i in range(0, len(uris), size)]
    futures = [
        read_images.submit(group, len(group) - 1, options, storage, as_is(manifest), run_id)
        for group in groups
    ]
    return [item for future in futures for item in future.result()]


@flow(name="image", log_prints=True)
def image_flow(
    inputs: list[str],
    out: str = "out",
    task: ImageTask = ImageTask.DESCRIBE,
    provider: ProviderBlock | str | None = None,
    max_usd_per_request: Decimal | None = None,
    max_usd_per_run: Decimal | None = None,
    options: ImageOptions | None = None,
    synthesise_results: bool = True,
    cache: bool = True,
    cache_dir: str | None = None,
    stepwise_max: int = 4,
) -> ImageRunReport:
    """Classify, read and cost images; with a provider, answer the task at the cheapest tier.

    `provider` is a provider block or the name of a saved one; `task` overrides `options.task`.
    """
    options = (options or ImageOptions()).model_copy(update={"task": task})
    block = resolve_provider(provider)
    budget = Budget(max_usd_per_request=max_usd_per_request, max_usd_per_run=max_usd_per_run)
    run_id = str(flow_run.get_id() or "local")
    uris = expand_inputs(inputs)
    ensure_dir(out)
    manifest, names = Manifest(out), OutputNames()
    storage = result_storage(cache, cache_dir)  # a local folder or an s3:// prefix

    read = _read_all(uris, options, storage, manifest, run_id, stepwise_max)

    # map: one vision call per image, in parallel; the budget is shared and thread-safe
    futures = {
        item.uri: vision_call.submit(Path(item.uri).name, as_is(item), as_is(block), as_is(budget))
        for item in read
        if isinstance(item, LocalResult)
    }
    summaries: list[ImageSummary] = []
    answers: dict[str, ImageAnswer] = {}
    assets: list[OutputAsset] = []
    for item in read:
        if isinstance(item, ImageSummary):
            summaries.append(item)
            continue
        plan = item.plan.value
        summary = ImageSummary(
            uri=item.uri,
            sha256=item.sha256,
            status=Status.OK,
            kind=item.kind.value.kind.value,
            tier=plan.tier.value,
            image_tokens=plan.image_tokens,
            full_high_tokens=plan.full_high_tokens,
            injection_flagged=item.injection.value.flagged,
        )
        try:
            answer = futures[item.uri].result()
            output = join(out, names.stem_for(item.uri, item.sha256) + ".json")
            written = write_model(output, assemble(item, answer, run_id))
            assets += output_assets("image", item.uri, {output: written})
            summary = summary.model_copy(update={"output": output, "answer_source": answer.source})
            if block is not None and answer.source == block.label:
                name = Path(item.uri).name
                answers[name if name not in answers else f"{name}#{item.sha256[:8]}"] = answer
        except Exception as exc:  # a defect in the vision step or writing: record it
            message = f"{type(exc).__name__}: {exc}"
            error = ErrorInfo(code="processing_error", message=message)
            summary = summary.model_copy(update={"status": Status.FAILED, "error": error})
        finally:
            forget_input(item.uri)
        summaries.append(_ended(summary, manifest))

    record_outputs(assets)  # lineage as Prefect assets, each output tied to its own input

    # reduce: one text-only synthesis over every answer the provider gave
    record = None
    if block is not None and synthesise_results and len(answers) >= 2:
        record = synthesise(options.task, as_is(answers), as_is(block), as_is(budget))
        write_model(join(out, "synthesis.json"), record)

    by_uri = {s.uri: s for s in summaries}
    summaries = [by_uri[u] for u in uris if u in by_uri]
    manifest.compact(order=uris)
    create_table_artifact(
        key="image-results",
        table=[
            {
                "input": s.uri,
                "status": s.status.value,
                "kind": s.kind,
                "tier": s.tier,
                "answer": s.answer_source,
                "image tokens": s.image_tokens,
                "injection": s.injection_flagged,
                "error": s.error.code if s.error else None,
            }
            for s in summaries
        ],
        description=f"{len(summaries)} images → {out} (task {options.task.value})",
    )
    return ImageRunReport(
        out=out,
        task=options.task,
        images=summaries,
        synthesis=record,
        spent_usd=budget.spent_usd,
    )
