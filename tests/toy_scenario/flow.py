"""The toy scenario's pipeline and flow (as a module in flows/ would be)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, ClassVar, cast

from prefect import flow
from prefect.states import State
from pydantic import BaseModel, Field

from mmflow.flows.registry import Scenario
from mmflow.flows.runs import InputSummary, RunReport, RunSettings, run_scenario
from mmflow.flows.steps import StepRunner
from mmflow.tasks.caching import source_key, unless_rejected
from mmflow.tasks.persist import join, write_model
from tests.toy_scenario.steps import COUNT, WordCount


class WordCountOptions(BaseModel):
    lowercase: bool = Field(True, description="Count words case-insensitively.")


DEFAULTS = WordCountOptions()


class WordCountResult(BaseModel):
    count: WordCount
    lineage: dict[str, Any]


@dataclass(frozen=True)
class WordCountPipeline:
    Options: ClassVar[type[BaseModel]] = WordCountOptions
    options: WordCountOptions = field(default_factory=WordCountOptions)
    name: str = "wordcount"

    def process(self, uri: str, sha256: str, steps: StepRunner, run_id: str) -> BaseModel:
        counted = unless_rejected(
            steps.run(COUNT, [source_key(sha256)], uri=uri, lowercase=self.options.lowercase)
        )
        return WordCountResult(
            count=counted.value,
            lineage={
                "input_sha256": sha256,
                "mmflow_version": version("mmflow"),
                "steps": [counted.lineage.model_dump(mode="json")],
            },
        )

    def write(self, result: BaseModel, out: str, stem: str) -> dict[str, bytes]:
        path = join(out, f"{stem}.json")
        return {path: write_model(path, result)}

    def details(self, result: BaseModel) -> dict[str, Any]:
        return {"words": cast(WordCountResult, result).count.words}

    def finish(self, out: str, summaries: list[InputSummary]) -> dict[str, Any]:
        return {"words": sum(s.details.get("words", 0) for s in summaries)}


@flow(name="wordcount")
def wordcount_flow(
    inputs: list[str],
    out: str,
    options: WordCountOptions = DEFAULTS,
    names: list[str] | None = None,
    run: RunSettings = RunSettings(),
) -> RunReport | State[Any]:
    """Count the words of text files."""
    return run_scenario(WordCountPipeline(options), inputs, out, run, names)


SCENARIO = Scenario(
    name="wordcount",
    summary="Words counted in text files (a toy scenario).",
    flow="tests.toy_scenario.flow:wordcount_flow",
    pipeline="tests.toy_scenario.flow:WordCountPipeline",
    media_types=("text/",),
)
