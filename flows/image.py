"""The image-analysis flow: validate → normalise → OCR → classify → injection scan → plan (tier
and every provider's cost) → the vision call, for each image (map, on the shared runner); then,
with a provider, one text-only synthesis over the answers (reduce, the pipeline's `finish`).
Every input ends in the manifest with a result or a typed rejection.

Without a provider the flow is fully offline: each image gets its kind, OCR text with boxes,
injection report, chosen tier and cost report, and the answer the local pipeline can give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, cast

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State
from pydantic import BaseModel, ConfigDict

from mmflow.blocks.providers import resolve_provider
from mmflow.flows.runs import (
    InputSummary,
    RunReport,
    RunSettings,
    as_is,
    display_name,
    run_name,
    run_scenario,
)
from mmflow.flows.steps import StepRunner
from mmflow.tasks.caching import Stamped, source_key, unless_rejected
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
from mmflow.tasks.models import SourceInfo, Status, Usd
from mmflow.tasks.persist import join, write_model
from mmflow.tasks.provider import Budget, Provider
from mmflow.tasks.provider.fallback import run_fallback_chain
from mmflow.tasks.versions import installed_version


class SynthesisRecord(BaseModel):
    """`synthesis.json`: the reduce step over every image answered by the provider."""

    task: ImageTask
    inputs: list[str]
    source: str
    value: Synthesis | None = None
    cost_usd: Decimal = Decimal("0")
    error: str | None = None


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
            "mmflow_version": installed_version("mmflow"),
            "flags": [*source.flags, *page.flags],
            "steps": [
                s.lineage.model_copy(update={"cached": s.run_id != run_id}).model_dump(mode="json")
                for s in chain
            ],
        },
    )


@task(name="synthesise", cache_policy=NO_CACHE)
def synthesise(
    task_kind: ImageTask,
    answers: dict[str, ImageAnswer],
    provider: Provider,
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


@dataclass(frozen=True)
class ImagePipeline:
    """The image scenario for the runner: local steps and the vision call per image (map), and
    one synthesis over the provider's answers once every image has ended (reduce)."""

    Options: ClassVar[type[BaseModel]] = ImageOptions
    options: ImageOptions = field(default_factory=ImageOptions)
    provider: Provider | None = None
    budget: Budget | None = None  # shared by every call of the run (thread-safe): with a provider
    synthesise: bool = True
    name: str = "image"

    @property
    def max_input_bytes(self) -> int:
        """Larger inputs are refused from their size before they are hashed."""
        return self.options.limits.max_bytes

    def process(self, uri: str, sha256: str, steps: StepRunner, run_id: str) -> BaseModel:
        local = local_steps(uri, sha256, steps, self.options)
        answer = ask_vision(
            local.page.value,
            local.plan.value,
            local.kind.value,
            local.text.value,
            local.injection.value,
            self.provider,
            self.budget,
        )
        return assemble(local, answer, run_id)

    def write(self, result: BaseModel, out: str, stem: str) -> dict[str, bytes]:
        path = join(out, f"{stem}.json")
        return {path: write_model(path, result)}

    def details(self, result: BaseModel) -> dict[str, Any]:
        image = cast(ImageResult, result)
        return {
            "kind": image.kind.kind.value,
            "tier": image.plan.tier.value,
            # the route taken: a planned vision call that fell back was answered offline
            "route": "ocr" if image.answer.source.startswith("offline:") else "vision",
            "image_tokens": image.plan.image_tokens,
            "full_high_tokens": image.plan.full_high_tokens,
            "injection_flagged": image.injection.flagged,
            "answer_source": image.answer.source,
            "answer": image.answer.model_dump(mode="json", include={"source", "value", "note"}),
        }

    def finish(self, out: str, summaries: list[InputSummary]) -> dict[str, Any]:
        """With a provider and two or more of its answers: `synthesis.json` over them."""
        if self.provider is None or self.budget is None:
            return {"spent_usd": "0"}
        totals: dict[str, Any] = {"spent_usd": str(self.budget.spent_usd)}
        if not self.synthesise:
            return totals
        label = self.provider.label
        answers: dict[str, ImageAnswer] = {}
        for summary in summaries:
            answer = summary.details.get("answer") or {}
            if summary.status is Status.OK and answer.get("source") == label:
                name = display_name(summary.uri)
                key = name if name not in answers else f"{name}#{(summary.sha256 or '')[:8]}"
                answers[key] = ImageAnswer.model_validate(answer)
        if len(answers) >= 2:
            record = synthesise(
                self.options.task, as_is(answers), as_is(self.provider), as_is(self.budget)
            )
            totals["synthesis"] = join(out, "synthesis.json")
            write_model(totals["synthesis"], record)
            totals["spent_usd"] = str(self.budget.spent_usd)
        return totals


@flow(name="image", flow_run_name=run_name("image"), log_prints=True)
def image_flow(
    inputs: list[str],
    out: str,
    task: ImageTask = ImageTask.DESCRIBE,
    options: ImageOptions = ImageOptions(),
    provider: str | None = None,
    max_usd: Usd | None = None,
    max_usd_per_request: Usd | None = None,
    synthesise_results: bool = True,
    names: list[str] | None = None,
    run: RunSettings = RunSettings(),
) -> RunReport | State[Any]:
    """Classify, read and cost images; with a provider, answer the task at the cheapest tier.

    Args:
        inputs: Image (or one-page PDF) files, folders, globs or s3:// URIs to process.
        out: Absolute folder or s3:// prefix for the results and manifest.jsonl.
        task: What to answer about each image: describe, classify, extract-text or chart.
        options: OCR engine, confidence thresholds and, under `limits`, input limits.
        provider: Name of a saved provider block that answers at the planned tier; empty runs
            fully offline.
        max_usd: Most the run may spend on model calls, in US dollars.
        max_usd_per_request: Most one call may cost, in US dollars.
        synthesise_results: With a provider, one text-only summary over every image's answer.
        names: Display names of the inputs, in order (the webhook passes uploaded file names).
        run: Workers, caching, timeouts and strictness of the run.
    """
    block = resolve_provider(provider)
    budget = Budget(max_usd_per_request=max_usd_per_request, max_usd_per_run=max_usd)
    pipeline = ImagePipeline(
        options.model_copy(update={"task": task}),
        block,
        budget if block is not None else None,
        synthesise_results,
    )
    return run_scenario(pipeline, inputs, out, run, names)
