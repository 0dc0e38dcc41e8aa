"""Validate audio at the boundary: ffprobe says what the bytes are, a full decode proves it.

Bad input becomes a `Rejection` with a stable code, so a batch never stops for one file.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

from mmflow.tasks.audio.models import ValidatedAudio
from mmflow.tasks.errors import MissingDependency, Rejection, RejectionCode
from mmflow.tasks.inputs import MAX_INPUT_BYTES, check_local_file

DEFAULT_MAX_DURATION_S = 4 * 3600.0

# ffprobe format_name (first name of its comma list) -> media type we accept.
ACCEPTED_CONTAINERS: dict[str, str] = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "mov": "audio/mp4",  # mov,mp4,m4a,3gp,3g2,mj2: M4A/AAC and the audio track of MP4
    "aac": "audio/aac",  # raw ADTS
    "flac": "audio/flac",
    "ogg": "audio/ogg",  # Vorbis, Opus, FLAC in Ogg
    "matroska": "audio/webm",  # matroska,webm
    "webm": "audio/webm",
    "aiff": "audio/aiff",
}

# Leading bytes of the containers above: a file that starts like audio but does not decode
# is corrupt; one that starts like anything else is simply not audio we take.
_AUDIO_MAGIC: tuple[bytes, ...] = (
    b"RIFF",
    b"ID3",
    b"fLaC",
    b"OggS",
    b"\x1a\x45\xdf\xa3",  # EBML (WebM / Matroska)
    b"FORM",
    b"\xff\xfb",
    b"\xff\xf3",
    b"\xff\xf2",  # MPEG audio frames
    b"\xff\xf1",
    b"\xff\xf9",  # ADTS AAC
)


_DAMAGE = re.compile(r"corrupt|invalid|error|truncat|missing|overread|damaged", re.IGNORECASE)


def require_tool(name: str) -> str:
    """Path of an FFmpeg program, or a clear error saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise MissingDependency(name, "install FFmpeg (Debian: apt-get install ffmpeg)")
    return path


def _looks_like_audio(head: bytes) -> bool:
    return head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp"  # ISO BMFF (MP4/M4A)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _probe(path: Path) -> dict[str, object] | None:
    result = subprocess.run(
        [
            require_tool("ffprobe"),
            "-v",
            "error",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    probed: dict[str, object] = json.loads(result.stdout or "{}")
    return probed


def _decode(path: Path, stream_index: int, limit_s: float) -> tuple[str, float | None]:
    """Decode the audio stream, at most `limit_s` of it, throwing the samples away.

    Returns FFmpeg's complaints and the seconds actually decoded: a header may claim ten hours
    for a file that holds two seconds, or the reverse, and only decoding tells.
    """
    result = subprocess.run(
        [
            require_tool("ffmpeg"),
            "-nostdin",
            "-v",
            "warning",
            "-i",
            str(path),
            "-map",
            f"0:{stream_index}",
            "-t",
            f"{limit_s:.3f}",
            "-progress",
            "pipe:1",
            "-nostats",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return result.stderr.strip() or f"ffmpeg exited {result.returncode}", None
    decoded = [int(v) for v in re.findall(r"^out_time_us=(\d+)$", result.stdout, re.MULTILINE)]
    # Warnings such as a guessed channel layout are harmless; damaged data is not.
    errors = "\n".join(line for line in result.stderr.splitlines() if _DAMAGE.search(line))
    return errors, (decoded[-1] / 1e6 if decoded else None)


def validate_audio(
    path: str | Path, *, max_duration_s: float = DEFAULT_MAX_DURATION_S
) -> ValidatedAudio:
    """Check that `path` is decodable audio of an accepted kind and not too long.

    Raises `Rejection` with `not_found`, `empty`, `unsupported_format`, `corrupt` or `too_long`.
    """
    source = Path(path)
    # A regular file, judged before FFmpeg opens it (a FIFO would block it for ever).
    size = check_local_file(source, source.name, MAX_INPUT_BYTES)
    if size == 0:
        raise Rejection(RejectionCode.EMPTY, f"{source.name} is an empty file (0 bytes)")
    with source.open("rb") as handle:
        head = handle.read(16)
    looks_like_audio = _looks_like_audio(head)

    probed = _probe(source)
    if probed is None:
        if looks_like_audio:
            raise Rejection(
                RejectionCode.CORRUPT,
                f"{source.name} starts like an audio file but FFmpeg cannot read it; "
                "re-export or re-download it",
            )
        raise Rejection(
            RejectionCode.UNSUPPORTED_FORMAT,
            f"{source.name} is not audio FFmpeg recognises; send WAV, MP3, M4A/AAC, FLAC, "
            "OGG, Opus, WebM or MP4",
        )

    fmt = probed.get("format")
    fmt_info: dict[str, object] = fmt if isinstance(fmt, dict) else {}
    container = str(fmt_info.get("format_name", ""))
    raw_streams = probed.get("streams")
    streams: list[dict[str, object]] = raw_streams if isinstance(raw_streams, list) else []
    audio_streams = [s for s in streams if s.get("codec_type") == "audio"]
    media_type = ACCEPTED_CONTAINERS.get(container.split(",")[0])
    if media_type is None or not audio_streams:
        what = "has no audio stream" if media_type else f"is of type '{container}'"
        raise Rejection(
            RejectionCode.UNSUPPORTED_FORMAT,
            f"{source.name} {what}; send WAV, MP3, M4A/AAC, FLAC, OGG, Opus, WebM or MP4 "
            "with an audio track",
        )
    stream = audio_streams[0]

    errors, decoded_s = _decode(source, int(str(stream.get("index", 0))), max_duration_s + 1.0)
    if errors:
        raise Rejection(
            RejectionCode.CORRUPT,
            f"{source.name} does not decode cleanly ({errors.splitlines()[0][:200]}); "
            "re-export or re-download it",
        )

    declared = _duration(fmt_info, stream)
    # The header's figure unless decoding found otherwise (a header can lie either way).
    duration = declared if decoded_s is None or abs(declared - decoded_s) <= 0.5 else decoded_s
    if duration <= 0.0:
        raise Rejection(RejectionCode.EMPTY, f"{source.name} holds no audio samples")
    if duration > max_duration_s:
        raise Rejection(
            RejectionCode.TOO_LONG,
            f"{source.name} lasts {duration:.0f} s, over the limit of {max_duration_s:.0f} s; "
            "split it or raise the limit",
        )
    return ValidatedAudio(
        uri=str(source),
        sha256=_sha256(source),
        size=size,
        media_type=media_type,
        container=container,
        codec=str(stream.get("codec_name", "")),
        duration_s=duration,
        sample_rate=int(str(stream.get("sample_rate", 0) or 0)),
        channels=int(str(stream.get("channels", 0) or 0)),
    )


def _duration(fmt: dict[str, object], stream: dict[str, object]) -> float:
    for value in (stream.get("duration"), fmt.get("duration")):
        try:
            return float(str(value))
        except (TypeError, ValueError):
            continue
    return 0.0
