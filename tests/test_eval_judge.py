"""The LLM judge through the real provider SDKs, against local servers of their wire formats.

The servers play a judge whose verdict depends only on the answers' content (it prefers the
answer with fewer numbers that the reference does not show, then the one covering more of the
reference's numbers), so the test knows what a correct mapping from positions back to answers
must give, whichever order the judge saw them in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mmflow.tasks.eval.judge import (
    LABELS_PATH,
    RUBRICS,
    PairVerdict,
    agreement,
    cohen_kappa,
    grade_answer,
    judge_labelled_set,
    load_labels,
)
from tests.fakeproviders import (
    ANTHROPIC_MESSAGES,
    OPENAI_CHAT,
    FakeServer,
    Recorded,
    Reply,
    anthropic_reply,
    openai_chat,
)

pytest.importorskip("openai")
pytest.importorskip("anthropic")

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in NUMBER.findall(text)}


def content_preference(shows: str, first: str, second: str) -> str:
    """The content-only judge: 'first', 'second' or 'tie'."""

    def key(answer: str) -> tuple[int, int]:
        found = _numbers(answer)
        wrong = len(found - _numbers(shows))
        covered = len(found & _numbers(shows))
        return (-wrong, covered)

    a, b = key(first), key(second)
    return "tie" if a == b else ("first" if a > b else "second")


def _prompt_of(request: Recorded) -> str:
    body = request.json()
    texts: list[str] = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        else:
            texts += [part.get("text", "") for part in content or [] if isinstance(part, dict)]
    return "\n".join(texts)


def _tag(prompt: str, name: str) -> str:
    found = re.search(rf"<{name}>(.*?)</{name}>", prompt, re.S)
    assert found, f"<{name}> missing from the judge's prompt"
    return found.group(1)


def pair_verdict(prompt: str, biased: bool) -> dict[str, Any]:
    first, second = _tag(prompt, "answer_1"), _tag(prompt, "answer_2")
    preferred = "first" if biased else content_preference(_tag(prompt, "shows"), first, second)
    criteria = [
        {
            "criterion": c.name,
            "first_meets": preferred != "second",
            "second_meets": preferred != "first",
        }
        for c in RUBRICS["chart"]
    ]
    return PairVerdict.model_validate(
        {"criteria": criteria, "preferred": preferred, "reason": "numbers"}
    ).model_dump()


def openai_judge(biased: bool = False) -> Callable[[Recorded], Reply]:
    return lambda request: openai_chat(json.dumps(pair_verdict(_prompt_of(request), biased)))


def anthropic_judge(biased: bool = False) -> Callable[[Recorded], Reply]:
    return lambda request: anthropic_reply(
        pair_verdict(_prompt_of(request), biased), tool_name="record_PairVerdict"
    )


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


def _openai(server: FakeServer) -> Any:
    from mmflow.blocks.providers import OpenAIProvider

    return OpenAIProvider(api_key="sk-test", base_url=f"{server.url}/v1", model="gpt-4o")


def _anthropic(server: FakeServer) -> Any:
    from mmflow.blocks.providers import AnthropicProvider

    return AnthropicProvider(api_key="sk-ant-test", base_url=server.url)


def _expected_agreement() -> int:
    labels = load_labels()
    verdicts = [content_preference(x.shows, x.answer_a, x.answer_b) for x in labels]
    mapped = [{"first": "a", "second": "b", "tie": "tie"}[v] for v in verdicts]
    return sum(m == x.human for m, x in zip(mapped, labels, strict=True))


@pytest.mark.parametrize(
    ("make", "route", "handler"),
    [(_openai, OPENAI_CHAT, openai_judge), (_anthropic, ANTHROPIC_MESSAGES, anthropic_judge)],
    ids=["openai", "anthropic"],
)
def test_the_judge_maps_verdicts_back_whatever_order_it_was_shown(
    server: FakeServer, make: Any, route: str, handler: Any
) -> None:
    server.on("POST", route, handler())
    labels = load_labels()
    found, judgements = judge_labelled_set(make(server), labels, seed=4)
    assert len(server.sent(route)) == len(labels) == 12
    assert {j.first_shown for j in judgements} == {"a", "b"}, "the order must be drawn per pair"
    for label, judged in zip(labels, judgements, strict=True):
        expected = content_preference(label.shows, label.answer_a, label.answer_b)
        assert judged.preferred == {"first": "a", "second": "b", "tie": "tie"}[expected], label.id
    assert found.agreed == _expected_agreement()
    assert found.items == 12 and found.rate == found.agreed / 12


def test_the_order_shown_is_random_per_pair_and_repeatable_by_seed(server: FakeServer) -> None:
    server.on("POST", OPENAI_CHAT, openai_judge())
    labels = load_labels()
    _, first = judge_labelled_set(_openai(server), labels, seed=1)
    _, again = judge_labelled_set(_openai(server), labels, seed=1)
    _, other = judge_labelled_set(_openai(server), labels, seed=2)
    orders = [j.first_shown for j in first]
    assert orders == [j.first_shown for j in again]
    assert orders != [j.first_shown for j in other]
    prompts = [_prompt_of(r) for r in server.sent(OPENAI_CHAT)[:12]]
    shown_first = [_tag(p, "answer_1") for p in prompts]
    assert shown_first == [
        x.answer_a if o == "a" else x.answer_b for x, o in zip(labels, orders, strict=True)
    ]


def test_a_judge_that_always_picks_the_first_position_shows_as_biased(server: FakeServer) -> None:
    server.on("POST", OPENAI_CHAT, openai_judge(biased=True))
    found, judgements = judge_labelled_set(_openai(server), load_labels(), seed=4)
    assert found.first_position_rate == 1.0
    # randomised order: its "preferences" follow the coin, not the content
    assert [j.preferred for j in judgements] == [j.first_shown for j in judgements]
    assert found.agreed < _expected_agreement()


def test_the_prompt_carries_the_rubric_and_the_reference(server: FakeServer) -> None:
    server.on("POST", OPENAI_CHAT, openai_judge())
    judge_labelled_set(_openai(server), load_labels()[:1], seed=0)
    prompt = _prompt_of(server.sent(OPENAI_CHAT)[0])
    assert all(c.question in prompt for c in RUBRICS["chart"])
    assert load_labels()[0].shows in prompt
    body = server.sent(OPENAI_CHAT)[0].json()
    assert body["response_format"]["json_schema"]["name"] == "PairVerdict"


def test_grading_scores_the_share_of_criteria_met(server: FakeServer) -> None:
    checks = [
        {"criterion": c.name, "met": c.name != "concise", "note": ""} for c in RUBRICS["describe"]
    ]
    server.queue("POST", OPENAI_CHAT, openai_chat(json.dumps({"checks": checks})))
    grade = grade_answer(
        _openai(server), "x.png", "describe", "Describe it.", "A chart.", "A bar chart."
    )
    assert grade.score == pytest.approx(4 / 5)
    assert [c.criterion for c in grade.checks if not c.met] == ["concise"]


def test_kappa_is_one_for_perfect_agreement_and_zero_at_chance() -> None:
    assert cohen_kappa(["a", "b", "tie"], ["a", "b", "tie"]) == 1.0
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"]) == 0.0
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None


def test_the_labelled_set_has_twelve_pairs_with_reasons() -> None:
    labels = load_labels(LABELS_PATH)
    assert len(labels) == 12 and len({x.id for x in labels}) == 12
    assert {x.task for x in labels} == {"chart", "describe"}
    assert all(x.reasoning and x.answer_a != x.answer_b for x in labels)
    assert {x.human for x in labels} == {"a", "b", "tie"}
    assert agreement(labels, []).items == 0


@pytest.mark.slow
def test_the_domain_tier_reports_the_judge_s_agreement_through_a_saved_block(
    prefect_server: str, server: FakeServer, tmp_path: Any
) -> None:
    """`mmflow eval run domain --judge NAME --dataset judge-agreement`: the saved block is
    loaded from the server, asked once per labelled pair, and its agreement recorded."""
    pytest.importorskip("sqlalchemy")
    from pydantic import SecretStr

    from mmflow.blocks.providers import OpenAIProvider
    from mmflow.flows.evaluation import eval_flow
    from mmflow.tasks.eval.results import Tier

    server.on("POST", OPENAI_CHAT, openai_judge())
    OpenAIProvider(api_key=SecretStr("sk-judge"), base_url=f"{server.url}/v1", model="gpt-4o").save(
        "mmflow-test-judge", overwrite=True
    )
    outcome = eval_flow(
        tier=Tier.DOMAIN,
        out=str(tmp_path / "eval"),
        datasets=["judge-agreement"],
        judge="mmflow-test-judge",
        history=f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        gate=False,
    )
    [judged] = outcome.run.outcomes
    assert judged.error is None, judged.error
    figures = {m.name: m.value for m in judged.metrics}
    assert figures["judge_agreement"] == pytest.approx(_expected_agreement() / 12)
    assert 0.0 < figures["judge_first_position_rate"] < 1.0
    assert len(server.sent(OPENAI_CHAT)) == 12
    assert "judge_agreement" in (tmp_path / "eval" / "domain" / "report.md").read_text()
