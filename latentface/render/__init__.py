"""Image formation: camera, pose, canonical depth, normals, shading, rasterizer and warping (u = j, v = i)."""

from latentface.render.camera import backproject, intrinsics, pixel_grid
from latentface.render.codes import decode_light, light_code, light_direction, pose_code
from latentface.render.depth import canonical_depth
from latentface.render.formation import form_image
from latentface.render.raster import Fragments, interpolate, rasterize
from latentface.render.shading import normals_from_depth, shade

__all__ = [
    "Fragments",
    "backproject",
    "canonical_depth",
    "decode_light",
    "form_image",
    "interpolate",
    "intrinsics",
    "light_code",
    "light_direction",
    "normals_from_depth",
    "pixel_grid",
    "pose_code",
    "rasterize",
    "shade",
]
