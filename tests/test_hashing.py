"""`latentface.hashing`: the seeds and digests that outputs, keys and reports depend on do not change."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from conftest import seeded_model, tiny_config

from latentface.data.synthfaces.factors import stream
from latentface.extract import batch_seed
from latentface.hashing import SEED_MASK, hashed_generator, hashed_seed, seed_from, state_dict_digest
from latentface.hub import weights_digest
from latentface.training.trainer import _step_generator


def test_seed_from_is_the_encode_batch_seed() -> None:
    digest = hashlib.sha256(b"latentface-encode:7:3").digest()
    assert batch_seed(7, 3) == seed_from("latentface-encode", 7, 3) == int.from_bytes(digest[:8], "little") >> 1
    assert 0 <= seed_from("x") < 2**63 and seed_from("a", 1) != seed_from("a", 2) != seed_from("a", 1, 0)


def test_state_dict_digest_covers_names_dtypes_shapes_and_bytes() -> None:
    model = seeded_model(tiny_config())
    state = model.state_dict()
    assert weights_digest(model) == state_dict_digest(state, header=model.config.to_json())
    one = {"w": torch.zeros(2, 3)}
    variants = [{"v": torch.zeros(2, 3)}, {"w": torch.zeros(3, 2)}, {"w": torch.zeros(2, 3, dtype=torch.float64)},
                {"w": torch.tensor([[0.0, 0, 0], [0, 0, 1e-6]])}]
    digests = {state_dict_digest(one), state_dict_digest(one, header="h"), *map(state_dict_digest, variants)}
    assert len(digests) == 6 and state_dict_digest(dict(one)) == state_dict_digest(one)


def _blake2b_seed(text: str) -> int:
    """SynthFaces' original stream seed (an 8-byte BLAKE2b digest, little-endian, top bit cleared)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & (2**63 - 1)


def _sha256_seed(text: str) -> int:
    """The trainer's original step seed (the first 8 bytes of SHA-256, little-endian, top bit cleared)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


@pytest.mark.parametrize("key", [(0, "identity", 5), (3, "image", 7, 2), (1, "clip", 4, 0, "key", 9)])
def test_synthfaces_streams_are_unchanged(key: tuple) -> None:
    seed, *rest = key
    expected = _blake2b_seed("/".join(str(p) for p in (seed, "test", *rest)))
    assert stream(seed, "test", *rest).initial_seed() == expected


@pytest.mark.parametrize("keys", [(0, 0, 0, 0), (1234, 1, 5, 17)])
def test_trainer_step_streams_are_unchanged(keys: tuple[int, ...]) -> None:
    assert _step_generator(*keys).initial_seed() == _sha256_seed(json.dumps(list(keys)))


def test_hashed_seed_is_a_63_bit_integer_per_key() -> None:
    seeds = {hashed_seed(f"key/{i}", algorithm) for i in range(200) for algorithm in ("blake2b", "sha256")}
    assert len(seeds) == 400 and all(0 <= s <= SEED_MASK for s in seeds)
    assert hashed_generator("a").initial_seed() == hashed_seed("a") != hashed_seed("a", "sha256")
    with pytest.raises(ValueError, match="algorithm"):
        hashed_seed("a", "md5")  # type: ignore[arg-type]
