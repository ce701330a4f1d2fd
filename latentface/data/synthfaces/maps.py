"""Canonical depth and albedo of SynthFaces: a procedural face on the pixel grid, from identity and actions.

Everything is a closed-form function of the normalised canonical coordinates ``x = (j - c) / c`` (right) and
``y = (i - c) / c`` (down), ``c = (S - 1) / 2``, so a face looks the same at every image size. The face is drawn
on the right half (x > 0) and mirrored, which makes the canonical maps exactly symmetric and halves the work;
only an identity flagged ``asymmetric`` then gets a one-sided mole and non-mirrored blotches on its bare skin.
Heights are in depth units (nearer = higher); the depth is ``background_depth - height``.

Layers:

- identity only: head (an ellipsoid with a tapered jaw), ears, neck, forehead, brow ridge, eye sockets and eyeballs,
  nose (bridge, tip, alae, nostrils), cheekbones, chin; skin tone, blotches, freckles, blush, under-eye shadow;
  hair (bald, short, medium, long) and background;
- expression: lips and mouth opening (teeth, interior), cheek raise, nasolabial folds, eyelids, irises and
  lashes, eyebrows, forehead, glabella and nose wrinkles. Every expression layer is multiplied by the
  identity's *expression region* (compact windows around mouth, eyes and brows, nose, cheeks and forehead), so
  outside it the maps depend on the identity alone; with all actions zero the layers draw the neutral face.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from latentface.data.synthfaces.factors import ACTIONS, Identity

SKIN = torch.tensor([[0.97, 0.84, 0.75], [0.90, 0.70, 0.58], [0.74, 0.52, 0.38], [0.52, 0.35, 0.24],
                     [0.34, 0.22, 0.15]])
"""Skin tones from light to dark; ``skin_tone`` interpolates linearly between them."""
HAIR = torch.tensor([[0.07, 0.06, 0.05], [0.22, 0.14, 0.08], [0.42, 0.28, 0.16], [0.78, 0.64, 0.40],
                     [0.58, 0.24, 0.10], [0.62, 0.62, 0.62]])
"""Hair colours (black, dark brown, brown, blond, red, grey), indexed by ``hair_colour``."""
IRIS = torch.tensor([[0.22, 0.13, 0.07], [0.38, 0.24, 0.12], [0.42, 0.38, 0.20], [0.28, 0.42, 0.28],
                     [0.28, 0.42, 0.62], [0.45, 0.50, 0.55]])
"""Iris colours, indexed by ``iris_colour``."""
SCLERA = (0.92, 0.9, 0.87)
LASH = (0.08, 0.06, 0.05)
MOUTH = (0.25, 0.07, 0.07)
TEETH = (0.92, 0.9, 0.82)


@dataclass
class CanonicalFace:
    """Canonical (frontal) maps of B faces of size S.

    Attributes:
        depth: (B, S, S) depth, background at the background depth, nearer = smaller.
        albedo: (B, 3, S, S) albedo in [0, 1].
        face_mask: (B, S, S) head coverage in [0, 1] (the head ellipsoid, hair on it included; not the neck,
            the long hair beside it or the background).
        foreground: (B, S, S) coverage of everything but the background (head, neck, hair) in [0, 1].
        expression_region: (B, S, S) bool, where expressions may change depth or albedo.
    """

    depth: Tensor
    albedo: Tensor
    face_mask: Tensor
    foreground: Tensor
    expression_region: Tensor


def _grid(size: int, columns: int | None = None) -> tuple[Tensor, Tensor]:
    """Normalised coordinates x (right) and y (down) in [-1, 1], each (1, S, columns): the last `columns`
    columns of the image (all by default)."""
    c = (size - 1) / 2
    t = (torch.arange(size, dtype=torch.float32) - c) / c
    columns = size if columns is None else columns
    return t[None, None, size - columns:].expand(1, size, columns), t[None, :, None].expand(1, size, columns)


def _mirror(half: Tensor) -> Tensor:
    """The full map from its right half (last dimension)."""
    return torch.cat([half.flip(-1), half], dim=-1)


def _bump(dx: Tensor, dy: Tensor, rx: Tensor | float, ry: Tensor | float) -> Tensor:
    """Smooth compact bump ``(1 - r^2)^2`` on the ellipse of radii (rx, ry), 0 outside."""
    return (1 - (dx / rx) ** 2 - (dy / ry) ** 2).clamp(min=0) ** 2


def _window(dx: Tensor, dy: Tensor, rx: Tensor | float, ry: Tensor | float) -> Tensor:
    """1 inside the ellipse of radii (rx, ry) except a smooth rim, 0 outside."""
    t = ((1 - (dx / rx) ** 2 - (dy / ry) ** 2) / 0.3).clamp(0, 1)
    return t * t * (3 - 2 * t)


def _cover(v: Tensor, lo: Tensor | float, hi: Tensor | float, pixel: float) -> Tensor:
    """Fraction of the pixel [v - pixel/2, v + pixel/2] inside [lo, hi] (box-filtered interval, 0 if empty)."""
    lo = torch.as_tensor(lo)
    hi = torch.as_tensor(hi)
    return ((torch.minimum(hi, v + pixel / 2) - torch.maximum(lo, v - pixel / 2)) / pixel).clamp(0, 1)


def _inside(signed: Tensor, pixel: float) -> Tensor:
    """Coverage of a region given a signed distance (positive inside) in normalised units."""
    return (signed / pixel + 0.5).clamp(0, 1)


def _bulge(v: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Parabolic profile ``4 q (1 - q)`` across [lo, hi] (q the relative position), 0 outside."""
    q = (v - lo) / (hi - lo + 1e-4)
    return (4 * q * (1 - q)).clamp(min=0)


def _over(base: Tensor, colour: Tensor | tuple[float, float, float], alpha: Tensor) -> Tensor:
    """Composite `colour` ((B, 3, 1, 1), (B, 3, S, S) or an RGB triple) over `base` (B, 3, S, S)."""
    colour = torch.as_tensor(colour, dtype=base.dtype)
    if colour.ndim == 1:
        colour = colour[None, :, None, None]
    return base + alpha[:, None] * (colour - base)


def _rgb(palette: Tensor, index: Tensor) -> Tensor:
    """Palette colours (B, 3, 1, 1) of (B, 1, 1) float indices."""
    return palette[index.flatten().long()][:, :, None, None]


def _skin_colour(tone: Tensor) -> Tensor:
    """(B, 3, 1, 1) colour interpolated along `SKIN` by tones (B, 1, 1) in [0, 1]."""
    pos = tone.flatten() * (len(SKIN) - 1)
    lower = pos.floor().long().clamp(max=len(SKIN) - 2)
    frac = (pos - lower)[:, None]
    return ((1 - frac) * SKIN[lower] + frac * SKIN[lower + 1])[:, :, None, None]


def _sample(texture: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Bilinear texture (B, C, h, w) values at normalised points (B, S, S) spanning it: (B, C, S, S)."""
    x, y = torch.broadcast_tensors(x, y)
    grid = torch.stack([x, y], dim=-1).expand(len(texture), *x.shape[1:], 2)
    return F.grid_sample(texture, grid, mode="bilinear", padding_mode="border", align_corners=True)


def backdrop(identity: Identity, size: int, columns: int | None = None) -> Tensor:
    """The identity's background (B, 3, S, columns): its colour with a vertical gradient (screen or canonical
    frame)."""
    p = identity.named()
    _, y = _grid(size, columns)
    colour = torch.stack([p["background_r"], p["background_g"], p["background_b"]], dim=1)
    return colour * (1 + p["background_gradient"][:, None] * y[:, None])


def canonical_face(identity: Identity, actions: Tensor, size: int, background_depth: float) -> CanonicalFace:
    """Draw B faces in the canonical frame.

    Args:
        identity: identity factors of the B faces.
        actions: (B, len(ACTIONS)) expression actions in [0, 1] (zeros: neutral).
        size: image size S.
        background_depth: depth of the background plane (the far end of the depth range).

    Returns:
        `CanonicalFace` with depth, albedo, head mask and expression region.
    """
    p = identity.named()
    a = {name: col[:, None, None] for name, col in zip(ACTIONS, actions.float().unbind(1), strict=True)}
    u, y = _grid(size, size // 2)  # the right half: u = x > 0
    px = 2 / (size - 1)

    # Head (tapered ellipsoid) and neck.
    cy, head_h, relief = p["head_center_y"], p["head_height"], p["head_relief"]
    dy_head = (y - cy) / head_h
    half_w = p["head_width"] * (1 - p["jaw_taper"] * dy_head.clamp(0, 1) ** 2)
    r2_head = (u / half_w) ** 2 + dy_head ** 2
    head = (1 - r2_head).clamp(min=0).sqrt()
    head_alpha = _inside((1 - r2_head.sqrt()) * half_w, px)
    neck_profile = (1 - (u / p["neck_width"]) ** 2).clamp(min=0).sqrt() * (y > cy)
    neck_alpha = _inside(p["neck_width"] - u, px) * (y > cy)
    ear_rx, ear_ry = 0.07 * p["ear_size"], 0.15 * p["ear_size"]
    ear_u, ear_y = 0.97 * p["head_width"], p["eye_y"] + 0.5 * p["nose_length"]
    r2_ear = ((u - ear_u) / ear_rx) ** 2 + ((y - ear_y) / ear_ry) ** 2
    ear_alpha = _inside((1 - r2_ear.sqrt()) * ear_rx, px)
    height = relief * torch.maximum(torch.maximum(head, 0.6 * neck_profile), 0.3 * (1 - r2_ear).clamp(min=0).sqrt())

    # Identity-only facial relief.
    ex, ey, es = p["eye_x"], p["eye_y"], p["eye_size"]
    tip_y = ey + p["nose_length"]
    mouth_y = tip_y + p["mouth_gap"]
    chin_y = cy + head_h
    top = ey - 0.04
    t_nose = (y - top) / (tip_y - top)
    along = (p["nose_bridge"] + (1 - p["nose_bridge"]) * t_nose.clamp(0, 1) ** 1.5)
    along = along * (t_nose / 0.3).clamp(0, 1) * torch.exp(-((y - tip_y).clamp(min=0) / 0.045) ** 2)
    nose_half = 0.045 + 0.5 * p["nose_width"] * t_nose.clamp(0, 1)
    nose = p["nose_height"] * (
        along * (1 - (u / nose_half) ** 2).clamp(min=0) ** 2
        + 0.25 * _bump(u, y - (tip_y - 0.03), 0.07, 0.07)
        + 0.4 * _bump(u - 0.75 * p["nose_width"], y - (tip_y + 0.005), 0.06, 0.05)
    )
    relief_static = (
        p["forehead"] * _bump(u, y - (ey - 0.5), 0.5, 0.32)
        + p["brow_ridge"] * _bump(u - ex, y - (ey - 0.13), 0.22, 0.08)
        - p["eye_depth"] * _bump(u - ex, y - ey, 1.5 * es, 1.1 * es)
        + 0.6 * p["eye_depth"] * _bump(u - ex, y - ey, 0.95 * es, 0.6 * es)
        + p["cheekbones"] * _bump(u - p["cheek_x"], y - (ey + 0.3), 0.24, 0.2)
        + p["chin"] * _bump(u, y - (chin_y - 0.14), 0.2, 0.12)
        + 0.004 * _bump(u, y - (tip_y + mouth_y) / 2, p["mouth_width"], 0.12)
        + nose
    )

    # Expression region: union of compact windows.
    region = torch.stack([
        _window(u, y - (mouth_y + 0.04), p["mouth_width"] + 0.2, 0.27),
        _window(u - ex, y - (ey - 0.1), es + 0.15, 0.3),
        _window(u, y - (ey + tip_y) / 2 + 0.03, p["nose_width"] + 0.06, (tip_y - ey) / 2 + 0.12),
        _window(u - p["cheek_x"], y - (ey + 0.27), 0.2, 0.2),
        _window(u, y - (ey - 0.45), 0.42, 0.14),
    ]).amax(0)

    # Mouth: lips meet along a curved line; the opening widens in the middle and closes at the corners.
    mouth_w = p["mouth_width"] * (1 + 0.22 * a["smile"] - 0.12 * a["lip_press"] + 0.1 * a["lip_corner_down"])
    s = u / mouth_w
    inside = (1 - s * s).clamp(min=0)
    prof = inside.sqrt()
    line = mouth_y - (0.07 * a["smile"] - 0.05 * a["lip_corner_down"]) * s * s
    upper_top = line - (p["lip_thickness"] * (1 - 0.55 * a["lip_press"]) + 0.025 * a["nose_wrinkle"]) * prof
    gap = 0.15 * a["mouth_open"] * inside
    lower_top = line + gap
    lower_bottom = lower_top + 1.2 * p["lip_thickness"] * (1 - 0.5 * a["lip_press"]) * prof
    lips_alpha = _cover(y, upper_top, line, px) + _cover(y, lower_top, lower_bottom, px)
    interior_alpha = _cover(y, line, lower_top, px)
    teeth_alpha = _cover(y, line, line + torch.minimum(gap, torch.full_like(gap, 0.04)), px) * (s < 0.7)
    lips_relief = p["lip_fullness"] * prof * (_bulge(y, upper_top, line) + _bulge(y, lower_top, lower_bottom))
    interior_relief = -0.1 * gap * _bulge(y, line, lower_top)

    # Cheek raise and nasolabial folds (segment from beside the nose to the mouth corner).
    fold_strength = 0.6 * a["smile"] + 0.3 * a["nose_wrinkle"] + 0.2 * a["lip_corner_down"]
    start_u, start_y = 0.75 * p["nose_width"] + 0.05, tip_y
    end_u, end_y = 1.05 * mouth_w, mouth_y - 0.07 * a["smile"] + 0.05 * a["lip_corner_down"]
    seg_u, seg_y = end_u - start_u, end_y - start_y
    t_fold = (((u - start_u) * seg_u + (y - start_y) * seg_y) / (seg_u ** 2 + seg_y ** 2)).clamp(0, 1)
    fold_dist2 = (u - start_u - t_fold * seg_u) ** 2 + (y - start_y - t_fold * seg_y) ** 2
    fold = fold_strength * torch.exp(-fold_dist2 / 0.02 ** 2)
    relief_expression = (
        lips_relief + interior_relief - 0.004 * fold
        + 0.006 * a["smile"] * _bump(u - p["cheek_x"], y - (ey + 0.22), 0.17, 0.13)
    )

    head_weight = (head / 0.3).clamp(0, 1)
    height = height + head_weight * (relief_static + region * relief_expression)

    # Skin albedo (identity only).
    skin = _skin_colour(p["skin_tone"]) + p["skin_redness"][:, None] * torch.tensor([1.0, -0.3, -0.6])[:, None, None]
    albedo = skin * (1 + p["blotchiness"][:, None] * _blotches(identity, u, y))
    freckled = ((p["freckles"] - 0.6) / 0.4).clamp(0, 1)
    spots = ((_sample(identity.freckle, u, y)[:, 0] - 0.72) / 0.12).clamp(0, 1)
    freckle_alpha = 0.5 * freckled * spots * _bump(u - 0.2, y - (ey + 0.2), 0.38, 0.22)
    albedo = _over(albedo, skin * torch.tensor([0.72, 0.55, 0.45])[:, None, None], freckle_alpha)
    albedo = albedo + (p["blush"] * _bump(u - p["cheek_x"], y - (ey + 0.32), 0.2, 0.15))[:, None] * torch.tensor(
        [1.0, -0.3, -0.3])[:, None, None]
    albedo = albedo * (1 - 0.08 * _bump(u - ex, y - (ey + 0.05), 1.4 * es, 0.9 * es))[:, None]
    nostrils = 0.8 * _bump(u - 0.45 * p["nose_width"], y - (tip_y + 0.035), 0.035, 0.018).sqrt()
    albedo = _over(albedo, skin * 0.35, nostrils)

    # Expression layers of the albedo, confined to the region.
    lip_colour = skin * torch.tensor([0.85, 0.55, 0.55])[:, None, None] * (1 - p["lip_redness"][:, None]) + (
        p["lip_redness"][:, None] * torch.tensor([0.72, 0.26, 0.27])[:, None, None])
    albedo = _over(albedo, lip_colour, region * lips_alpha.clamp(max=1))
    albedo = _over(albedo, MOUTH, region * interior_alpha)
    albedo = _over(albedo, TEETH, region * 0.9 * teeth_alpha)
    albedo = albedo * (1 - 0.15 * region * fold)[:, None]

    # Eyes: almond opening between the lids, iris, pupil, lashes along the upper lid.
    se = (u - ex) / es
    lid = (1 - se * se).clamp(min=0) ** 0.6
    open_upper = p["eye_open"] * es * (1 - a["eye_closure"]) * (1 + 0.6 * a["eye_widen"])
    open_lower = 0.65 * p["eye_open"] * es * (1 - a["eye_closure"]) * (1 - 0.4 * a["smile"]) * (
        1 + 0.3 * a["eye_widen"])
    lid_top, lid_bottom = ey - open_upper * lid, ey + open_lower * lid
    opening = _cover(y, lid_top, lid_bottom, px)
    eye_dist = ((u - ex) ** 2 + (y - ey) ** 2).sqrt()
    iris = opening * _inside(0.42 * es - eye_dist, px)
    pupil = opening * _inside(0.17 * es - eye_dist, px)
    lashes = 0.85 * _cover(y, lid_top - 0.022, lid_top + 0.006, px) * _inside(1.1 - se.abs(), px / es)
    albedo = _over(albedo, SCLERA, region * opening)
    albedo = _over(albedo, _rgb(IRIS, p["iris_colour"]), region * iris)
    albedo = _over(albedo, LASH, region * (pupil + lashes).clamp(max=1))

    # Eyebrows: arched bands moving up (raise) or down and inwards (lower).
    hair_colour = _rgb(HAIR, p["hair_colour"]) * p["hair_lightness"][:, None]
    brow_u = (u - (ex + 0.01 - 0.025 * a["brow_lower"])) / p["brow_length"]
    brow_y = (ey - p["brow_gap"] - 0.07 * a["brow_raise"] + 0.035 * a["brow_lower"]
              - p["brow_arch"] * (1 - brow_u ** 2).clamp(min=0) + 0.05 * a["brow_lower"] * (-brow_u).clamp(0, 1))
    brow_half = 0.5 * p["brow_thickness"] * (1 - 0.4 * brow_u.clamp(0, 1))
    brows = 0.9 * _cover(y, brow_y - brow_half, brow_y + brow_half, px) * _cover(
        brow_u, -1.0, 1.0, px / p["brow_length"])
    albedo = _over(albedo, hair_colour * 0.8, region * brows)

    # Wrinkles: forehead (brow raise), glabella (brow lower), nose bridge (nose wrinkle).
    forehead_lines = (0.5 + 0.5 * torch.cos(2 * torch.pi * (y - (ey - 0.45)) / 0.07)) ** 6
    glabella_lines = torch.exp(-((u - 0.035) / 0.012) ** 2)
    nose_lines = (0.5 + 0.5 * torch.cos(2 * torch.pi * (y - ey) / 0.035)) ** 4
    wrinkles = (
        0.15 * a["brow_raise"] * forehead_lines * _bump(u, y - (ey - 0.45), 0.36, 0.11)
        + 0.2 * a["brow_lower"] * glabella_lines * _bump(u, y - (ey - 0.1), 0.08, 0.07)
        + 0.2 * a["nose_wrinkle"] * nose_lines * _bump(u, y - (ey + 0.06), 0.09, 0.06)
    )
    albedo = albedo * (1 - region * wrinkles)[:, None]

    # Neck in shadow, ears, background, hair.
    neck_only = neck_alpha * (1 - head_alpha)
    albedo = albedo * (1 - 0.15 * neck_only)[:, None]
    ear_only = ear_alpha * (1 - head_alpha)
    concha = _bump(u - ear_u - 0.01, y - ear_y, 0.5 * ear_rx, 0.6 * ear_ry)
    ear_colour = (skin + 0.04 * torch.tensor([1.0, -0.5, -0.5])[:, None, None]) * (1 - 0.3 * concha[:, None])
    albedo = _over(albedo, ear_colour, ear_only)
    body_alpha = torch.maximum(torch.maximum(head_alpha, neck_alpha), ear_alpha)
    albedo = _over(backdrop(identity, size, size // 2), albedo, body_alpha)

    style = p["hair_style"]
    volume = p["hair_volume"] * torch.where(style >= 2, 1.0, 0.3)
    hair_half_w = p["head_width"] + volume
    hair_r2 = (u / hair_half_w) ** 2 + ((y - cy).clamp(max=0) / (head_h + volume)) ** 2
    hair_bottom = torch.where(style >= 3, torch.full_like(style, 2.0), torch.where(style >= 2, mouth_y, ey - 0.03))
    hairline = p["hairline"] + 0.3 * (u / p["head_width"]) ** 2
    face_opening = _inside(y - hairline, px) * _inside((1 - r2_head.sqrt()) * half_w - 0.04 * (style >= 2), px)
    hair_alpha = (style > 0) * _inside((1 - hair_r2.sqrt()) * hair_half_w, px) * _inside(hair_bottom - y, px)
    hair_alpha = hair_alpha * (1 - face_opening)
    strands = _sample(identity.hair, u / hair_half_w * 2 - 1, torch.zeros_like(y))
    albedo = _over(albedo, hair_colour * (0.8 + 0.4 * strands), hair_alpha)
    hair_height = relief * (1 - hair_r2).clamp(min=0).sqrt() * torch.where(y > cy, 0.45, 1.0) + 0.004
    height = height + hair_alpha * (torch.maximum(height, hair_height) - height)

    bare_skin = _mirror(body_alpha * (1 - hair_alpha))
    albedo = _asymmetric_details(identity, _mirror(albedo), bare_skin, skin)
    return CanonicalFace(
        depth=_mirror(background_depth - height),
        albedo=albedo.clamp(0, 1),
        face_mask=_mirror(head_alpha.expand_as(height)),
        foreground=_mirror(torch.maximum(body_alpha, hair_alpha)),
        expression_region=_mirror((region > 0).expand_as(height)),
    )


def _blotches(identity: Identity, x: Tensor, y: Tensor) -> Tensor:
    """Relative skin colour change (B, 3, ...) of the identity's blotch texture at (x, y)."""
    blotch = _sample(identity.blotch, x, y)
    return blotch[:, :1] + blotch[:, 1:] * torch.tensor([0.6, -0.3, -0.3])[:, None, None]


def _asymmetric_details(identity: Identity, albedo: Tensor, bare_skin: Tensor, skin: Tensor) -> Tensor:
    """Albedo with a mole and non-mirrored blotches on the bare skin of identities flagged ``asymmetric``."""
    p = identity.named()
    asym = p["asymmetric"]
    if not bool(asym.any()):
        return albedo
    size = albedo.shape[-1]
    x, y = _grid(size)
    skew = p["blotchiness"][:, None] * (_blotches(identity, x, y) - _blotches(identity, x.abs(), y))
    albedo = albedo * (1 + (asym * bare_skin)[:, None] * skew)
    mole = asym * bare_skin * _inside(0.025 - ((x - p["mole_x"]) ** 2 + (y - p["mole_y"]) ** 2).sqrt(), 2 / (size - 1))
    return _over(albedo, skin * 0.3, mole)
