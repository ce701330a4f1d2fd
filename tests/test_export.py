"""Tests of `latentface.export` (OBJ / PLY mesh export of depth maps)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from latentface.export import mesh_arrays, save_obj, save_ply
from latentface.render.mesh import depth_to_mesh
from latentface.render.pose import rotation_matrix, transform_points

H = W = 16
FOV = 10.0


def _bump() -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    r2 = (i - (H - 1) / 2) ** 2 + (j - (W - 1) / 2) ** 2
    return 1.0 - 0.1 * torch.exp(-r2 / 8.0)  # nose closer to the camera


def _texture() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, H, W, generator=g)


def _expected_verts(depth: torch.Tensor) -> np.ndarray:
    v = depth_to_mesh(depth[None], FOV)[0][0].double().numpy().copy()
    v[:, 1:] *= -1
    return v


def _no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("textured", [False, True])
def test_obj(tmp_path: Path, textured: bool) -> None:
    trimesh = pytest.importorskip("trimesh")
    depth = _bump()
    path = save_obj(tmp_path / "sub" / "face.obj", depth, FOV, _texture() if textured else None)
    folder = path.parent
    names = sorted(p.name for p in folder.iterdir())
    assert names == (["face.mtl", "face.obj", "face.png"] if textured else ["face.obj"])
    _no_temp_files(folder)

    mesh = trimesh.load(path, force="mesh", process=False)
    assert len(mesh.vertices) == H * W
    assert len(mesh.faces) == 2 * (H - 1) * (W - 1)
    np.testing.assert_allclose(mesh.vertices, _expected_verts(depth), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(mesh.faces, depth_to_mesh(depth[None], FOV)[1].numpy())
    assert mesh.face_normals[:, 2].mean() > 0.5  # towards the viewer at +z
    assert mesh.vertices[:, 2].max() < 0  # in front of a camera looking down -z
    # upright: image row 0 (top) has larger y than the last row
    assert mesh.vertices[:W, 1].mean() > mesh.vertices[-W:, 1].mean()

    uv = np.asarray(mesh.visual.uv)
    assert uv.shape == (H * W, 2)
    i, j = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    np.testing.assert_allclose(uv[:, 0], j.ravel() / (W - 1), atol=1e-7)
    np.testing.assert_allclose(uv[:, 1], 1 - i.ravel() / (H - 1), atol=1e-7)
    if textured:
        assert mesh.visual.kind == "texture"
        img = np.asarray(mesh.visual.material.image.convert("RGB"))
        expected = (_texture().permute(1, 2, 0).double() * 255).round().numpy().astype(np.uint8)
        np.testing.assert_array_equal(img, expected)


@pytest.mark.parametrize("colored", [False, True])
def test_ply(tmp_path: Path, colored: bool) -> None:
    trimesh = pytest.importorskip("trimesh")
    depth = _bump()
    colors = _texture()
    path = save_ply(tmp_path / "a" / "b" / "face.ply", depth, FOV, colors if colored else None)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    assert [p.name for p in path.parent.iterdir()] == ["face.ply"]

    mesh = trimesh.load(path, force="mesh", process=False)
    assert len(mesh.vertices) == H * W
    assert len(mesh.faces) == 2 * (H - 1) * (W - 1)
    np.testing.assert_allclose(mesh.vertices, _expected_verts(depth), rtol=1e-6, atol=1e-6)
    assert mesh.face_normals[:, 2].mean() > 0.5
    if colored:
        got = np.asarray(mesh.visual.vertex_colors)[:, :3]
        expected = (colors.permute(1, 2, 0).reshape(-1, 3).double() * 255).round().numpy().astype(np.uint8)
        np.testing.assert_array_equal(got, expected)


def test_overwrite_is_clean(tmp_path: Path) -> None:
    depth = _bump()
    for _ in range(2):
        save_obj(tmp_path / "m.obj", depth, FOV, _texture())
        save_ply(tmp_path / "m.ply", depth, FOV)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mtl", "m.obj", "m.ply", "m.png"]


@pytest.mark.parametrize("save", [save_obj, save_ply])
def test_errors(tmp_path: Path, save) -> None:
    depth = _bump()
    bad_depths = [depth[None], depth[:, :8], torch.ones(1, 1)]
    for bad in bad_depths:
        with pytest.raises(ValueError, match="depth"):
            save(tmp_path / "x", bad, FOV)
    nan = depth.clone()
    nan[3, 4] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        save(tmp_path / "x", nan, FOV)
    inf = depth.clone()
    inf[0, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        save(tmp_path / "x", inf, FOV)
    for bad_tex in [torch.rand(H, W), torch.rand(3, H, W + 1), torch.rand(4, H, W)]:
        with pytest.raises(ValueError, match=r"\(3, 16, 16\)"):
            save(tmp_path / "x", depth, FOV, bad_tex)
    with pytest.raises(ValueError):
        save(tmp_path / "new" / "x", nan, FOV)
    assert list(tmp_path.iterdir()) == []  # nothing written, no folder created


def test_posed_mesh(tmp_path: Path) -> None:
    depth = _bump()
    angle = torch.tensor([math.radians(20.0)])
    rot = rotation_matrix(torch.zeros(1), angle, torch.zeros(1))[0]
    trans = torch.tensor([0.02, -0.01, 0.0])
    verts, faces = mesh_arrays(depth, FOV, pose=(rot, trans), center_depth=1.0)
    cam = transform_points(depth_to_mesh(depth[None].double(), FOV)[0], rot[None].double(), trans[None].double(), 1.0)
    expected = cam[0].numpy().copy()
    expected[:, 1:] *= -1
    np.testing.assert_allclose(verts, expected, atol=1e-6)
    np.testing.assert_array_equal(faces, mesh_arrays(depth, FOV)[1])
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.load(save_ply(tmp_path / "posed.ply", depth, FOV, pose=(rot, trans)), process=False)
    np.testing.assert_allclose(mesh.vertices, expected, atol=1e-5)
    with pytest.raises(ValueError, match="pose"):
        mesh_arrays(depth, FOV, pose=(rot[None], trans))
