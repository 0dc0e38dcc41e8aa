"""Property-based fuzzing (hypothesis) of validate and normalise on mutated real files: whatever
the bytes, only `Rejection` may escape, and each input ends within a bounded time.

Seeds are real files from ../shared/data (invoices, a receipt photo, speech) when it is there,
and files made here (a text PDF, a scan PNG, a JPEG, MP3/FLAC/OGG). Mutations are the damage
files meet: flipped bytes, cuts, spliced junk, a repeated or dropped stretch, a header field
set to an extreme value.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mmflow.tasks.audio.normalise import normalise_audio
from mmflow.tasks.audio.validate import validate_audio
from mmflow.tasks.errors import Rejection
from mmflow.tasks.normalise import NormaliseOptions, normalise_document
from mmflow.tasks.validate import validate_bytes
from tests.badinputs import good_invoice_pdf, good_invoice_png
from tests.conftest import SHARED_DATA

SECONDS_PER_INPUT = 20.0  # far above any seed's time; a hang or a blow-up shows as a failure
FUZZ = dict(
    deadline=None,  # time is asserted per example below, with a bound that survives a busy CI
    derandomize=True,  # the same examples on every run: a failure reproduces
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _shared(*names: str) -> list[bytes]:
    paths = [SHARED_DATA / name for name in names]
    return [p.read_bytes() for p in paths if p.is_file()]


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(good_invoice_png(70, dpi=50))).convert("RGB").save(
        buffer, format="JPEG", quality=80
    )
    return buffer.getvalue()


DOCUMENT_SEEDS = [
    good_invoice_pdf(71),
    good_invoice_png(72, dpi=40),
    _jpeg(),
    *_shared(
        "invoices/invoice2data/oyo.pdf",
        "invoices/invoice2data/free_fiber.pdf",
        "receipts/sroie/img/000.jpg",
    ),
]


KINDS = ["flip", "cut", "splice", "repeat", "drop", "extreme"]
# (which seed, [(kind of damage, where as a fraction of the length, a count, some bytes)]):
# drawn as small values, so hypothesis shrinks a failure to few edits and prints it briefly.
DAMAGE = st.tuples(
    st.integers(0, 1 << 16),
    st.lists(
        st.tuples(
            st.sampled_from(KINDS),
            st.floats(0, 1),
            st.integers(1, 4096),
            st.binary(min_size=1, max_size=512),
        ),
        min_size=1,
        max_size=4,
    ),
)


def damaged(seeds: list[bytes], damage: tuple[int, list[tuple[str, float, int, bytes]]]) -> bytes:
    """A seed with the drawn edits applied: the damage files meet in transfer and at rest."""
    which, edits = damage
    data = bytearray(seeds[which % len(seeds)])
    for kind, where, count, junk in edits:
        at = int(where * max(0, len(data) - 1))
        if kind == "flip" and data:
            data[at] = junk[0]
        elif kind == "cut":
            del data[at:]
        elif kind == "splice":
            data[at:at] = junk
        elif kind == "repeat":
            data[at:at] = data[at : at + count] * (count % 64 + 1)
        elif kind == "drop":
            del data[at : at + count]
        elif kind == "extreme":  # a length, count or size field set to its largest value
            data[at : at + 4] = b"\xff\xff\xff\x7f"
    return bytes(data)


def _ends_typed_and_in_time(run: Callable[[], object]) -> None:
    started = time.perf_counter()
    with contextlib.suppress(Rejection):  # the typed ending; anything else fails the test
        run()
    assert time.perf_counter() - started < SECONDS_PER_INPUT


@settings(max_examples=500, **FUZZ)  # type: ignore[arg-type]
@given(damage=DAMAGE)
def test_validate_then_normalise_lets_only_rejections_escape(
    damage: tuple[int, list[tuple[str, float, int, bytes]]],
) -> None:
    data = damaged(DOCUMENT_SEEDS, damage)

    def run() -> None:
        source = validate_bytes(data, "fuzzed")
        # Orientation detection runs RapidOCR on every raster page; it is exercised by the
        # corpus (tests/test_bad_inputs.py) and left out here to afford many more examples.
        normalise_document(data, source, NormaliseOptions(fix_orientation=False))

    _ends_typed_and_in_time(run)


# ---------------------------------------------------------------- audio


FFMPEG = ["ffmpeg", "-nostdin", "-v", "error", "-y"]


def _audio_seeds(folder: Path) -> list[bytes]:
    source = folder / "tone.wav"
    tone = ["-f", "lavfi", "-i", "sine=frequency=330:duration=1.5", "-ar", "16000"]
    subprocess.run([*FFMPEG, *tone, str(source)], check=True)
    seeds = [source.read_bytes()]
    for suffix, codec in (("mp3", "libmp3lame"), ("flac", "flac"), ("ogg", "libvorbis")):
        target = folder / f"tone.{suffix}"
        subprocess.run([*FFMPEG, "-i", str(source), "-c:a", codec, str(target)], check=True)
        seeds.append(target.read_bytes())
    return seeds + _shared("audio/speech/spk1_snt1.wav", "audio/edge/silent_1s.wav")


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="needs FFmpeg")
def test_audio_validate_then_normalise_lets_only_rejections_escape(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("fuzz-audio")
    seeds = _audio_seeds(folder)

    @settings(max_examples=40, **FUZZ)  # type: ignore[arg-type]
    @given(damage=DAMAGE)
    def check(damage: tuple[int, list[tuple[str, float, int, bytes]]]) -> None:
        path = folder / "fuzzed.bin"
        path.write_bytes(damaged(seeds, damage))
        _ends_typed_and_in_time(lambda: normalise_audio(validate_audio(path)))

    check()
