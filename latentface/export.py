"""Export depth maps as triangle meshes: Wavefront OBJ (with optional texture) and binary PLY.

Each pixel (i, j) of an H x W depth map becomes vertex ``i * W + j`` (see `latentface.render.mesh`), placed by
`latentface.render.mesh.depth_to_mesh` in camera space, where x points right, y down and z forward (away from
the camera). On write, the y and z coordinates are negated, i.e. a file vertex is ``(x, -y, -z)``: standard
viewers (y up, camera looking down -z) then show the face upright and facing the viewer.

That flip is a rotation by 180 degrees about the x axis, so it keeps the triangle winding of `grid_faces`;
as the grid's triangles face the camera in camera space (normal towards -z), in the file their normals point
towards +z, i.e. towards the viewer. Faces are written as they are.

Every file is written atomically (temporary file in the same folder, then ``os.replace``); parent folders are
created as needed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from latentface.fileio import write_atomic
from latentface.render.mesh import depth_to_mesh
from latentface.render.pose import transform_points

__all__ = ["mesh_arrays", "save_obj", "save_ply"]


def _check_depth(depth: Tensor) -> Tensor:
    if not isinstance(depth, Tensor) or depth.ndim != 2:
        raise ValueError(f"depth must be an (H, W) tensor, got {getattr(depth, 'shape', type(depth))}")
    h, w = depth.shape
    if h < 2 or w < 2:
        raise ValueError(f"depth must be at least 2 x 2 to form a mesh, got {h} x {w}")
    if h != w:
        raise ValueError(f"depth must be square (the camera assumes square images), got {h} x {w}")
    if not torch.isfinite(depth).all():
        raise ValueError("depth contains non-finite values (NaN or inf)")
    return depth.detach().to("cpu", torch.float64)


def _check_image(image: Tensor, h: int, w: int, name: str) -> np.ndarray:
    """(3, H, W) values in [0, 1] -> (H, W, 3) uint8."""
    if not isinstance(image, Tensor) or tuple(image.shape) != (3, h, w):
        raise ValueError(f"{name} must be a (3, {h}, {w}) tensor, got {getattr(image, 'shape', type(image))}")
    if not torch.isfinite(image).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    img = image.detach().to("cpu", torch.float64).clamp(0, 1).permute(1, 2, 0)
    return (img * 255).round().to(torch.uint8).numpy()


Pose = tuple[Tensor, Tensor]
"""A rigid pose ``(R (3, 3), T (3,))`` as `latentface.render.pose.view_to_pose` gives (one item of its batch)."""


def _check_pose(pose: Pose) -> tuple[Tensor, Tensor]:
    rot, trans = pose
    if not (isinstance(rot, Tensor) and isinstance(trans, Tensor) and rot.shape == (3, 3) and trans.shape == (3,)):
        raise ValueError(f"pose must be (R (3, 3), T (3,)) tensors, got shapes "
                         f"{getattr(rot, 'shape', type(rot))} and {getattr(trans, 'shape', type(trans))}")
    return rot.detach().to("cpu", torch.float64), trans.detach().to("cpu", torch.float64)


def mesh_arrays(depth: Tensor, fov: float, pose: Pose | None = None, center_depth: float = 1.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces as written to files.

    Args:
        depth: (H, W) depth map of a square image.
        fov: field of view in degrees.
        pose: optional pose applied to the mesh (`latentface.render.pose.transform_points`), e.g. the input view's
            ``view_to_pose(codes.pose[i:i+1], ...)`` squeezed; default: the mesh as the depth map places it.
        center_depth: depth of the pose's rotation centre (the config's ``rotation_center_depth``).

    Returns:
        verts (H*W, 3) float64 in viewer coordinates ``(x, -y, -z)`` of camera space, and faces
        (2 (H-1) (W-1), 3) int64, 0-based.
    """
    d = _check_depth(depth)
    verts, faces = depth_to_mesh(d[None], fov)
    if pose is not None:
        rot, trans = _check_pose(pose)
        verts = transform_points(verts, rot[None], trans[None], center_depth)
    v = verts[0].numpy().copy()
    v[:, 1:] *= -1
    return v, faces.numpy()


def save_obj(path: str | os.PathLike, depth: Tensor, fov: float, texture: Tensor | None = None, *,
             pose: Pose | None = None, center_depth: float = 1.0, texture_name: str | None = None) -> Path:
    """Write the mesh of a depth map as a Wavefront OBJ.

    Vertices are camera-space points with y and z negated (``(x, -y, -z)``), so viewers with y up and the
    camera looking down -z show the face upright and facing them; faces are 1-based and their normals point
    towards the viewer (+z). Every vertex gets a texture coordinate ``u = j / (W-1)``, ``v = 1 - i / (H-1)``.
    With a texture, ``<stem>.mtl`` (material with ``map_Kd``) and the texture PNG (``<stem>.png`` unless
    `texture_name` says otherwise) are written beside the OBJ.

    Args:
        path: output ``.obj`` path; parent folders are created.
        depth: (H, W) depth map of a square image, finite.
        fov: field of view in degrees.
        texture: optional (3, H, W) image in [0, 1] (e.g. ``Rendering.albedo[b]``), values clamped.
        pose, center_depth: optional pose of the mesh, as in `mesh_arrays`.
        texture_name: file name of the texture PNG, written beside the OBJ (default ``<stem>.png``).

    Returns:
        The OBJ path.

    Raises:
        ValueError: on wrong shapes or non-finite values.
    """
    verts, faces = mesh_arrays(depth, fov, pose, center_depth)
    h, w = depth.shape
    tex = _check_image(texture, h, w, "texture") if texture is not None else None
    path = Path(path)
    png_name = f"{path.stem}.png" if texture_name is None else texture_name
    if Path(png_name).name != png_name or Path(png_name).suffix.lower() != ".png":
        raise ValueError(f"texture_name must be a plain file name ending in .png, got {texture_name!r}")

    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    uv = np.stack([j.ravel() / (w - 1), 1.0 - i.ravel() / (h - 1)], axis=1)

    lines = ["# latentface depth mesh: x right, y up, viewer looking down -z"]
    if tex is not None:
        mtl_name = f"{path.stem}.mtl"
        lines += [f"mtllib {mtl_name}"]
    lines += [f"v {x:.8g} {y:.8g} {z:.8g}" for x, y, z in verts]
    lines += [f"vt {u:.8g} {v:.8g}" for u, v in uv]
    if tex is not None:
        lines += ["usemtl material0"]
    f1 = faces + 1
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in f1]
    obj = ("\n".join(lines) + "\n").encode("utf-8")

    if tex is not None:
        buf = io.BytesIO()
        Image.fromarray(tex).save(buf, format="PNG")
        mtl = (
            f"newmtl material0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nillum 1\nmap_Kd {png_name}\n"
        ).encode()
        write_atomic(path.with_name(png_name), buf.getvalue())
        write_atomic(path.with_name(mtl_name), mtl)
    write_atomic(path, obj)
    return path


def save_ply(path: str | os.PathLike, depth: Tensor, fov: float, colors: Tensor | None = None, *,
             pose: Pose | None = None, center_depth: float = 1.0) -> Path:
    """Write the mesh of a depth map as a binary little-endian PLY.

    Vertices (float32) use the same axes as `save_obj` (``(x, -y, -z)`` of camera space); faces are int32
    index lists (uchar count), normals towards the viewer (+z).

    Args:
        path: output ``.ply`` path; parent folders are created.
        depth: (H, W) depth map of a square image, finite.
        fov: field of view in degrees.
        colors: optional (3, H, W) per-pixel colours in [0, 1], stored as uchar RGB per vertex
            (``round(255 * c)``, values clamped).
        pose, center_depth: optional pose of the mesh, as in `mesh_arrays`.

    Returns:
        The PLY path.

    Raises:
        ValueError: on wrong shapes or non-finite values.
    """
    verts, faces = mesh_arrays(depth, fov, pose, center_depth)
    h, w = depth.shape
    rgb = _check_image(colors, h, w, "colors").reshape(-1, 3) if colors is not None else None
    path = Path(path)

    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(verts)}"]
    header += ["property float x", "property float y", "property float z"]
    vfields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if rgb is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        vfields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]

    vdata = np.empty(len(verts), dtype=vfields)
    vdata["x"], vdata["y"], vdata["z"] = verts[:, 0], verts[:, 1], verts[:, 2]
    if rgb is not None:
        vdata["red"], vdata["green"], vdata["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    fdata = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    fdata["n"] = 3
    fdata["idx"] = faces

    data = ("\n".join(header) + "\n").encode("ascii") + vdata.tobytes() + fdata.tobytes()
    write_atomic(path, data)
    return path
