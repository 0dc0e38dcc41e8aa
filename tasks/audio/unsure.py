"""Flags on words and segments the recogniser may have got wrong: kept, marked, never dropped.

Whisper's own decoding rules treat these as signs of trouble; past the points where
tasks/audio/transcribe.py drops a segment as a hallucination, what is left is flagged, so a
reader (and `mmflow eval meeting`) can see how much of a transcript to doubt:

- `outside_speech`: a word timed where the speech detector heard no speech (Whisper reads the
  pauses inside a chunk too, and invents words there when unsure);
- `repetition_loop`: a word inside the same one-to-four words said three times in a row or
  more, or a segment whose text compresses like a loop;
- `low_avg_logprob`: a segment decoded with low average log-probability;
- `high_no_speech_prob`: a segment Whisper itself thought might not be speech.
"""

from __future__ import annotations

import re
import zlib

from mmflow.tasks.audio.models import SpeechRegion, WordTiming

OUTSIDE_SPEECH = "outside_speech"
REPETITION_LOOP = "repetition_loop"
LOW_AVG_LOGPROB = "low_avg_logprob"
HIGH_NO_SPEECH_PROB = "high_no_speech_prob"
FLAGS = (OUTSIDE_SPEECH, REPETITION_LOOP, LOW_AVG_LOGPROB, HIGH_NO_SPEECH_PROB)

# Whisper's fallback thresholds (it re-decodes below / above these); the drop rules are
# stricter (tasks/audio/transcribe.py), so flagged segments sit between the two.
LOW_LOGPROB = -1.0
NO_SPEECH = 0.5
LOOP_COMPRESSION_RATIO = 2.0
LOOP_REPEATS = 3
WORD_IN_SPEECH_SHARE = 0.5  # less of the word inside detected speech: outside


def compression_ratio(text: str) -> float:
    """Whisper's measure: raw bytes over zlib-compressed bytes (loops compress well)."""
    raw = text.encode()
    return len(raw) / max(1, len(zlib.compress(raw)))


def segment_flags(text: str, avg_logprob: float, no_speech_prob: float) -> list[str]:
    flags = []
    if compression_ratio(text) > LOOP_COMPRESSION_RATIO:
        flags.append(REPETITION_LOOP)
    if avg_logprob < LOW_LOGPROB:
        flags.append(LOW_AVG_LOGPROB)
    if no_speech_prob > NO_SPEECH:
        flags.append(HIGH_NO_SPEECH_PROB)
    return flags


def _normalised(word: str) -> str:
    return re.sub(r"\W+", "", word.lower())


def looping_words(words: list[str]) -> set[int]:
    """Indices of words inside an n-gram (n ≤ 4) repeated `LOOP_REPEATS` times in a row."""
    tokens = [_normalised(w) for w in words]
    looping: set[int] = set()
    for n in range(1, 5):
        i = 0
        while i + n * LOOP_REPEATS <= len(tokens):
            gram = tokens[i : i + n]
            repeats = 1
            while tokens[i + repeats * n : i + (repeats + 1) * n] == gram:
                repeats += 1
            if repeats >= LOOP_REPEATS and any(gram):
                looping.update(range(i, i + repeats * n))
                i += repeats * n
            else:
                i += 1
    return looping


def flag_words(words: list[WordTiming], regions: list[SpeechRegion]) -> list[WordTiming]:
    """The words with their flags set (outside detected speech, inside a loop)."""
    looping = looping_words([w.text for w in words])
    out = []
    for i, word in enumerate(words):
        flags = list(word.flags)
        length = max(word.end - word.start, 1e-3)
        inside = sum(max(0.0, min(word.end, r.end) - max(word.start, r.start)) for r in regions)
        if inside < WORD_IN_SPEECH_SHARE * length and OUTSIDE_SPEECH not in flags:
            flags.append(OUTSIDE_SPEECH)
        if i in looping and REPETITION_LOOP not in flags:
            flags.append(REPETITION_LOOP)
        out.append(word.model_copy(update={"flags": flags}) if flags else word)
    return out
