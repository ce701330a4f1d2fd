"""`LatentFace` as a PyTorch module: ``model(batch)``, hooks, torch.compile, torch.export, DDP, the DataLoader
transform, and the Literal option types."""

from __future__ import annotations

import io
import pickle
import socket
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from conftest import seeded_model, tiny_config
from PIL import Image
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from latentface import FaceCodes, InvalidImageError, LatentFace, options
from latentface.cli import build_parser
from latentface.preprocess import ImageTransform, create_transform

pytestmark = pytest.mark.usefixtures("one_thread")


def _equal(a: FaceCodes, b: FaceCodes, atol: float = 0.0) -> bool:
    return all(torch.allclose(getattr(a, f), getattr(b, f), atol=atol, rtol=0)
               for f in ("texture", "shape", "light", "pose"))


def test_forward_is_encode_batch_and_hooks_see_every_encode(tiny_model: LatentFace, images: torch.Tensor) -> None:
    seen: list[FaceCodes] = []
    handle = tiny_model.register_forward_hook(lambda module, args, output: seen.append(output))
    codes = tiny_model(images)
    assert isinstance(codes, FaceCodes) and _equal(codes, tiny_model.encode_batch(images))
    assert _equal(tiny_model.encode(images), codes)
    handle.remove()
    assert len(seen) == 3 and all(_equal(s, codes) for s in seen)


def test_torch_compile_fullgraph_matches_eager(tiny_model: LatentFace, images: torch.Tensor) -> None:
    compiled = torch.compile(tiny_model, backend="aot_eager", fullgraph=True)  # no graph break anywhere
    assert _equal(compiled(images), tiny_model(images), atol=1e-5)


def test_torch_export_round_trip(tiny_model: LatentFace, images: torch.Tensor) -> None:
    program = torch.export.export(tiny_model, (images,))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    loaded = torch.export.load(buffer).module()
    out = loaded(images)
    assert isinstance(out, FaceCodes) and _equal(out, tiny_model(images), atol=1e-5)


def test_ddp_trains_through_forward(tiny_model: LatentFace, images: torch.Tensor) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        # forward uses the encoders only: the decoders, confidence net and RDM get no gradient from it.
        model = DistributedDataParallel(tiny_model.train(), find_unused_parameters=True)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        before = tiny_model.light_net[0].weight.detach().clone()
        for _ in range(2):
            codes = model(images)
            (codes.texture.square().mean() + codes.light.square().mean()).backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        dist.destroy_process_group()
    assert isinstance(codes, FaceCodes) and not torch.equal(tiny_model.light_net[0].weight, before)


@pytest.fixture
def photo_files(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(80, 64), (64, 96), (100, 100)]):
        path = tmp_path / f"face{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("preprocess", [{}, {"resize_mode": "center_crop", "resample": "bicubic"}])
def test_transform_is_the_model_preprocessing_and_pickles(preprocess: dict[str, str], photo_files: list[Path]) -> None:
    model = seeded_model(tiny_config(preprocess=preprocess))
    transform = pickle.loads(pickle.dumps(model.transform))
    assert transform == create_transform(model.config) == ImageTransform(64, **preprocess)  # type: ignore[arg-type]
    expected = model.preprocess(photo_files)
    pil = Image.open(photo_files[0])
    as_inputs = [photo_files[0], pil, np.array(pil), torch.from_numpy(np.array(pil)).permute(2, 0, 1)]
    for item in as_inputs:
        assert torch.equal(transform(item), expected[0]), type(item)
    assert torch.equal(torch.stack([transform(p) for p in photo_files]), expected)


class _Files(Dataset):
    def __init__(self, paths: list[Path], transform: ImageTransform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.paths[index])


def test_dataloader_workers_feed_the_model(tiny_model: LatentFace, photo_files: list[Path]) -> None:
    # Worker processes (forked here; spawned ones receive the transform pickled, as tested above).
    loader = DataLoader(_Files(photo_files, tiny_model.transform), batch_size=3, num_workers=2)
    (batch,) = list(loader)
    with torch.no_grad():
        assert _equal(tiny_model(batch), tiny_model.encode(photo_files))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: ImageTransform(64)(torch.rand(2, 3, 8, 8)), InvalidImageError, "one image, got a batch of 2"),
        (lambda: ImageTransform(64, resize_mode="crop"), ValueError, r"resize_mode must be one of \('stretch'"),
        (lambda: ImageTransform(0), ValueError, "size must be positive"),
    ],
)
def test_transform_refuses_bad_use(make, error: type[Exception], match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        make()


def test_mode_arguments_share_one_list_each() -> None:
    hints = typing.get_type_hints(LatentFace.features)
    assert hints["protocol"] is options.FeatureProtocol
    assert typing.get_args(options.FeatureProtocol) == options.FEATURE_PROTOCOLS == ("fer", "verification")
    assert options.ENCODE_PROTOCOLS == (*options.FEATURE_PROTOCOLS, "codes")
    assert options.ENCODE_OUTPUT_SUFFIXES == (".npz", ".parquet")
    encode = build_parser()._subparsers._group_actions[0].choices["encode"]  # type: ignore[union-attr]
    protocol = next(a for a in encode._actions if a.dest == "protocol")
    assert tuple(protocol.choices) == options.ENCODE_PROTOCOLS
    with pytest.raises(ValueError, match=r"protocol must be one of \('fer', 'verification'\), got 'codes'"):
        seeded_model(tiny_config()).num_features("codes")  # type: ignore[arg-type]
