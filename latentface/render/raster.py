"""Hard z-buffer triangle rasterizer in pure PyTorch (CPU and CUDA, no custom kernels).

Conventions:

- **Screen space.** Vertices are already projected: vertex (x, y, z) sits at image coordinates (u, v) = (x, y)
  with depth z (positive, nearer = smaller). Pixel column j, row i is sampled at its centre (u, v) = (j, i),
  the convention of :mod:`latentface.render.camera`; pixel centres are at integer coordinates.
- **Depth interpolation.** Perspective-correct by default, as Neural Mesh Renderer (which Unsup3D renders its
  posed depth with) computes it: with the screen-space barycentric weights w of the pixel centre, the depth is
  ``z = 1 / (w0 / z0 + w1 / z1 + w2 / z2)``, the depth of the triangle's plane in 3D along the pixel's ray, and
  ``bary`` holds the perspective-correct weights ``w_k z / z_k`` (the weights of that 3D point, which PyTorch3D
  returns with ``perspective_correct=True``; ``zbuf = sum(bary * z)``). Perspective-correct rasterization needs
  the vertices in front of the camera: a face with a vertex at ``z <= 0`` is not drawn. With
  ``perspective_correct=False`` the weights stay the screen-space ones and z is interpolated linearly in screen
  space (deeper than the plane inside every non-constant-depth face; any finite z is drawn). There is no
  near/far clipping and no back-face culling (both windings are rasterized, as NMR with ``fill_back=True``).
- **Coverage.** A pixel centre strictly inside a triangle is covered. A centre exactly on an edge is resolved
  as if it were nudged by an infinitesimal (eps, eps**2): it belongs to the triangle lying on the +u side of
  the edge (+v side for edges parallel to the u axis). Edge functions are evaluated from the edge's endpoints
  in a canonical order (lowest v, then lowest u, first), so two triangles that share an edge (same endpoint
  coordinates) compute bit-identical values: a centre on a shared edge, or on a vertex inside a closed fan, is
  covered by exactly one of them. Adjacent triangles leave no holes and no double coverage. Degenerate
  (zero-area) triangles and triangles with non-finite coordinates never cover a pixel.
- **Visibility.** The covering face with the smallest interpolated z (perspective-correct or linear, as chosen)
  wins; equal z goes to the smallest face index. The choice is deterministic on every device.
- **Gradients.** The face choice is discrete and carries no gradient. ``bary`` and ``zbuf`` are then
  recomputed with differentiable torch ops from the winning face's vertex positions, so gradients flow to
  ``verts`` (not through the coverage edges: there is no soft rasterization).

Algorithm: every (batch, face) pair gets the integer pixel box that its triangle's bounding box covers. Boxes
are enumerated exactly (no padding to a bucket size) with prefix sums over the box areas: candidate ``k``
belongs to the pair found by ``repeat_interleave`` and to the pixel ``k - start`` in row-major order inside
the box, so sub-pixel triangles cost one or two candidates and a triangle covering the image costs H*W. The
candidates are processed in chunks of at most ``max_candidates``: edge functions test coverage, covered
candidates reduce their depth into a flat z-buffer with ``scatter_reduce(amin)``, and a second reduction picks
the smallest face index among those at the minimum depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Fragments", "interpolate", "rasterize"]


@dataclass
class Fragments:
    """Per-pixel output of :func:`rasterize` for images of B x H x W pixels.

    Attributes:
        face_index: (B, H, W) long, the index into ``faces`` of the visible face, -1 where no face covers.
        bary: (B, H, W, 3) barycentric weights of the visible face's three vertices at the pixel centre (summing
            to 1; perspective-correct unless rasterized with ``perspective_correct=False``, then screen-space
            affine), zeros where empty; differentiable w.r.t. the vertices.
        zbuf: (B, H, W) depth of the visible face at the pixel centre, ``sum(bary * z)``, the ``background``
            depth where empty; differentiable w.r.t. the vertices.
    """

    face_index: Tensor
    bary: Tensor
    zbuf: Tensor

    @property
    def mask(self) -> Tensor:
        """(B, H, W) bool, True where a face covers the pixel."""
        return self.face_index >= 0


def rasterize(
    verts: Tensor,
    faces: Tensor,
    height: int,
    width: int,
    *,
    background: float = math.inf,
    perspective_correct: bool = True,
    max_candidates: int = 2**24,
) -> Fragments:
    """Rasterize triangle meshes that are already in screen space with a hard z-buffer.

    Args:
        verts: (B, V, 3) floating vertices (u, v, z): pixel column and row coordinates and depth.
        faces: (F, 3) long vertex indices, shared by the batch. Either winding is rasterized.
        height: image height H in pixels (rows, v = 0 .. H-1).
        width: image width W in pixels (columns, u = 0 .. W-1).
        background: depth written to ``zbuf`` where no face covers the pixel.
        perspective_correct: depth ``1 / sum(w_k / z_k)`` and perspective-correct weights, as Neural Mesh
            Renderer (default); False interpolates z and the weights linearly in screen space.
        max_candidates: most (batch, face, pixel) candidates tested at once; bounds the working memory
            (roughly 200 bytes per candidate in float32). Covered candidates are not bounded by it.

    Returns:
        :class:`Fragments` with ``face_index`` (B, H, W), ``bary`` (B, H, W, 3) and ``zbuf`` (B, H, W), the
        last two in the dtype of ``verts``.

    Raises:
        ValueError: on malformed shapes, dtypes, sizes or face indices.
    """
    _check_inputs(verts, faces, height, width, max_candidates)
    with torch.no_grad():
        face_index = _visible_faces(verts.detach(), faces, height, width, perspective_correct, max_candidates)
    bary, zbuf = _face_fragments(verts, faces, face_index, background, perspective_correct)
    return Fragments(face_index=face_index, bary=bary, zbuf=zbuf)


def interpolate(attributes: Tensor, faces: Tensor, fragments: Fragments, background: float | Tensor = 0.0) -> Tensor:
    """Interpolate per-vertex attributes at every pixel with the fragments' barycentric weights.

    Args:
        attributes: (B, V, C) per-vertex attributes.
        faces: (F, 3) the faces given to :func:`rasterize`.
        fragments: the output of :func:`rasterize`.
        background: value of empty pixels, a float or a tensor broadcastable to (B, H, W, C).

    Returns:
        (B, H, W, C) interpolated attributes, differentiable w.r.t. ``attributes``, the vertices (through
        ``fragments.bary``) and a tensor ``background``.

    Raises:
        ValueError: if ``attributes`` is not (B, V, C) with the fragments' batch size.
    """
    b, h, w = fragments.face_index.shape
    if attributes.ndim != 3 or attributes.shape[0] != b:
        raise ValueError(f"attributes must be (B={b}, V, C), got {tuple(attributes.shape)}")
    c = attributes.shape[2]
    flat_face = fragments.face_index.reshape(-1)
    covered = (flat_face >= 0).nonzero().squeeze(1)
    vert_ids = faces.index_select(0, flat_face[covered]) + (covered // (h * w) * attributes.shape[1])[:, None]
    values = attributes.reshape(-1, c).index_select(0, vert_ids.reshape(-1)).view(-1, 3, c)
    weights = fragments.bary.reshape(-1, 3)[covered].to(attributes.dtype)
    mixed = torch.einsum("mk,mkc->mc", weights, values)
    out = attributes.new_zeros(b * h * w, c).index_copy(0, covered, mixed).view(b, h, w, c)
    background = torch.as_tensor(background, dtype=attributes.dtype, device=attributes.device)
    return torch.where(fragments.mask[..., None], out, background)


def _check_inputs(verts: Tensor, faces: Tensor, height: int, width: int, max_candidates: int) -> None:
    """Raise ValueError unless the arguments of :func:`rasterize` are well formed."""
    if verts.ndim != 3 or verts.shape[2] != 3 or not verts.is_floating_point():
        raise ValueError(f"verts must be a floating (B, V, 3) tensor, got {verts.dtype} {tuple(verts.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype != torch.long:
        raise ValueError(f"faces must be a long (F, 3) tensor, got {faces.dtype} {tuple(faces.shape)}")
    if faces.device != verts.device:
        raise ValueError(f"faces on {faces.device} but verts on {verts.device}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[1]):
        raise ValueError(
            f"face indices must lie in [0, {verts.shape[1]}), got [{int(faces.min())}, {int(faces.max())}]"
        )
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be positive, got {max_candidates}")


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """z component of the cross product of 2D vectors stored in the last dimension."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


@dataclass
class _Boxes:
    """Per (batch, face) pair, flat index b * F + f: what the candidate test needs.

    Attributes:
        start: (N,) long, index of the pair's first candidate (exclusive prefix sum of the box areas).
        end: (N,) long, one past its last candidate.
        box: (N, 3) long, box width, first column, first row.
        geometry: (19, N) per edge e (rows e, 3 + e, ...) the canonical anchor u (0..2) and v (3..5), the
            signed direction u (6..8) and v (9..11); the depth key of vertex 0 (12) and its steps to vertices 1
            and 2 (13, 14), the key being z, or -1/z when perspective-correct (both grow with depth and are
            affine in screen space); 1 / |twice the area| (15); 1.0 where a centre exactly on edge e counts as
            inside, else 0.0 (16..18).
    """

    start: Tensor
    end: Tensor
    box: Tensor
    geometry: Tensor


def _boxes(verts: Tensor, faces: Tensor, height: int, width: int, perspective_correct: bool) -> _Boxes:
    """Pixel boxes and edge data of every (batch, face) pair whose triangle may cover a pixel centre."""
    b = verts.shape[0]
    # (xyz, vertex, B*F), one contiguous row per coordinate and vertex.
    tri = verts.index_select(1, faces.reshape(-1)).view(b, -1, 3, 3).permute(3, 2, 0, 1).reshape(3, 3, -1)
    x, y = tri[0], tri[1]
    area2 = (x[1] - x[0]) * (y[2] - y[0]) - (y[1] - y[0]) * (x[2] - x[0])
    first_u, first_v = x.amin(0).ceil().clamp(0, width), y.amin(0).ceil().clamp(0, height)
    last_u, last_v = x.amax(0).floor().clamp(-1, width - 1), y.amax(0).floor().clamp(-1, height - 1)
    usable = tri.isfinite().all(0).all(0) & (area2 != 0)
    if perspective_correct:
        usable &= (tri[2] > 0).all(0)
    columns = torch.where(usable, (last_u - first_u + 1).clamp(min=0), 0)
    count = torch.where(usable, columns * (last_v - first_v + 1).clamp(min=0), 0).long()
    end = count.cumsum(0)
    x, y, z = tri
    key = -z.reciprocal() if perspective_correct else z

    # Edge e runs from vertex e+1 to vertex e+2 (opposite vertex e); its edge function over twice the area is
    # the barycentric weight of vertex e. Evaluate it relative to the canonical endpoint (lowest v, then u).
    tail_x, head_x = torch.stack([x[1], x[2], x[0]]), torch.stack([x[2], x[0], x[1]])
    tail_y, head_y = torch.stack([y[1], y[2], y[0]]), torch.stack([y[2], y[0], y[1]])
    swap = (tail_y > head_y) | ((tail_y == head_y) & (tail_x > head_x))
    anchor_x, anchor_y = torch.where(swap, head_x, tail_x), torch.where(swap, head_y, tail_y)
    # Signed so that the inside of the triangle is where the edge function is > 0. The two triangles sharing
    # an edge get opposite directions from the same anchor: their edge functions are exact negatives.
    sign = area2.sign()
    dir_x, dir_y = (head_x - tail_x) * sign, (head_y - tail_y) * sign
    # A centre on the edge is inside iff the nudged centre (+eps, +eps**2) is: sign of -dv, else of du.
    tie = torch.where(dir_y != 0, dir_y < 0, dir_x > 0).to(x.dtype)
    geometry = torch.cat(
        [anchor_x, anchor_y, dir_x, dir_y, key[:1], key[1:] - key[:1], area2.abs().reciprocal()[None], tie]
    )
    box = torch.where(usable[:, None], torch.stack([columns, first_u, first_v], dim=1), 0).long()
    return _Boxes(start=end - count, end=end, box=box, geometry=geometry)


def _covered_candidates(
    boxes: _Boxes, lo: int, hi: int, num_faces: int, height: int, width: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Test the candidates lo .. hi-1 and return the covered ones.

    Returns:
        flat pixel index b * H * W + i * W + j (long), face index (long) and interpolated depth key (z, or -1/z
        when perspective-correct: smaller is nearer), one entry per covered candidate.
    """
    first = int(torch.searchsorted(boxes.end, lo, right=True))
    last = int(torch.searchsorted(boxes.start, hi))
    seg_lo = boxes.start[first:last].clamp(min=lo)
    seg_hi = boxes.end[first:last].clamp(max=hi)
    ids = torch.arange(first, last, device=boxes.start.device)
    slot = torch.repeat_interleave(ids, seg_hi - seg_lo, output_size=hi - lo)
    k = torch.arange(lo, hi, device=slot.device) - boxes.start[slot]
    box = boxes.box.index_select(0, slot)
    row = k // box[:, 0]
    col = k - row * box[:, 0] + box[:, 1]
    row = row + box[:, 2]

    geo = boxes.geometry.index_select(1, slot)
    u, v = col.to(geo.dtype), row.to(geo.dtype)
    edge = geo[6:9] * (v - geo[3:6]) - geo[9:12] * (u - geo[0:3])  # (3, n)
    inside = ((edge > 0) | ((edge == 0) & (geo[16:19] > 0))).all(0)
    keep = inside.nonzero().squeeze(1)

    edge, geo = edge.index_select(1, keep), geo[12:16].index_select(1, keep)
    # key0 + w1 (key1 - key0) + w2 (key2 - key0): exact on constant-depth faces, so that equal depths tie
    # exactly. Written out elementwise (no reduction) so that recomputing a candidate reproduces it bit for bit.
    key = geo[0] + (edge[1] * geo[1] + edge[2] * geo[2]) * geo[3]
    pair = slot[keep]
    batch, face = pair // num_faces, pair % num_faces
    pixel = (batch * height + row[keep]) * width + col[keep]
    return pixel, face, key


def _visible_faces(
    verts: Tensor, faces: Tensor, height: int, width: int, perspective_correct: bool, max_candidates: int
) -> Tensor:
    """(B, H, W) long index of the nearest face covering each pixel centre, -1 where none does."""
    b, f = verts.shape[0], faces.shape[0]
    work = verts if verts.dtype in (torch.float32, torch.float64) else verts.float()
    nearest_key = torch.full((b * height * width,), math.inf, dtype=work.dtype, device=work.device)
    winner = torch.full((b * height * width,), f, dtype=torch.long, device=work.device)
    boxes = _boxes(work, faces, height, width, perspective_correct)
    total = int(boxes.end[-1]) if boxes.end.numel() else 0
    bounds = [(lo, min(lo + max_candidates, total)) for lo in range(0, total, max_candidates)]
    cached = None
    for lo, hi in bounds:
        pixel, face, key = _covered_candidates(boxes, lo, hi, f, height, width)
        nearest_key.scatter_reduce_(0, pixel, key, "amin")
        if len(bounds) == 1:
            cached = pixel, face, key
    for lo, hi in bounds:
        pixel, face, key = cached if cached is not None else _covered_candidates(boxes, lo, hi, f, height, width)
        nearest = key == nearest_key[pixel]
        winner.scatter_reduce_(0, pixel[nearest], face[nearest], "amin")
    return torch.where(winner == f, -1, winner).view(b, height, width)


def _face_fragments(
    verts: Tensor, faces: Tensor, face_index: Tensor, background: float, perspective_correct: bool
) -> tuple[Tensor, Tensor]:
    """Differentiable barycentric weights (B, H, W, 3) and depth (B, H, W) of the given visible faces."""
    b, h, w = face_index.shape
    flat_face = face_index.reshape(-1)
    covered = (flat_face >= 0).nonzero().squeeze(1)
    batch, rest = covered // (h * w), covered % (h * w)
    u = (rest % w).to(verts.dtype)
    v = (rest // w).to(verts.dtype)
    vert_ids = faces.index_select(0, flat_face[covered]) + (batch * verts.shape[1])[:, None]
    tri = verts.reshape(-1, 3).index_select(0, vert_ids.reshape(-1)).view(-1, 3, 3)  # (M, 3 vertices, xyz)
    p = torch.stack([u, v], dim=1)[:, None]  # (M, 1, 2)
    xy = tri[..., :2]
    tail, head = xy.roll(-1, dims=1), xy.roll(1, dims=1)
    area2 = _cross(xy[:, 1] - xy[:, 0], xy[:, 2] - xy[:, 0])
    bary = _cross(head - tail, p - tail) / area2[:, None]
    depth = tri[..., 2]
    # Written as in _covered_candidates, so that a constant-depth face gives its depth exactly.
    if perspective_correct:
        inverse = depth.reciprocal()
        step = bary[:, 1] * (inverse[:, 1] - inverse[:, 0]) + bary[:, 2] * (inverse[:, 2] - inverse[:, 0])
        z = depth[:, 0] / (1 + depth[:, 0] * step)
        bary = bary * inverse * z[:, None]  # the weights of the 3D point: w_k z / z_k
    else:
        z = depth[:, 0] + bary[:, 1] * (depth[:, 1] - depth[:, 0]) + bary[:, 2] * (depth[:, 2] - depth[:, 0])
    bary_map = verts.new_zeros(b * h * w, 3).index_copy(0, covered, bary).view(b, h, w, 3)
    zbuf = verts.new_full((b * h * w,), background).index_copy(0, covered, z).view(b, h, w)
    return bary_map, zbuf
