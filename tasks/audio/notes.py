"""Meeting notes without a model: an extractive summary, decisions and action items.

Every item is a sentence that was actually said, with its time and speaker, so a reader can
jump to it. Cue phrases find decisions and commitments; the owner is a name said with the
commitment, or the speaker when they commit themselves ("I'll…"). A later LLM backend fills
the same `MeetingNotes` model.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from mmflow.tasks.audio.models import ActionItem, Decision, MeetingNotes, NoteItem, Segment

ENGINE = "extractive-v1"

_STOPWORD_TEXT = """
a about above after again all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from
further had has have having he her here hers him his how i if in into is it its itself
just let lets me more most my no nor not now of off on once only or other our ours out
over own same she should so some such than that the their them then there these they this
those through to too under until up very was we were what when where which while who whom
why will with would you your yours yeah yes okay ok oh um uh like know think well right
really going get got go one thing things gonna wanna mean actually
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_DECISION = re.compile(
    r"\b(we(?:'ve| have)? (?:decided|agreed)|(?:it is|it's) (?:decided|agreed)|decision is|"
    r"let's go with|we(?:'ll| will) go with|agreed\b|that settles it|settled\b|approved?\b|"
    r"final answer|we are going with|we're going with)",
    re.IGNORECASE,
)
_SELF_COMMIT = re.compile(
    r"\b(?:I'll|I will|I am going to|I'm going to|I can take|I'll take|let me(?! know))\b",
    re.IGNORECASE,
)
_NAMED_COMMIT = re.compile(
    r"\b([A-Z][a-z]+)(?:,)? (?:will|is going to|'ll|can you|could you|please|needs to|has to)\b"
)
_ASKED = re.compile(
    r"\b(?:can you|could you|would you|please|action item|to do|todo|needs? to|has to|must)\b",
    re.IGNORECASE,
)
_DUE = re.compile(
    r"\b(?:(?:by|before|until|on|due|no later than)\s+(?:the\s+)?"
    r"(?:end of (?:the )?(?:day|week|month|quarter|year)|next\s+\w+|this\s+\w+|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|tonight|today|noon|"
    r"(?:january|february|march|april|may|june|july|august|september|october|november|"
    r"december)(?:\s+\d{1,2}(?:st|nd|rd|th)?)?|\d{1,2}(?:st|nd|rd|th)?(?:\s+of\s+\w+)?|"
    r"\d{1,2}(?::\d{2})?\s*(?:am|pm|o'clock))|"
    r"tomorrow|tonight|next week|next month|end of (?:the )?(?:day|week|month)|"
    r"this (?:afternoon|evening|week))\b",
    re.IGNORECASE,
)
_NOT_NAME_TEXT = """
I We You They He She It This That There Then So And But Or Okay Yes No Well Now Also
Everyone Somebody Someone Nobody Please Maybe Let
"""
_NOT_NAMES = frozenset(_NOT_NAME_TEXT.split())


def sentences(segments: list[Segment]) -> list[NoteItem]:
    """Split speaker segments into sentences at . ? ! using word times for start and end."""
    out: list[NoteItem] = []
    for segment in segments:
        words = segment.words
        if not words:
            if segment.text.strip():
                out.append(
                    NoteItem(
                        text=segment.text.strip(),
                        start=segment.start,
                        end=segment.end,
                        speaker=segment.speaker,
                    )
                )
            continue
        current: list[int] = []
        for i, word in enumerate(words):
            current.append(i)
            if word.text.endswith((".", "?", "!")) or i == len(words) - 1:
                out.append(
                    NoteItem(
                        text=" ".join(words[j].text for j in current),
                        start=words[current[0]].start,
                        end=words[current[-1]].end,
                        speaker=segment.speaker,
                    )
                )
                current = []
    return out


def _content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z][a-z']+", text.lower()) if w not in _STOPWORDS]


def summarise(items: list[NoteItem], max_sentences: int = 5) -> list[NoteItem]:
    """The sentences richest in the meeting's frequent content words, in spoken order."""
    frequency = Counter(w for item in items for w in _content_words(item.text))
    if not frequency:
        return []
    scored: list[tuple[float, int]] = []
    for index, item in enumerate(items):
        words = _content_words(item.text)
        if len(item.text.split()) < 5 or not words:
            continue
        score = sum(math.log1p(frequency[w]) for w in set(words)) / math.sqrt(
            len(item.text.split())
        )
        scored.append((score, index))
    budget = max(1, min(max_sentences, math.ceil(len(items) / 5)))
    chosen = sorted(index for _, index in sorted(scored, reverse=True)[:budget])
    return [items[i] for i in chosen]


def _owner(item: NoteItem) -> str | None:
    named = _NAMED_COMMIT.search(item.text)
    if named and named.group(1) not in _NOT_NAMES:
        return named.group(1)
    if _SELF_COMMIT.search(item.text):
        return item.speaker
    return None


def extract_notes(segments: list[Segment], max_summary: int = 5) -> MeetingNotes:
    """Notes from speaker-attributed segments (the output of align)."""
    items = sentences(segments)
    decisions = [Decision(**item.model_dump()) for item in items if _DECISION.search(item.text)]
    actions: list[ActionItem] = []
    for item in items:
        commits = _SELF_COMMIT.search(item.text) or _NAMED_COMMIT.search(item.text)
        due = _DUE.search(item.text)
        asked = _ASKED.search(item.text)
        if not (commits or (asked and (due or "?" in item.text))):
            continue
        actions.append(
            ActionItem(
                **item.model_dump(),
                owner=_owner(item),
                due=due.group(0) if due else None,
            )
        )
    return MeetingNotes(
        engine=ENGINE,
        summary=summarise(items, max_summary),
        decisions=decisions,
        action_items=actions,
    )
