"""The bundled `synthfaces-tiny` weights load offline, are small, and carry a card with their scores."""

from __future__ import annotations

from pathlib import Path

import torch

from latentface import LatentFace, list_pretrained
from latentface.hub import WEIGHTS_NAME, resolve

FACES = sorted((Path(__file__).resolve().parents[1] / "examples" / "faces").glob("*.png"))


def test_synthfaces_tiny_loads_offline_and_is_small(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ("synthfaces-tiny", "bundled", True) in [(r.name, r.kind, r.cached) for r in list_pretrained()]
    folder = resolve("synthfaces-tiny")
    assert (folder / WEIGHTS_NAME).stat().st_size <= 10 * 2**20
    model = LatentFace.from_pretrained("synthfaces-tiny")
    assert model.config.has_rdm and not model.training
    card = model.model_card or ""
    for text in ("benchmarks/train.py", "SIDE", "MAD", "retrieval", "mean ground-truth depth", "chance"):
        assert text in card, text


def test_synthfaces_tiny_reconstructs_the_sample_faces() -> None:
    model = LatentFace.from_pretrained("synthfaces-tiny")
    with torch.no_grad():
        batch = model.preprocess(FACES)
        view = model.render(model.encode(batch))
    assert len(FACES) == 8 and view.mask.float().mean() > 0.8
    error = ((view.image - batch).abs().mean(1) * view.mask).sum() / view.mask.sum()
    # A trained model reconstructs its own world far better than the mean image does.
    baseline = (batch - batch.mean(0, keepdim=True)).abs().mean()
    assert error < 0.5 * baseline, (float(error), float(baseline))
