"""SynthFaces: determinism, factor independence, symmetry, geometry, separability, splits, datasets, export, CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from latentface.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from latentface.data.synthfaces import (
    ACTIONS,
    EXPRESSIONS,
    HOLDABLE,
    IDENTITY_PARAMS,
    ITEM_KEYS,
    PROTOTYPES,
    SPLITS,
    Expression,
    Factors,
    Pose,
    SynthConfig,
    SynthFacesClips,
    SynthFacesFolder,
    SynthFacesImages,
    canonical_face,
    contact_sheet,
    expression_actions,
    generate,
    hold_factors,
    render_factors,
    sample_clip,
    sample_identities,
    sample_images,
)
from latentface.data.synthfaces.render import model_config
from latentface.render import backproject, intrinsics
from latentface.render.pose import inverse_transform_points, project, view_to_pose

ITEMS = [(0, 0), (1, 3), (2, 1), (3, 0)]
CONFIG = SynthConfig()


def _all_classes(identity_index: int = 0, split: str = "train", config: SynthConfig = CONFIG) -> Factors:
    """One identity with every expression class at intensity 1, frontal, under a fixed light."""
    factors = sample_images(0, split, [(identity_index, k) for k in range(len(EXPRESSIONS))], config)
    label = torch.arange(len(EXPRESSIONS))
    intensity = torch.where(label == 0, 0.0, 1.0)
    actions = expression_actions(label, intensity, torch.zeros(len(label), len(ACTIONS)))
    zeros = torch.zeros(len(label))
    return dataclasses.replace(factors, expression=Expression(actions, label, intensity), pose=Pose(*[zeros] * 5))


def test_same_seed_same_bytes_and_independent_of_batch() -> None:
    first, second = generate(7, "train", ITEMS).as_dict(), generate(7, "train", ITEMS).as_dict()
    alone = generate(7, "train", [ITEMS[2]]).as_dict()
    assert list(first) == list(ITEM_KEYS)
    for key in ITEM_KEYS:
        assert first[key].numpy().tobytes() == second[key].numpy().tobytes(), key
        assert torch.equal(first[key][2], alone[key][0]), key


def test_different_seed_differs() -> None:
    a, b = generate(0, "train", ITEMS[:2]), generate(1, "train", ITEMS[:2])
    assert not torch.equal(a.image, b.image)
    assert not torch.equal(a.factors.identity.params, b.factors.identity.params)


def test_value_ranges_and_shapes_at_64_and_128() -> None:
    for size in (64, 128):
        batch = generate(0, "val", ITEMS[:2], SynthConfig(size=size))
        assert batch.image.shape == (2, 3, size, size) and batch.depth.shape == (2, size, size)
        assert batch.image.min() >= 0 and batch.image.max() <= 1
        assert batch.albedo.min() >= 0 and batch.albedo.max() <= 1
        model = model_config(size)
        assert batch.canonical_depth.min() >= model.min_depth and batch.canonical_depth.max() <= model.max_depth
        assert batch.face_mask.float().mean() > 0.15 and (batch.face_mask <= batch.mask).all()


def test_pose_and_light_within_configured_ranges() -> None:
    config = SynthConfig(max_yaw=20, max_pitch=5, max_roll=2)
    factors = sample_images(0, "train", [(i, k) for i in range(10) for k in range(10)], config)
    pose = factors.pose.stacked()
    assert (pose[:, :3].abs() <= torch.tensor([20, 5, 2])).all()
    assert pose[:, 0].abs().max() > 15
    light = factors.light.stacked()
    assert (light[:, 0] >= config.ambient[0]).all() and (light[:, 0] <= config.ambient[1]).all()


def test_expression_changes_only_the_expression_region() -> None:
    factors = _all_classes()
    face = canonical_face(factors.identity, factors.expression.actions, 64, 1.04)
    neutral_identity = sample_identities(0, "train", [0], CONFIG)
    assert torch.equal(factors.identity.params, neutral_identity.params.expand(len(EXPRESSIONS), -1))
    region = face.expression_region
    assert torch.equal(region, region[:1].expand_as(region))  # the region depends on the identity only
    outside = ~region[0]
    for c in range(1, len(EXPRESSIONS)):
        assert torch.equal(face.depth[c][outside], face.depth[0][outside]), EXPRESSIONS[c]
        assert torch.equal(face.albedo[c][:, outside], face.albedo[0][:, outside]), EXPRESSIONS[c]
        assert (face.albedo[c] - face.albedo[0]).abs().amax() > 0.2, EXPRESSIONS[c]
        assert (face.depth[c] - face.depth[0]).abs().amax() > 1e-3, EXPRESSIONS[c]
    assert torch.equal(face.face_mask, face.face_mask[:1].expand_as(face.face_mask))
    assert 0.05 < region[0].float().mean() < 0.5


def test_identity_change_keeps_expression_factors() -> None:
    factors = _all_classes()
    others = sample_identities(0, "train", list(range(10, 10 + len(EXPRESSIONS))), CONFIG)
    swapped = dataclasses.replace(factors, identity=others)
    a, b = render_factors(factors, CONFIG), render_factors(swapped, CONFIG)
    assert torch.equal(a.as_dict()["actions"], b.as_dict()["actions"])
    assert torch.equal(a.pose_code, b.pose_code) and torch.equal(a.light_code, b.light_code)
    assert not torch.equal(a.albedo, b.albedo)
    # The identity stream does not depend on the sample: every image of an identity has the same parameters.
    images = sample_images(0, "train", [(4, k) for k in range(6)], CONFIG)
    assert torch.equal(images.identity.params, images.identity.params[:1].expand(6, -1))
    assert len(set(images.expression.label.tolist())) > 1


def test_canonical_symmetry_and_flagged_asymmetry() -> None:
    factors = sample_images(3, "test", [(i, 0) for i in range(6)], CONFIG)
    face = canonical_face(factors.identity, factors.expression.actions, 64, 1.04)
    assert (factors.identity.params[:, IDENTITY_PARAMS.index("asymmetric")] == 0).all()
    assert torch.equal(face.depth.flip(-1), face.depth) and torch.equal(face.albedo.flip(-1), face.albedo)
    skewed = sample_images(3, "test", [(i, 0) for i in range(6)], SynthConfig(asymmetry_prob=1.0))
    face = canonical_face(skewed.identity, skewed.expression.actions, 64, 1.04)
    assert (skewed.identity.params[:, IDENTITY_PARAMS.index("asymmetric")] == 1).all()
    assert torch.equal(face.depth.flip(-1), face.depth)
    assert all(not torch.equal(a.flip(-1), a) for a in face.albedo)


def test_zero_pose_depth_equals_canonical_depth() -> None:
    factors = _all_classes()
    batch = render_factors(factors, CONFIG)
    mask = batch.mask
    assert mask[:, :-1, :-1].all()
    torch.testing.assert_close(batch.depth[mask], batch.canonical_depth[mask], atol=1e-5, rtol=0)
    assert torch.equal(batch.face_mask, batch.canonical_face_mask & mask)


def test_posed_depth_lies_on_the_canonical_surface() -> None:
    factors = sample_images(0, "train", [(i, 0) for i in range(4)], CONFIG)
    yaw = torch.tensor([30.0, -30.0, 15.0, 0.0])
    factors = dataclasses.replace(factors, pose=dataclasses.replace(factors.pose, yaw=yaw, pitch=yaw / 3))
    batch = render_factors(factors, CONFIG)
    model = model_config(64)
    rot, trans = view_to_pose(batch.pose_code, model.xyz_rotation_range, model.xy_translation_range,
                              model.z_translation_range)
    points = inverse_transform_points(backproject(batch.depth, model.fov).reshape(4, -1, 3), rot, trans,
                                      model.rotation_center_depth)
    uv = project(points, intrinsics(64, model.fov))
    grid = (uv[..., :2] / 63 * 2 - 1).reshape(4, 64, 64, 2)
    surface = F.grid_sample(batch.canonical_depth[:, None], grid, align_corners=True)[:, 0]
    inner = -F.max_pool2d(-batch.face_mask[:, None].float(), 3, 1, 1)[:, 0] > 0
    error = (surface - uv[..., 2].reshape(4, 64, 64))[inner].abs()
    assert inner.sum() > 1000
    assert error.median() < 1e-4 and error.quantile(0.95) < 2e-3


def test_expression_classes_separable_by_nearest_centroid() -> None:
    factors = sample_images(5, "train", [(i, k) for i in range(30) for k in range(20)], CONFIG)
    actions, label = factors.expression.actions, factors.expression.label
    assert set(label.tolist()) == set(range(len(EXPRESSIONS)))
    centroids = torch.stack([actions[label == c].mean(0) for c in range(len(EXPRESSIONS))])
    assert torch.equal(torch.cdist(actions, centroids).argmin(1), label)
    assert torch.equal(actions[label == 0], torch.zeros_like(actions[label == 0]))
    assert PROTOTYPES.shape == (len(EXPRESSIONS), len(ACTIONS))


def test_splits_have_disjoint_identities() -> None:
    params = {split: sample_identities(0, split, range(40), CONFIG).params for split in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert torch.cdist(params[a], params[b]).min() > 1e-3, (a, b)
    item = SynthFacesImages(2, split="test")[1]
    assert int(item["split"]) == SPLITS.index("test") and int(item["identity"]) == 1
    with pytest.raises(ValueError, match="split"):
        SynthFacesImages(2, split="holdout")


def test_clips_are_smooth_and_prefix_stable() -> None:
    config = SynthConfig(keyframe_interval=4)
    factors = sample_clip(0, "train", 2, 1, range(13), config)
    shorter = sample_clip(0, "train", 2, 1, range(6), config)
    assert torch.equal(factors.expression.actions[:6], shorter.expression.actions)
    assert torch.equal(factors.pose.stacked()[:6], shorter.pose.stacked())
    assert torch.equal(factors.identity.params, factors.identity.params[:1].expand(13, -1))
    assert torch.equal(factors.light.stacked(), factors.light.stacked()[:1].expand(13, -1))
    angle_steps = factors.pose.stacked()[1:, :3] - factors.pose.stacked()[:-1, :3]
    limits = torch.tensor([config.max_yaw, config.max_pitch, config.max_roll])
    assert (angle_steps.abs() <= 1.5 * 2 * config.clip_pose_step * limits / config.keyframe_interval + 1e-4).all()
    assert (factors.expression.actions[1:] - factors.expression.actions[:-1]).abs().max() <= 0.5
    assert factors.pose.yaw.std() > 0


def test_clip_light_per_frame_changes_only_the_light() -> None:
    held = sample_clip(0, "train", 2, 1, range(9), SynthConfig())
    varied = sample_clip(0, "train", 2, 1, range(9), SynthConfig(clip_light="frame"))
    assert torch.equal(varied.pose.stacked(), held.pose.stacked())
    assert torch.equal(varied.expression.actions, held.expression.actions)
    lights = varied.light.stacked()
    assert torch.unique(lights, dim=0).shape[0] == 9
    assert torch.equal(lights[3:6], sample_clip(0, "train", 2, 1, range(3, 6), SynthConfig(clip_light="frame"))
                       .light.stacked())
    config = SynthConfig()
    assert ((lights[:, 0] >= config.ambient[0]) & (lights[:, 0] <= config.ambient[1])).all()
    with pytest.raises(ValueError, match="clip_light"):
        SynthConfig(clip_light="image")


@pytest.mark.parametrize("hold", [("light",), ("shift",), ("pose",), ("expression",), ("light", "shift")])
def test_held_factors_are_shared_by_an_identity(hold: tuple[str, ...]) -> None:
    free = SynthFacesImages(3, 4, split="val")
    held = SynthFacesImages(3, 4, split="val", hold=hold)
    f, h = free.factors(range(12)), held.factors(range(12))
    columns = {"light": lambda x: x.light.stacked(), "shift": lambda x: x.pose.stacked()[:, 3:],
               "pose": lambda x: x.pose.stacked()[:, :3], "expression": lambda x: x.expression.actions}
    first = torch.arange(12) // 4 * 4
    assert torch.equal(h.identity.params, f.identity.params)
    for name, column in columns.items():
        if name in hold:  # every sample takes its identity's sample 0
            assert torch.equal(column(h), column(f)[first])
            assert not torch.equal(column(h), column(f))
        else:
            assert torch.equal(column(h), column(f))
    assert torch.equal(held.batch([5]).image, held.batch([4, 5]).image[1:])  # still independent of the batch


def test_hold_factors_rejects_unknown_names_and_sizes() -> None:
    f = sample_images(0, "train", ITEMS, CONFIG)
    with pytest.raises(ValueError, match="cannot hold \\['identity'\\]"):
        hold_factors(f, f, ["identity"])
    with pytest.raises(ValueError, match="reference has 2 faces"):
        hold_factors(f, sample_images(0, "train", ITEMS[:2], CONFIG), ["light"])
    with pytest.raises(ValueError, match="cannot hold"):
        SynthFacesImages(2, 2, hold=("background",))
    assert set(HOLDABLE) == {"expression", "pose", "shift", "light"}


def test_datasets_and_dataloader() -> None:
    images = SynthFacesImages(3, 2, seed=4)
    assert len(images) == 6
    loaded = next(iter(DataLoader(images, batch_size=4)))
    assert set(loaded) == set(ITEM_KEYS) and loaded["image"].shape == (4, 3, 64, 64)
    single = images[3]
    for key in ITEM_KEYS:
        assert torch.equal(loaded[key][3], single[key]), key
    assert int(single["identity"]) == 1 and int(single["clip"]) == 1
    with pytest.raises(IndexError):
        images[6]
    clips = SynthFacesClips(2, 2, 3, seed=4)
    assert len(clips) == 4
    clip = clips[3]
    assert clip["image"].shape == (3, 3, 64, 64) and clip["frame"].tolist() == [0, 1, 2]
    assert clip["identity"].tolist() == [1, 1, 1] and clip["clip"].tolist() == [1, 1, 1]


def test_cli_export_round_trip(tmp_path, capsys) -> None:
    out = tmp_path / "synth"
    argv = ["synth", str(out), "--identities", "2", "--clips-per-identity", "2", "--frames", "2", "--seed", "3",
            "--split", "train", "test", "--batch-size", "3"]
    assert main(argv) == EXIT_OK
    assert "wrote 16 SynthFaces images" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["size"] == 64 and manifest["counts"]["images"] == 16
    assert manifest["splits"]["test"] == {"identities": 2, "clips_per_identity": 2, "frames": 2, "images": 8}
    assert manifest["identity_params"] == list(IDENTITY_PARAMS) and manifest["expressions"] == list(EXPRESSIONS)
    assert len(manifest["files"]) == 16 and "test/00001/001/0001" in manifest["files"]
    assert (out / "test/00001/001/0001.png").is_file() and (out / "test/00001/001/0001.npz").is_file()

    expected = SynthFacesClips(2, 2, 2, split="test", seed=3)
    folder = SynthFacesFolder(out, "test", clips=True)
    assert len(folder) == 4
    got, want = folder[3], expected[3]
    for key in ITEM_KEYS:
        if key == "image":
            assert (got[key] - want[key]).abs().max() <= 0.5 / 255 + 1e-6
        else:
            assert torch.equal(got[key], want[key]), key
    frames = SynthFacesFolder(out, "train")
    assert len(frames) == 8 and torch.equal(frames[5]["depth"], SynthFacesClips(2, 2, 2, seed=3)[2]["depth"][1])

    png = (out / "train/00000/000/0000.png").read_bytes()
    assert main(argv) == EXIT_ERROR
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == EXIT_OK
    assert (out / "train/00000/000/0000.png").read_bytes() == png


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--identities", "0"], "positive"),
        (["--identities", "2", "--size", "96"], "64 * 2**k"),
        (["--identities", "2", "--split", "holdout"], "invalid choice"),
        (["--identities", "two"], "invalid"),
        ([], "--identities"),
    ],
)
def test_cli_bad_arguments_exit_2(tmp_path, capsys, args, expected) -> None:
    with pytest.raises(SystemExit) as info:
        main(["synth", str(tmp_path / "out"), *args])
    assert info.value.code == EXIT_USAGE
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_contact_sheet_layout() -> None:
    sheet = contact_sheet(identities=2)
    assert sheet.shape == (3, 2 * 64, (len(EXPRESSIONS) + 1) * 64)
    assert sheet.min() >= 0 and sheet.max() <= 1
