"""Image formation: camera, canonical depth, normals and shading (Unsup3D conventions, u = j, v = i)."""

from latentface.render.camera import backproject, intrinsics, pixel_grid
from latentface.render.depth import canonical_depth
from latentface.render.shading import light_direction, normals_from_depth, shade

__all__ = ["backproject", "canonical_depth", "intrinsics", "light_direction", "normals_from_depth", "pixel_grid", "shade"]
