"""An LLM as judge, for answers that have no exact gold: image descriptions and chart readings.

The judge is any provider (tasks/provider: OpenAI, Anthropic, an OpenAI-compatible server),
asked through `complete` for a structured verdict. Practice the literature settled on:

- a rubric of concrete, checkable criteria per task (not "rate 1–10"), each answered yes/no,
  with what the image is known to show given as the reference the judge checks against;
- pairwise comparison with the order of the two answers drawn at random for every pair, so a
  judge that favours the first (or second) position cannot pass that bias on as a preference;
  the share of verdicts that chose the first position is reported so the bias stays visible;
- the judge's agreement with a small set labelled by a person (`judge_labels.json`: 12 pairs,
  each with the preferred answer and why), reported as raw agreement and Cohen's kappa before
  its scores are trusted.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from mmflow.tasks.provider import Budget, Provider

LABELS_PATH = Path(__file__).resolve().parent / "judge_labels.json"

Choice = Literal["a", "b", "tie"]
Position = Literal["first", "second", "tie"]


class Criterion(BaseModel):
    name: str
    question: str


RUBRICS: dict[str, tuple[Criterion, ...]] = {
    "chart": (
        Criterion(
            name="numbers",
            question="Does every number the answer states match the chart's value within 5%?",
        ),
        Criterion(
            name="coverage",
            question="Does it give a value for every category of every series the chart plots?",
        ),
        Criterion(name="labels", question="Are the chart type, title and category labels right?"),
        Criterion(
            name="no_invention",
            question="Does it avoid series, values or trends that the chart does not show?",
        ),
    ),
    "describe": (
        Criterion(
            name="subject",
            question="Does it say correctly what the image is (a chart, an invoice, a photo…)?",
        ),
        Criterion(
            name="key_facts",
            question="Does it state the main facts the image shows (its title or parties, the "
            "totals or the trend)?",
        ),
        Criterion(name="accuracy", question="Is every fact it states consistent with the image?"),
        Criterion(
            name="no_invention",
            question="Does it avoid objects, names and numbers that are not in the image?",
        ),
        Criterion(name="concise", question="Is it at most three sentences, without filler?"),
    ),
}


class CriterionCheck(BaseModel):
    criterion: str
    met: bool
    note: str = ""


class GradeVerdict(BaseModel):
    """What the judge answers about one answer: each criterion met or not."""

    checks: list[CriterionCheck]


class PairCriterion(BaseModel):
    criterion: str
    first_meets: bool
    second_meets: bool


class PairVerdict(BaseModel):
    """What the judge answers about two answers shown in a given order."""

    criteria: list[PairCriterion]
    preferred: Position
    reason: str = Field(description="one or two sentences naming the decisive criterion")


class PairJudgement(BaseModel):
    """The verdict mapped back from positions to the answers' own names."""

    item: str
    first_shown: Literal["a", "b"]
    preferred: Choice
    preferred_position: Position
    reason: str


class RubricGrade(BaseModel):
    item: str
    score: float  # share of the rubric's criteria met
    checks: list[CriterionCheck]


def _rubric_text(task: str) -> str:
    return "\n".join(f"- {c.name}: {c.question}" for c in RUBRICS[task])


def pair_prompt(task: str, question: str, shows: str, first: str, second: str) -> str:
    """The pairwise prompt: the reference, the rubric, then the answers as 1 and 2."""
    return (
        "You are grading two answers to the same question about an image. You cannot see the "
        "image; this is what it is known to show:\n"
        f"<shows>{shows}</shows>\n\n"
        f"Question asked: {question}\n\n"
        "Check each criterion for each answer (true when it is met):\n"
        f"{_rubric_text(task)}\n\n"
        f"<answer_1>{first}</answer_1>\n<answer_2>{second}</answer_2>\n\n"
        "Then say which answer is better overall: 'first' (answer 1), 'second' (answer 2), or "
        "'tie' only when neither is better on any criterion. Position and length are not "
        "merits."
    )


def grade_prompt(task: str, question: str, shows: str, answer: str) -> str:
    return (
        "You are grading an answer to a question about an image. You cannot see the image; "
        f"this is what it is known to show:\n<shows>{shows}</shows>\n\n"
        f"Question asked: {question}\n\n<answer>{answer}</answer>\n\n"
        "For each criterion say whether the answer meets it, with a short note:\n"
        f"{_rubric_text(task)}"
    )


def judge_pair(
    judge: Provider,
    item: str,
    task: str,
    question: str,
    shows: str,
    answers: tuple[str, str],
    rng: random.Random,
    budget: Budget | None = None,
) -> PairJudgement:
    """Compare answers a and b, shown in an order drawn from `rng`."""
    a, b = answers
    first_shown: Literal["a", "b"] = "a" if rng.random() < 0.5 else "b"
    first, second = (a, b) if first_shown == "a" else (b, a)
    verdict = judge.complete(
        pair_prompt(task, question, shows, first, second), PairVerdict, budget=budget
    ).value
    if verdict.preferred == "tie":
        preferred: Choice = "tie"
    elif (verdict.preferred == "first") == (first_shown == "a"):
        preferred = "a"
    else:
        preferred = "b"
    return PairJudgement(
        item=item,
        first_shown=first_shown,
        preferred=preferred,
        preferred_position=verdict.preferred,
        reason=verdict.reason,
    )


def grade_answer(
    judge: Provider,
    item: str,
    task: str,
    question: str,
    shows: str,
    answer: str,
    budget: Budget | None = None,
) -> RubricGrade:
    """One answer against the rubric; criteria the judge leaves out count as not met."""
    verdict = judge.complete(
        grade_prompt(task, question, shows, answer), GradeVerdict, budget=budget
    ).value
    names = [c.name for c in RUBRICS[task]]
    given = {c.criterion: c for c in verdict.checks if c.criterion in names}
    checks = [
        given.get(name, CriterionCheck(criterion=name, met=False, note="not judged"))
        for name in names
    ]
    return RubricGrade(item=item, score=sum(c.met for c in checks) / len(checks), checks=checks)


# ---------------------------------------------------------------- agreement with people


class LabelledPair(BaseModel):
    """Two answers to one question about an image, and which one a person preferred, why."""

    id: str
    task: Literal["chart", "describe"]
    question: str
    shows: str
    answer_a: str
    answer_b: str
    human: Choice
    reasoning: str


def load_labels(path: Path = LABELS_PATH) -> list[LabelledPair]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [LabelledPair.model_validate(item) for item in data["pairs"]]


class Agreement(BaseModel):
    """How often the judge chose as the person did, beyond what chance would give."""

    items: int
    agreed: int
    rate: float
    kappa: float | None  # Cohen's kappa over a/b/tie; None when it is undefined
    first_position_rate: float  # share of non-tie verdicts that chose the answer shown first
    disagreements: list[str] = Field(default_factory=list)


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Agreement of two raters beyond chance; None when chance agreement is total."""
    n = len(first)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(first, second, strict=True)) / n
    a, b = Counter(first), Counter(second)
    expected = sum(a[k] * b[k] for k in set(a) | set(b)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def agreement(labels: Sequence[LabelledPair], judgements: Sequence[PairJudgement]) -> Agreement:
    by_item = {j.item: j for j in judgements}
    human, judge, disagreements = [], [], []
    for label in labels:
        judged = by_item.get(label.id)
        if judged is None:
            continue
        human.append(label.human)
        judge.append(judged.preferred)
        if judged.preferred != label.human:
            disagreements.append(
                f"{label.id}: person {label.human}, judge {judged.preferred} ({judged.reason})"
            )
    decided = [j for j in judgements if j.preferred_position != "tie"]
    first_rate = (
        sum(j.preferred_position == "first" for j in decided) / len(decided) if decided else 0.0
    )
    agreed = sum(h == j for h, j in zip(human, judge, strict=True))
    return Agreement(
        items=len(human),
        agreed=agreed,
        rate=agreed / len(human) if human else 0.0,
        kappa=cohen_kappa(human, judge),
        first_position_rate=first_rate,
        disagreements=disagreements,
    )


def judge_labelled_set(
    judge: Provider,
    labels: Sequence[LabelledPair],
    seed: int = 0,
    budget: Budget | None = None,
) -> tuple[Agreement, list[PairJudgement]]:
    """Judge every labelled pair (orders drawn from `seed`) and compare with the person."""
    rng = random.Random(seed)
    judgements = [
        judge_pair(
            judge,
            label.id,
            label.task,
            label.question,
            label.shows,
            (label.answer_a, label.answer_b),
            rng,
            budget,
        )
        for label in labels
    ]
    return agreement(labels, judgements), judgements
