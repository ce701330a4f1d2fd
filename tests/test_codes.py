"""Light and pose codes: physical units to code units and back (`latentface.render.codes`)."""

from __future__ import annotations

import math

import pytest
import torch

from latentface import LatentFaceConfig
from latentface.render.codes import decode_light, light_code, pose_code
from latentface.render.pose import rotation_matrix, view_to_pose

CONFIG = LatentFaceConfig()


@pytest.mark.parametrize(
    ("ambient", "diffuse", "direction"),
    [(0.5, 0.5, (0.0, 0.0, 1.0)), (0.2, 0.9, (1.0, -0.5, 2.0)), (1.0, 0.0, (-3.0, 4.0, 0.5))],
)
def test_light_code_inverts_decode_light(ambient: float, diffuse: float, direction: tuple[float, float, float]) -> None:
    code = light_code(CONFIG, ambient, diffuse, direction)
    assert code.shape == (4,) and code.dtype == torch.float32
    a, d, v = decode_light(code[None].double(), CONFIG)
    torch.testing.assert_close(a, torch.tensor([ambient], dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(d, torch.tensor([diffuse], dtype=torch.float64), atol=1e-6, rtol=0)
    expected = torch.tensor(direction, dtype=torch.float64)
    torch.testing.assert_close(v[0], expected / expected.norm(), atol=1e-6, rtol=0)


def test_light_code_respects_config_ranges() -> None:
    config = LatentFaceConfig(min_ambient=0.2, max_ambient=0.6)
    code = light_code(config, ambient=[0.2, 0.4, 0.6])
    torch.testing.assert_close(code[:, 0], torch.tensor([-1.0, 0.0, 1.0]))
    fixed = LatentFaceConfig(min_diffuse=0.5, max_diffuse=0.5)
    assert light_code(fixed, diffuse=0.5)[1] == 0
    with pytest.raises(ValueError, match="diffuse is fixed"):
        light_code(fixed, diffuse=0.7)


def test_codes_broadcast_sequences() -> None:
    code = light_code(CONFIG, ambient=[0.1, 0.2, 0.3], direction=(0.0, 0.0, 1.0))
    assert code.shape == (3, 4)
    torch.testing.assert_close(code[:, 1], torch.zeros(3))
    sweep = pose_code(CONFIG, yaw=torch.linspace(-30, 30, 5), pitch=10.0)
    assert sweep.shape == (5, 6)
    torch.testing.assert_close(sweep[:, 0], torch.full((5,), 10 / 60))
    with pytest.raises(ValueError, match="common length"):
        pose_code(CONFIG, yaw=[1.0, 2.0], pitch=[1.0, 2.0, 3.0])


@pytest.mark.parametrize(("yaw", "pitch", "roll"), [(0.0, 0.0, 0.0), (30.0, -10.0, 5.0), (-45.0, 20.0, -8.0)])
def test_pose_code_gives_the_angles_in_degrees(yaw: float, pitch: float, roll: float) -> None:
    code = pose_code(CONFIG, yaw=yaw, pitch=pitch, roll=roll, shift_x=0.05, shift_y=-0.02)
    rot, trans = view_to_pose(code[None].double(), CONFIG.xyz_rotation_range, CONFIG.xy_translation_range,
                              CONFIG.z_translation_range)
    angles = [torch.tensor([math.radians(a)], dtype=torch.float64) for a in (pitch, yaw, roll)]
    torch.testing.assert_close(rot, rotation_matrix(*angles), atol=1e-6, rtol=0)
    torch.testing.assert_close(trans, torch.tensor([[0.05, -0.02, 0.0]], dtype=torch.float64), atol=1e-7, rtol=0)


def test_invalid_codes() -> None:
    with pytest.raises(ValueError, match="positive z"):
        light_code(CONFIG, direction=(0.0, 0.0, -1.0))
    with pytest.raises(ValueError, match="shape"):
        light_code(CONFIG, direction=(1.0, 1.0))
    with pytest.raises(ValueError, match="shift_z is fixed"):
        pose_code(CONFIG, shift_z=0.1)  # the released model has no z translation
    with pytest.raises(ValueError, match="finite"):
        pose_code(CONFIG, yaw=math.nan)
