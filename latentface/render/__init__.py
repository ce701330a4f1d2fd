"""Image formation: camera, pose, canonical depth, normals, shading, rasterizer and warping (u = j, v = i)."""

from latentface.render.camera import backproject, intrinsics, pixel_grid
from latentface.render.depth import canonical_depth
from latentface.render.raster import Fragments, interpolate, rasterize
from latentface.render.shading import light_direction, normals_from_depth, shade

__all__ = [
    "Fragments",
    "backproject",
    "canonical_depth",
    "interpolate",
    "intrinsics",
    "light_direction",
    "normals_from_depth",
    "pixel_grid",
    "rasterize",
    "shade",
]
