"""A short two-voice stand-up meeting made with espeak-ng and sox, for meeting-flow tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

TURNS = [
    (["-v", "en-us+m3", "-p", "30"], "Good morning everyone, let us review the budget today."),
    (["-v", "en-gb+f2", "-p", "80"], "Thanks. The marketing spend came in under plan."),
    (["-v", "en-us+m3", "-p", "30"], "Great. We decided to move that money into research."),
    (["-v", "en-gb+f2", "-p", "80"], "Agreed. I will send the revised numbers tomorrow."),
]


def write_standup(folder: Path) -> Path:
    """One second of silence, then two espeak-ng voices taking turns, as `folder/standup.wav`."""
    lead, gap = folder / "lead.wav", folder / "gap.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(lead), "trim", "0", "1"], check=True)
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", str(gap), "trim", "0", "0.7"], check=True
    )
    parts = [str(lead)]
    for i, (voice, text) in enumerate(TURNS):
        raw, clip = folder / f"raw{i}.wav", folder / f"clip{i}.wav"
        subprocess.run(["espeak-ng", *voice, "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(clip)], check=True)
        parts += [str(clip), str(gap)]
    wav = folder / "standup.wav"
    subprocess.run(["sox", *parts, str(wav)], check=True)
    return wav
