"""3D mesh export: the canonical (frontal) face of an image as a textured OBJ and a vertex-coloured PLY.

    python examples/export_mesh.py                             # bundled weights and a sample face
    python examples/export_mesh.py face.png --out mesh/

Encodes a face, decodes its canonical depth and albedo (`model.render(codes, view=None)`: the maps only, no
posed view) and writes them with `latentface.export`: `face.obj` with `face.mtl` and the albedo as the texture
`face.png` (`save_obj`), and `face.ply` with the albedo as vertex colours (`save_ply`). Every pixel is a vertex
and every pixel quad two triangles; files have y up and the face looking at the viewer (+z), so any mesh viewer
(MeshLab, Blender) shows it upright. Prints the vertex and face counts and the mesh's extent.

`synthfaces-tiny` is a small model trained on SynthFaces on a CPU: its depth is coarse (see its model card) and
it is not a model of real faces (`--weights unsup3d-celeba` for those, downloaded on first use).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from latentface import LatentFace
from latentface.export import mesh_arrays, save_obj, save_ply

SAMPLE = Path(__file__).parent / "faces" / "synthface-03-neutral.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", nargs="?", type=Path, default=SAMPLE, help="face image (default: a sample face)")
    parser.add_argument("--weights", default="synthfaces-tiny", help="bundled or registered name, folder or Hub id")
    parser.add_argument("--out", "--output", type=Path, default=Path("export_mesh-output"), help="output folder")
    args = parser.parse_args()

    print(f"loading weights {args.weights}", flush=True)
    model = LatentFace.from_pretrained(args.weights)
    print(f"encoding {args.image} and decoding its canonical depth and albedo", flush=True)
    with torch.inference_mode():
        maps = model.render(model.encode([args.image]), view=None)   # canonical albedo and depth of the face
    depth, albedo = maps.canonical_depth[0], maps.albedo[0]           # (S, S) and (3, S, S) in [0, 1]

    fov = model.config.fov                                            # the camera the depth is measured with
    obj = save_obj(args.out / "face.obj", depth, fov, texture=albedo)  # + face.mtl and face.png beside it
    ply = save_ply(args.out / "face.ply", depth, fov, colors=albedo)

    verts, faces = mesh_arrays(depth, fov)                            # exactly what the files hold
    extent = verts.max(0) - verts.min(0)
    print(f"{args.image.name}: {len(verts)} vertices, {len(faces)} triangles "
          f"({depth.shape[0]} x {depth.shape[1]} depth map, depth {float(depth.min()):.3f}..{float(depth.max()):.3f})")
    print(f"mesh extent x {extent[0]:.4f}, y {extent[1]:.4f}, z {extent[2]:.4f} (camera units)")
    print(f"wrote {obj} (+ {obj.with_suffix('.mtl').name}, {obj.with_suffix('.png').name}) and {ply}")


if __name__ == "__main__":
    main()
