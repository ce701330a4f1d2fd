"""Benchmark dataset readers (RAF-DB, AffectNet, labelled folders, LFW and SLLFW pairs) on SynthFaces fixtures
written in the official layouts (`benchmark_fixtures`), and their errors on malformed or incomplete datasets."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmark_fixtures import (
    AffectNetFixture,
    FixtureImage,
    PairFixture,
    make_affectnet,
    make_labelled_folder,
    make_lfw,
    make_rafdb,
    make_sllfw,
)
from PIL import Image

from latentface.data import read_affectnet, read_labelled_folder, read_lfw_pairs, read_rafdb, read_sllfw_pairs
from latentface.data.expressions import AFFECTNET_CLASSES, RAFDB_CLASSES, affectnet_thinning
from latentface.data.pairs import PairSet, consecutive_folds
from latentface.data.records import ImageRecord, load_record
from latentface.data.synthfaces import SynthConfig


@pytest.fixture(scope="module")
def rafdb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[FixtureImage]]:
    root = tmp_path_factory.mktemp("rafdb")
    return root, make_rafdb(root)


@pytest.fixture(scope="module")
def affectnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AffectNetFixture]:
    root = tmp_path_factory.mktemp("affectnet")
    return root, make_affectnet(root)


@pytest.fixture(scope="module")
def lfw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PairFixture, PairFixture]:
    root = tmp_path_factory.mktemp("lfw")
    return root, make_lfw(root), make_sllfw(root)


def _copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / root.name))


def _replace_line(path: Path, number: int, text: str | None) -> None:
    """Replace (or with None delete) 1-based line `number` of a text file."""
    lines = path.read_text().splitlines()
    if text is None:
        del lines[number - 1]
    else:
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- RAF-DB


@pytest.mark.parametrize("layout, label_file", [
    ("paper", "list_patition_label.txt"),
    ("download", "basic/EmoLabel/list_patition_label.txt"),
    ("basic", "EmoLabel/list_patition_label.txt"),
])
def test_rafdb_layouts_give_the_written_images_and_labels(tmp_path: Path, layout: str, label_file: str) -> None:
    written = make_rafdb(tmp_path, per_class=1, test_per_class=1, layout=layout)
    for split in ("train", "test"):
        data = read_rafdb(tmp_path, split)
        expected = [im for im in written if im.split == split]
        assert [r.path for r in data.records] == [im.path for im in expected]
        assert data.labels.tolist() == [im.label for im in expected]
        assert all(r.box is None for r in data.records)
        assert (data.name, data.split, data.classes) == ("RAF-DB", split, RAFDB_CLASSES)
        assert str(tmp_path / label_file) in data.source


def test_rafdb_labels_follow_the_class_names(rafdb: tuple[Path, list[FixtureImage]]) -> None:
    root, written = rafdb
    data = read_rafdb(root, "train")
    names = {"surprise": "Surprise", "fear": "Fear", "disgust": "Disgust", "happy": "Happiness", "sad": "Sadness",
             "angry": "Anger", "neutral": "Neutral"}
    by_path = {im.path: im.expression for im in written}
    assert [data.classes[r.label] for r in data.records] == [names[by_path[r.path]] for r in data.records]
    line = (root / "list_patition_label.txt").read_text().splitlines()[0]  # label k in the file is class k - 1
    assert data.records[0].label == int(line.split()[1]) - 1
    assert load_record(data.records[0], 64).shape == (3, 64, 64)


@pytest.mark.parametrize("line, problem", [
    ("train_00002.jpg", "1 fields"),
    ("train_00002.jpg 3 1", "3 fields"),
    ("train_00002.jpg x", "label 'x' is not an integer"),
    ("train_00002.jpg 0", "label 0 out of range"),
    ("train_00002.jpg 8", "label 8 out of range"),
    ("val_00002.jpg 3", "without a train_/test_ prefix"),
    ("train_00002 3", "or a file suffix"),
])
def test_rafdb_bad_line_names_file_line_and_format(rafdb: tuple[Path, list[FixtureImage]], tmp_path: Path,
                                                   line: str, problem: str) -> None:
    root = _copy(rafdb[0], tmp_path)
    _replace_line(root / "list_patition_label.txt", 2, line)
    message = rf"list_patition_label.txt:2: .*{re.escape(problem)}.*expected '<train\|test>"
    with pytest.raises(ValueError, match=message):
        read_rafdb(root, "test")


def test_rafdb_missing_images_are_all_named(rafdb: tuple[Path, list[FixtureImage]], tmp_path: Path) -> None:
    root = _copy(rafdb[0], tmp_path)
    gone = sorted((root / "aligned").glob("test_000[13]_aligned.jpg"))
    for path in gone:
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"2 listed image file\(s\) missing.*aligned/<name>_aligned.jpg") as err:
        read_rafdb(root, "test")
    assert all(str(p) in str(err.value) for p in gone)
    read_rafdb(root, "train")  # the other split is complete
    for path in (root / "aligned").glob("train_*"):
        path.unlink()
    twenty_then_count = r"21 listed image file\(s\) missing.*:\n(  .*\n){20}  \.\.\. and 1 more"
    with pytest.raises(FileNotFoundError, match=twenty_then_count):
        read_rafdb(root, "train")


def test_rafdb_missing_root_label_file_and_split(rafdb: tuple[Path, list[FixtureImage]], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"dataset root .*nowhere' does not exist; expected RAF-DB"):
        read_rafdb(tmp_path / "nowhere", "train")
    root = _copy(rafdb[0], tmp_path)
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\), got 'val'"):
        read_rafdb(root, "val")
    lines = (root / "list_patition_label.txt").read_text().splitlines()
    (root / "list_patition_label.txt").write_text("\n".join(x for x in lines if x.startswith("train")) + "\n")
    with pytest.raises(ValueError, match=r"lists no test images \(names starting with 'test_'\)"):
        read_rafdb(root, "test")
    (root / "list_patition_label.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"no RAF-DB label file .*tried .*basic/EmoLabel/list_patition_label"):
        read_rafdb(root, "train")


# ---------------------------------------------------------------- AffectNet


def _released_downsample(labels: np.ndarray) -> np.ndarray:
    """The released ``affectnet_pickle.py --downsample``, transcribed with numpy masks: indices of kept rows."""
    index = np.arange(len(labels))
    for code, times in ((0, 10), (1, 20), (2, 4), (3, 2), (6, 4)):
        keep = np.arange(len(labels)) % times == 0
        drop = (labels == code) & ~keep
        labels, index = labels[~drop], index[~drop]
    return index


@pytest.mark.parametrize("labels, kept", [
    ([0] * 25, [0, 10, 20]),
    ([1] * 41, [0, 20, 40]),
    ([0, 0, 3, 3], [0, 3]),  # surprise counts positions after the neutral step, over all classes
    ([4, 5, 7, 2, 2, 2, 2, 2], [0, 1, 2, 4]),
    ([6, 6, 6, 6, 6, 2, 6], [0, 4]),  # sad first: [6, 6, 6, 6, 6, 6] at positions 0..5, anger keeps 0 and 4
])
def test_affectnet_thinning_by_hand(labels: list[int], kept: list[int]) -> None:
    assert affectnet_thinning(labels) == kept
    assert _released_downsample(np.array(labels)).tolist() == kept


@pytest.mark.parametrize("header", [True, False])
def test_affectnet_filters_crops_and_keeps_csv_order(tmp_path: Path, header: bool) -> None:
    written = make_affectnet(tmp_path, header=header)
    for split, rows in (("train", written.train), ("test", written.test)):
        data = read_affectnet(tmp_path, split, thin=False)
        usable = [im for im in rows if im.usable]
        assert len(usable) < len(rows)
        assert [(r.path, r.label, r.box) for r in data.records] == [(im.path, im.label, im.box) for im in usable]
        assert (data.name, data.split, data.classes) == ("AffectNet", split, AFFECTNET_CLASSES)


def _magenta(image: torch.Tensor) -> float:
    return float(((image[0] > 0.8) & (image[1] < 0.25) & (image[2] > 0.8)).float().mean())


def test_affectnet_box_crops_the_face(affectnet: tuple[Path, AffectNetFixture]) -> None:
    record = read_affectnet(affectnet[0], "test").records[0]
    assert _magenta(load_record(ImageRecord(record.path), 96)) > 0.2  # the canvas around the face
    assert _magenta(load_record(record, 64)) == 0.0


def test_affectnet_thinning_matches_the_released_count(affectnet: tuple[Path, AffectNetFixture]) -> None:
    root, written = affectnet
    usable = [im for im in written.train if im.usable]
    thinned = read_affectnet(root, "train")
    expected = [usable[k] for k in _released_downsample(np.array([im.label for im in usable]))]
    assert [r.path for r in thinned.records] == [im.path for im in expected]
    assert len(thinned) < len(usable) == len(read_affectnet(root, "train", thin=False))
    assert "thinned" in thinned.source
    assert len(read_affectnet(root, "test", thin=True)) == len([im for im in written.test if im.usable])


def test_affectnet_pose_list_selects_by_file_name(affectnet: tuple[Path, AffectNetFixture], tmp_path: Path) -> None:
    root, written = affectnet
    posed = [im for im in written.test if im.usable and abs(im.yaw) >= 20]
    assert 2 <= len(posed) < len([im for im in written.test if im.usable])
    data = read_affectnet(root, "test", pose_list=written.pose_list)
    assert [r.path for r in data.records] == [im.path for im in posed]  # the repeated line selects once
    # the 45-degree list's format: <code>/<name>/<k>.jpg
    nested = tmp_path / "pose_45.txt"
    nested.write_text("".join(f"{im.label}/{im.path.stem}/8.jpg\n" for im in posed[::-1][:2]))
    assert [r.path for r in read_affectnet(root, "test", pose_list=nested).records] == [im.path for im in posed[-2:]]


@pytest.mark.parametrize("content, error, message", [
    ("3/deadbeef.jpg\n", ValueError, r"1 image\(s\) of pose list .* not in the filtered validation set .*deadbeef"),
    ("\n\nnoslash.jpg\n", ValueError, r"pose.txt:3: no '<label>/<name>' path in 'noslash.jpg'; expected '<label>/"),
    ("\n", ValueError, r"pose list .* is empty"),
    (None, FileNotFoundError, r"AffectNet pose list .*pose.txt' does not exist"),
])
def test_affectnet_bad_pose_list(affectnet: tuple[Path, AffectNetFixture], tmp_path: Path, content: str | None,
                                 error: type[Exception], message: str) -> None:
    pose = tmp_path / "pose.txt"
    if content is not None:
        pose.write_text(content)
    with pytest.raises(error, match=message):
        read_affectnet(affectnet[0], "test", pose_list=pose)


def _edit_csv(column: int | None, value: str) -> Callable[[list[str]], list[str]]:
    def edit(fields: list[str]) -> list[str]:
        return fields[:3] if column is None else fields[:column] + [value] + fields[column + 1:]
    return edit


@pytest.mark.parametrize("edit, message", [
    (_edit_csv(1, "abc"), r"training.csv:3: unreadable number \(could not convert string to float: 'abc'\)"),
    (_edit_csv(3, "12.5"), r"training.csv:3: unreadable number \('12.5' is not a whole number\)"),
    (_edit_csv(6, "11"), r"training.csv:3: expression 11 out of range"),
    (_edit_csv(6, "-1"), r"training.csv:3: expression -1 out of range"),
    (_edit_csv(4, "0"), r"training.csv:3: face box .* without a positive width and height"),
    (_edit_csv(0, ""), r"training.csv:3: empty image path"),
    (_edit_csv(None, ""), r"training.csv:3: 3 columns in .*; expected subDirectory_filePath,face_x"),
])
def test_affectnet_bad_row_names_file_and_line(affectnet: tuple[Path, AffectNetFixture], tmp_path: Path,
                                               edit: Callable[[list[str]], list[str]], message: str) -> None:
    root = _copy(affectnet[0], tmp_path)
    csv_path = root / "Manually_Annotated_file_lists" / "training.csv"
    lines = csv_path.read_text().splitlines()
    _replace_line(csv_path, 3, ",".join(edit(lines[2].split(","))))
    with pytest.raises(ValueError, match=message):
        read_affectnet(root, "train")


def test_affectnet_missing_files_and_bad_arguments(affectnet: tuple[Path, AffectNetFixture], tmp_path: Path) -> None:
    root = _copy(affectnet[0], tmp_path)
    written = affectnet[1]
    gone = [root / im.path.relative_to(affectnet[0]) for im in written.test if im.usable][:2]
    for path in gone:
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"2 listed image file\(s\) missing .*Manually_Annotated_Images") as err:
        read_affectnet(root, "test")
    assert all(str(p) in str(err.value) for p in gone)
    with pytest.raises(ValueError, match="pose_list restricts the test split"):
        read_affectnet(root, "train", pose_list=written.pose_list)
    with pytest.raises(ValueError, match=r"split must be one of .*'test' is the official validation set"):
        read_affectnet(root, "validation")
    csv_path = root / "Manually_Annotated_file_lists" / "training.csv"
    _replace_line(csv_path, 1, "subDirectory_filePath,face_x,face_y,face_width,face_height,expression,arousal")
    with pytest.raises(ValueError, match=r"training.csv:1: header row without the column\(s\) valence"):
        read_affectnet(root, "train")
    csv_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"training.csv' does not exist; expected Manually_Annotated_file"):
        read_affectnet(root, "train")


# ---------------------------------------------------------------- labelled folders


@pytest.mark.parametrize("splits", [("train", "test"), None])
def test_labelled_folder_fixture(tmp_path: Path, splits: tuple[str, ...] | None) -> None:
    written = make_labelled_folder(tmp_path, per_class=1, splits=splits)
    for split in splits or [None]:
        data = read_labelled_folder(tmp_path, split)
        expected = [im for im in written if im.split == (split or "")]
        assert [(r.path, r.label) for r in data.records] == [(im.path, im.label) for im in expected]
        assert data.classes == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def test_fixture_world_sets_the_pose_range(tmp_path: Path) -> None:
    frontal = SynthConfig(max_yaw=0, max_pitch=0, max_roll=0, max_shift=0)
    written = make_labelled_folder(tmp_path, per_class=1, splits=None, world=frontal)
    assert [im.yaw for im in written] == [0.0] * 7
    assert [r.path for r in read_labelled_folder(tmp_path).records] == [im.path for im in written]


def _tiny(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)


def test_labelled_folder_natural_order_and_shared_classes(tmp_path: Path) -> None:
    for name in ("train/c10/img10.png", "train/c10/img2.png", "train/c2/a.jpg", "test/c2/b.png",
                 "test/c2/.hidden.png", "test/c1/c.png"):
        _tiny(tmp_path / name)
    (tmp_path / "test/c2/notes.txt").write_text("not an image")
    test = read_labelled_folder(tmp_path, "test")
    assert test.classes == ("c1", "c2", "c10")  # union over splits, natural order
    assert [(r.path.name, r.label) for r in test.records] == [("c.png", 0), ("b.png", 1)]
    train = read_labelled_folder(tmp_path, "train")
    assert [(r.path.name, r.label) for r in train.records] == [("a.jpg", 1), ("img2.png", 2), ("img10.png", 2)]
    with pytest.raises(FileNotFoundError, match=r"no images in .*class folders found: test, train.*pass split="):
        read_labelled_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"split folder .*val' does not exist \(split folders found: test, tr"):
        read_labelled_folder(tmp_path, "val")


# ---------------------------------------------------------------- LFW and SLLFW


def _check_pairs(data: PairSet, written: PairFixture) -> None:
    assert len(set(data.images)) == len(data.images)
    assert [(data.images[i], data.images[j]) for i, j in data.pairs] == [(a, b) for a, b, _ in written.pairs]
    assert data.same.tolist() == [same for _, _, same in written.pairs]
    first_seen = list(dict.fromkeys(p for a, b, _ in written.pairs for p in (a, b)))
    assert data.images == first_seen
    assert data.pairs.dtype == np.int64 and data.pairs.shape == (len(written.pairs), 2)


def test_lfw_pairs(lfw: tuple[Path, PairFixture, PairFixture]) -> None:
    root, written, _ = lfw
    data = read_lfw_pairs(root)
    _check_pairs(data, written)
    assert data.fold.tolist() == [k // (2 * written.pairs_per_fold) for k in range(len(written.pairs))]
    assert data.name == "LFW" and data.same.sum() == len(data) // 2


def _released_kfold(n: int, folds: int = 10) -> list[int]:
    """Fold of each pair from the released ``KFold`` (lists of test indices per fold)."""
    fold = [-1] * n
    for i in range(folds):
        for k in list(range(n))[i * n // folds:(i + 1) * n // folds]:
            fold[k] = i
    return fold


def test_sllfw_pairs(lfw: tuple[Path, PairFixture, PairFixture]) -> None:
    root, _, written = lfw
    data = read_sllfw_pairs(root)
    _check_pairs(data, written)
    assert data.fold.tolist() == _released_kfold(len(written.pairs))
    assert data.same.tolist() == [a.parent == b.parent for a, b, _ in written.pairs]
    assert data.name == "SLLFW"


@pytest.mark.parametrize("n", [6000, 65, 10])
def test_consecutive_folds_match_released_kfold(n: int) -> None:
    assert consecutive_folds(n).tolist() == _released_kfold(n)
    if n == 6000:
        assert np.bincount(consecutive_folds(n)).tolist() == [600] * 10


@pytest.mark.parametrize("line, text, message", [
    (1, "10", r"pairs.txt:1: bad header in '10'; expected a first line '<folds> <count>'"),
    (1, "ten\t3", r"pairs.txt:1: bad header"),
    (1, "10\t4", r"pairs.txt:1: header announces 10 folds of 4 same and 4 different pairs \(80 lines\) but 60 pair"),
    (2, None, r"header announces .* but 59 pair lines follow"),
    (2, "Synth_Face_001\t1\tSynth_Face_002\t1", r"pairs.txt:2: a different-person line as pair 1 of fold 1, where "
                                                r"header '10\t3' puts same-person lines"),
    (11, "Synth_Face_001\t1\t2", r"pairs.txt:11: a same-person line as pair 4 of fold 2"),
    (3, "Synth_Face_001\t1\t2\t3\t4", r"pairs.txt:3: 5 fields .*expected '<name> <i> <j>'"),
    (3, "Synth_Face_001\tx\t2", r"pairs.txt:3: an image index that is not a positive integer"),
    (3, "Synth_Face_001\t0\t2", r"pairs.txt:3: an image index that is not a positive integer"),
])
def test_lfw_bad_pair_file(lfw: tuple[Path, PairFixture, PairFixture], tmp_path: Path, line: int, text: str | None,
                           message: str) -> None:
    pairs = tmp_path / "pairs.txt"
    shutil.copy(lfw[1].pairs_file, pairs)
    _replace_line(pairs, line, text)
    with pytest.raises(ValueError, match=message):
        read_lfw_pairs(lfw[0], pairs)


@pytest.mark.parametrize("lines, message", [
    (lambda ls: ls[:-1], r"pair_SLLFW.txt:119: an odd number of image lines \(119\)"),
    (lambda ls: ["Synth_Face_000_0001.jpg"] + ls[1:], r"pair_SLLFW.txt:1: not a '<folder>/<file>' path"),
    (lambda ls: ["a/b/c.jpg"] + ls[1:], r"pair_SLLFW.txt:1: not a '<folder>/<file>' path"),
    (lambda ls: ls[:8], r"has 4 pairs; 10 folds need at least 10"),
])
def test_sllfw_bad_pair_file(lfw: tuple[Path, PairFixture, PairFixture], tmp_path: Path,
                             lines: Callable[[list[str]], list[str]], message: str) -> None:
    pairs = tmp_path / "pair_SLLFW.txt"
    pairs.write_text("\n".join(lines(lfw[2].pairs_file.read_text().splitlines())) + "\n")
    with pytest.raises(ValueError, match=message):
        read_sllfw_pairs(lfw[0], pairs)


@pytest.mark.parametrize("reader, pairs_name", [(read_lfw_pairs, "pairs.txt"), (read_sllfw_pairs, "pair_SLLFW.txt")])
def test_pairs_missing_files(lfw: tuple[Path, PairFixture, PairFixture], tmp_path: Path,
                             reader: Callable[..., PairSet], pairs_name: str) -> None:
    root = _copy(lfw[0], tmp_path)
    gone = root / "lfw_crop" / "Synth_Face_003"
    shutil.rmtree(gone)
    with pytest.raises(FileNotFoundError, match=r"listed image file\(s\) missing \(expected layout: .*lfw_crop/<Name>"):
        reader(root)
    with pytest.raises(FileNotFoundError, match=rf"pair list .*{pairs_name}' does not exist"):
        reader(root, root / "nope" / pairs_name)
    (root / pairs_name).write_text("\n")
    with pytest.raises(ValueError, match="is empty|has 0 pairs"):
        reader(root)
