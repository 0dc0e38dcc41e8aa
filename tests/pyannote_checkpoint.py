"""A tiny pyannote.audio speaker-diarisation pipeline folder, built from untrained weights.

No pretrained pyannote checkpoint is on PyPI and tests never download from a hub, so the tests
build the folder a pretrained pipeline ships as (`config.yaml` + `segmentation/`, `embedding/`,
`plda/`), in the very formats pyannote.audio reads: Lightning checkpoints carrying pyannote's
architecture and specifications, and the VBx PLDA `.npz` pair. Everything that loads and runs
it is pyannote's own code; only the weights are random (seeded, so runs repeat), and the
segmentation classifier's bias keeps it from calling everything silence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SEGMENTATION_CHUNK_S = 10.0  # what pretrained pipelines use
LOCAL_SPEAKERS = 2  # speakers per chunk; pretrained use 3, each one costs an embedding pass
EMBEDDING_DIMENSION = 256  # WeSpeakerResNet34's output
LDA_DIMENSION = 128  # PLDA's default `lda_dimension`

CONFIG_YAML = """\
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    segmentation: $model/segmentation
    segmentation_step: 0.5  # pretrained pipelines slide by 0.1 of a chunk; fewer chunks here
    embedding: $model/embedding
    embedding_exclude_overlap: true
    plda: $model/plda
    clustering: VBxClustering
    segmentation_batch_size: 8
    embedding_batch_size: 8
params:
  segmentation:
    min_duration_off: 0.0
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
"""


def _save_checkpoint(model: Any, path: Path) -> None:
    """What Lightning's `Trainer.save_checkpoint` writes for a pyannote `Model`: weights, the
    init hyper-parameters, and pyannote's own block (versions, architecture, specifications)."""
    import lightning
    import torch

    checkpoint: dict[str, Any] = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def _segmentation_model() -> Any:
    """PyanNet with the powerset output of pyannote's pretrained segmentation models."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    model = PyanNet(sample_rate=16_000, num_channels=1)
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=SEGMENTATION_CHUNK_S,
        classes=[f"speaker#{i + 1}" for i in range(LOCAL_SPEAKERS)],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    model.build()
    # Powerset class 0 is "nobody speaks". Untrained, the classifier is as likely to call a whole
    # file silence as not, and then nothing downstream runs; so its bias keeps away from that
    # class (the one deliberate weight), and the random features pick among the speaker sets.
    with torch.no_grad():
        model.classifier.bias[0] = -10.0
    return model


def _embedding_model() -> Any:
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    model = WeSpeakerResNet34(sample_rate=16_000, num_channels=1)
    model.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=SEGMENTATION_CHUNK_S
    )
    return model


def _save_plda(folder: Path, rng: np.random.Generator) -> None:
    """The x-vector transform (centring + LDA) and the PLDA model VBx clustering reads."""
    folder.mkdir(parents=True, exist_ok=True)
    lda, _ = np.linalg.qr(rng.standard_normal((EMBEDDING_DIMENSION, LDA_DIMENSION)))
    np.savez(
        folder / "xvec_transform.npz",
        mean1=np.zeros(EMBEDDING_DIMENSION),
        mean2=np.zeros(LDA_DIMENSION),
        lda=lda,
    )
    np.savez(
        folder / "plda.npz",
        mu=np.zeros(LDA_DIMENSION),
        tr=np.eye(LDA_DIMENSION),
        psi=np.linspace(4.0, 0.1, LDA_DIMENSION),  # between-class variances, decreasing
    )


def build_pipeline_folder(folder: Path, seed: int = 0) -> Path:
    """Write config.yaml, segmentation/, embedding/ and plda/ into `folder`; returns it."""
    import torch

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    _save_checkpoint(_segmentation_model(), folder / "segmentation" / "pytorch_model.bin")
    _save_checkpoint(_embedding_model(), folder / "embedding" / "pytorch_model.bin")
    _save_plda(folder / "plda", np.random.default_rng(seed))
    (folder / "config.yaml").write_text(CONFIG_YAML)
    return folder
