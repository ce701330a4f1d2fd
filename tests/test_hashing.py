"""`latentface.hashing`: the seeds and digests that outputs, keys and reports depend on do not change."""

from __future__ import annotations

import hashlib

import torch
from conftest import seeded_model, tiny_config

from latentface.extract import batch_seed
from latentface.hashing import seed_from, state_dict_digest
from latentface.hub import weights_digest


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
