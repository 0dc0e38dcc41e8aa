"""Give every recognised word a speaker, and cut segments where the speaker changes.

WhisperX users lose words that fall between diarisation turns and see whole sentences given to
one speaker. Here a word takes the speaker it overlaps most, else the nearest turn; no word is
ever dropped, and a recogniser segment spoken by two people becomes two segments. The
recogniser writes one stream of words even where two people talk at once; such a word keeps
its one speaker and is marked `overlap`, with the other speaker who was talking.
"""

from __future__ import annotations

from bisect import bisect_left

from mmflow.tasks.audio.models import Diarisation, Segment, SpeakerTurn, Transcript, WordTiming

FALLBACK_SPEAKER = "SPEAKER_00"  # words but no turns (diarisation found nothing): one voice
# A second speaker counts as talking over a word when their turns cover this share of it.
OVERLAP_SHARE = 0.5


def speakers_over(start: float, end: float, turns: list[SpeakerTurn]) -> list[str]:
    """Speakers by how long they overlap [start, end], longest first; when none does, the
    speaker of the nearest turn alone. Only the first two matter: at most two talk at once."""
    if not turns:
        return [FALLBACK_SPEAKER]
    overlap: dict[str, float] = {}
    for turn in turns:
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
    if overlap:
        ranked = sorted(overlap, key=lambda speaker: -overlap[speaker])
        first = ranked[0]
        others = [s for s in ranked[1:] if overlap[s] >= OVERLAP_SHARE * max(end - start, 1e-3)]
        return [first, *others]
    middle = (start + end) / 2
    nearest = min(turns, key=lambda t: max(t.start - middle, middle - t.end, 0.0))
    return [nearest.speaker]


def speaker_for(start: float, end: float, turns: list[SpeakerTurn]) -> str:
    """Speaker overlapping [start, end] the longest; otherwise the speaker of the nearest turn."""
    return speakers_over(start, end, turns)[0]


def assign_speakers(transcript: Transcript, diarisation: Diarisation) -> list[Segment]:
    """Segments whose words all have one speaker; every input word appears exactly once."""
    turns = sorted(diarisation.turns, key=lambda t: t.start)
    starts = [t.start for t in turns]
    longest = max((t.end - t.start for t in turns), default=0.0)
    out: list[Segment] = []
    for segment in transcript.segments:
        if not segment.words:  # a segment without word times still needs an owner
            speaker = speaker_for(segment.start, segment.end, turns)
            out.append(segment.model_copy(update={"speaker": speaker}))
            continue
        run: list[WordTiming] = []
        for word in segment.words:
            # Turns that can overlap the word start within `longest` before it; when none
            # overlaps, the nearest turn is searched among all of them.
            lo = bisect_left(starts, word.start - longest)
            hi = bisect_left(starts, word.end)
            near = [t for t in turns[lo:hi] if t.end > word.start]
            speaker, *others = speakers_over(word.start, word.end, near or turns)
            labelled = word.model_copy(
                update={
                    "speaker": speaker,
                    "overlap": bool(others),
                    "overlap_speaker": others[0] if others else None,
                }
            )
            if run and run[-1].speaker != speaker:
                out.append(_segment_of(run, segment))
                run = []
            run.append(labelled)
        out.append(_segment_of(run, segment))
    return out


def _segment_of(words: list[WordTiming], parent: Segment) -> Segment:
    return Segment(
        start=words[0].start,
        end=words[-1].end,
        text=" ".join(w.text for w in words),
        speaker=words[0].speaker,
        words=words,
        avg_logprob=parent.avg_logprob,
        no_speech_prob=parent.no_speech_prob,
        flags=parent.flags,
    )
