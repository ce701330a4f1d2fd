"""Encoding a list of image records to features or codes: batched, seeded per batch, resumable, multi-process.

Batch ``i`` always holds records ``i * batch_size`` to ``(i + 1) * batch_size - 1`` and draws its diffusion noise
from its own generator seeded by ``(seed, i)``, so the numbers depend neither on where a run was resumed nor on
how many processes shared the work. Each finished batch is saved as a chunk in a work folder beside the output;
the output is written atomically once every batch is done, then the chunks are removed. A bad item (missing,
empty, corrupt, truncated, damaged, not an image, too small) gets NaN rows and a status that says why; it never
stops its batch. A row whose result holds NaN or Inf gets the status `NON_FINITE`.

The output key (`cache_key`) hashes the weights, the settings and the input list (paths, boxes, labels, file
sizes and modification times): a run whose output already holds the same key does nothing, and the benchmarks
use the same key for their feature cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import math
import shutil
import stat
import sys
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from tqdm.auto import tqdm

from latentface import __version__
from latentface.data.records import ImageRecord, load_record
from latentface.errors import DamagedImageError, InvalidImageError
from latentface.face_records import FaceBox
from latentface.fileio import write_atomic
from latentface.hub import weights_digest
from latentface.model import LatentFace
from latentface.options import ENCODE_PROTOCOLS, EncodeProtocol, check_option
from latentface.paths import display_name
from latentface.preprocess.images import MIN_IMAGE_SIDE

FORMAT_VERSION = 1
"""Version of the chunk and output layout; part of the key."""

PROTOCOLS = ENCODE_PROTOCOLS
"""Protocols of `encode_records` (`latentface.options.ENCODE_PROTOCOLS`)."""
OUTPUT_SUFFIXES = (".npz", ".parquet")
STAGE1_ARRAYS = ("texture", "shape", "light", "pose")
"""Arrays of the ``codes`` protocol from the Stage-1 encoders."""
RDM_ARRAYS = ("texture_identity", "texture_expression", "shape_identity", "shape_expression")
"""Arrays of the ``codes`` protocol from the RDM (only for weights with Stage 2)."""
OK = "ok"
"""Status of an encoded item; any other status is the reason it was skipped."""
NON_FINITE = "non-finite result"
"""Status of a row whose features or codes hold NaN or Inf (written as NaN, never as "ok")."""
DEFAULT_MIN_SIDE = MIN_IMAGE_SIDE
"""Smallest image (or face box) side, in pixels, that is encoded."""

_METADATA = "metadata"
_CHUNK_KEY = "key"
"""Array of a chunk file holding the key of the run that wrote it."""
_PARQUET_METADATA = b"latentface"


@dataclass(frozen=True)
class EncodeResult:
    """What `encode_records` did.

    Attributes:
        path: the output file.
        key: its cache key.
        files: row names (the record paths, or the names given).
        status: per row, `OK` or the reason it was skipped.
        computed_batches: batches this process encoded in this call (0 when everything was reused).
        reused: the output already existed with the same key; nothing was done.
    """

    path: Path
    key: str
    files: list[str]
    status: list[str]
    computed_batches: int
    reused: bool

    @property
    def num_ok(self) -> int:
        """Number of encoded rows."""
        return sum(s == OK for s in self.status)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(name, reason)`` of every skipped row."""
        return [(f, s) for f, s in zip(self.files, self.status, strict=True) if s != OK]


def batch_seed(seed: int, index: int) -> int:
    """Seed of batch `index`'s generator: a 63-bit hash of ``(seed, index)``."""
    digest = hashlib.sha256(f"latentface-encode:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _settings(model: LatentFace, protocol: str, seed: int, batch_size: int, flip: bool, min_side: int) -> dict:
    cfg = model.config
    return {
        "format": FORMAT_VERSION, "protocol": protocol, "seed": seed, "batch_size": batch_size, "flip": flip,
        "min_side": min_side, "image_size": cfg.image_size, "resample": cfg.preprocess.resample,
        "resize_mode": cfg.preprocess.resize_mode, "sampler": cfg.sampler, "steps": cfg.sampling_steps,
    }


def _file_stamp(path: Path) -> list[int] | None:
    """``[size, mtime_ns]`` of a file, or None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def cache_key(
    model: LatentFace,
    records: Sequence[ImageRecord],
    *,
    protocol: str,
    seed: int,
    batch_size: int,
    flip: bool = False,
    names: Sequence[str] | None = None,
    skip: Mapping[int, str] | None = None,
    min_side: int = DEFAULT_MIN_SIDE,
    faces: Mapping[int, FaceBox] | None = None,
) -> str:
    """Key of an encoding job: what `encode_records` stores in its output, and the benchmarks' feature-cache key.

    Args:
        model: the weights (hashed by `weights_digest`).
        records: the inputs; their paths, labels, boxes, and the size and modification time of each file count.
        protocol, seed, batch_size, flip, names, skip, min_side, faces: as in `encode_records`.

    Returns:
        A hex SHA-256.
    """
    names = _names(records, names)
    return _key(weights_digest(model), _settings(model, protocol, seed, batch_size, flip, min_side), records, names,
                skip or {}, faces)


def _key(weights: str, settings: Mapping[str, Any], records: Sequence[ImageRecord], names: Sequence[str],
         skip: Mapping[int, str], faces: Mapping[int, FaceBox] | None) -> str:
    digest = hashlib.sha256(json.dumps({"weights": weights, "settings": settings}, sort_keys=True).encode())
    for i, (record, name) in enumerate(zip(records, names, strict=True)):
        path = Path(record.path)
        label = None if record.label is None else int(record.label)
        box = None if record.box is None else [int(v) for v in record.box]
        row = [name, str(path), label, box, skip.get(i), _file_stamp(path)]
        if faces is not None:
            row.append(faces[i].to_dict() if i in faces else None)
        digest.update(json.dumps(row).encode() + b"\n")
    return digest.hexdigest()


FACE_ARRAYS = ("face_box", "crop_box", "face_confidence")
"""Arrays written with ``faces``: detector box ``(x0, y0, x1, y1)``, crop box ``(x, y, w, h)`` and confidence per
row, float32, NaN for rows without a face."""


def _face_arrays(faces: Mapping[int, FaceBox], rows: int) -> dict[str, np.ndarray]:
    arrays = {"face_box": np.full((rows, 4), np.nan, np.float32), "crop_box": np.full((rows, 4), np.nan, np.float32),
              "face_confidence": np.full(rows, np.nan, np.float32)}
    for i, face in faces.items():
        arrays["face_box"][i] = face.box
        arrays["crop_box"][i] = face.crop_box
        arrays["face_confidence"][i] = face.confidence
    return arrays


def load_item(
    record: ImageRecord,
    size: int,
    *,
    resize_mode: str = "stretch",
    resample: str = "bilinear",
    min_side: int = DEFAULT_MIN_SIDE,
) -> tuple[Tensor | None, str]:
    """Load one record for encoding, or say why it cannot be.

    Args:
        record: the image file and its optional box.
        size: network input side.
        resize_mode, resample: the model's preprocessing (`latentface.config.PreprocessConfig`).
        min_side: images (and boxes) with a shorter side are refused.

    Returns:
        ``(image, OK)`` with a (3, size, size) tensor in [0, 1], or ``(None, reason)``.
    """
    path = Path(record.path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, "missing file"
    except OSError as err:
        return None, f"cannot access file: {err.strerror or err}"
    if not stat.S_ISREG(st.st_mode):
        return None, "not a regular file"
    if st.st_size == 0:
        return None, "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():  # damage Pillow warns of is reported by the full decode below
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
    except UnidentifiedImageError:
        return None, "not an image (unknown file format)"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return None, f"unreadable image: {err}"
    if min(width, height) < min_side:
        return None, f"image too small ({width}x{height} px; the shorter side must be at least {min_side} px)"
    if record.box is not None and min(record.box[2:]) < min_side:
        return None, f"face box too small ({record.box[2]}x{record.box[3]} px; minimum side {min_side} px)"
    try:
        return load_record(record, size, resize_mode, resample), OK
    except InvalidImageError as err:
        damage = err if isinstance(err, DamagedImageError) else err.__cause__
        if isinstance(damage, DamagedImageError):
            return None, f"damaged image data: {damage.detail}"
        return None, f"corrupt or truncated image: {err.__cause__ or err}"
    except (OSError, ValueError, SyntaxError) as err:  # a decoder error load_record does not wrap
        return None, f"corrupt or truncated image: {err}"


def array_widths(model: LatentFace, protocol: str) -> dict[str, int]:
    """Names and widths of the arrays `encode_records` writes for a model and protocol."""
    if protocol != "codes":
        return {"features": model.num_features(protocol)}
    dim = model.config.latent_dim
    widths = {"texture": dim, "shape": dim, "light": 4, "pose": 6}
    if model.config.has_rdm:
        widths.update(dict.fromkeys(RDM_ARRAYS, dim))
    return widths


@torch.no_grad()
def _run_model(model: LatentFace, batch: Tensor, protocol: str, generator: torch.Generator) -> dict[str, np.ndarray]:
    """Features or codes of a (B, 3, S, S) batch in [0, 1], as float32 numpy arrays."""
    if protocol != "codes":
        out = {"features": model.features(batch, protocol, generator=generator)}
    else:
        codes = model.encode_batch(batch.to(model.device, model.dtype))
        out = {"texture": codes.texture, "shape": codes.shape, "light": codes.light, "pose": codes.pose}
        if model.config.has_rdm:
            parts = model.disentangle(codes, generator=generator)
            out.update(texture_identity=parts.identity.texture, texture_expression=parts.expression.texture,
                       shape_identity=parts.identity.shape, shape_expression=parts.expression.shape)
    return {name: value.float().cpu().numpy() for name, value in out.items()}


def _encode_chunk(
    model: LatentFace,
    records: Sequence[ImageRecord],
    reasons: Sequence[str | None],
    protocol: str,
    flip: bool,
    min_side: int,
    generator: torch.Generator,
) -> dict[str, np.ndarray]:
    """Encode one batch; bad items keep their place (a blank image) so every item's noise depends on its position."""
    cfg = model.config
    images: list[Tensor | None] = []
    status: list[str] = []
    for record, reason in zip(records, reasons, strict=True):
        image, why = (None, reason) if reason is not None else load_item(
            record, cfg.image_size, resize_mode=cfg.preprocess.resize_mode, resample=cfg.preprocess.resample,
            min_side=min_side)
        images.append(image)
        status.append(why)
    arrays = {name: np.full((len(records), width), np.nan, np.float32)
              for name, width in array_widths(model, protocol).items()}
    good = [i for i, image in enumerate(images) if image is not None]
    if good:
        blank = torch.zeros(3, cfg.image_size, cfg.image_size)
        batch = torch.stack([blank if image is None else image for image in images])
        if flip:
            batch = torch.flip(batch, dims=[3])
        for name, values in _run_model(model, batch, protocol, generator).items():
            arrays[name][good] = values[good]
        for i in good:  # a NaN or Inf result is never an "ok" row
            bad = [name for name, values in arrays.items() if not np.isfinite(values[i]).all()]
            if bad:
                status[i] = f"{NON_FINITE} (NaN or Inf in {', '.join(bad)})"
                for values in arrays.values():
                    values[i] = np.nan
    return {"status": np.array(status, dtype=str), **arrays}


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _chunk_path(work: Path, index: int) -> Path:
    return work / f"batch-{index:07d}.npz"


def _load_chunk(path: Path, key: str, rows: int, widths: Mapping[str, int]) -> dict[str, np.ndarray] | None:
    """A saved chunk of the run with this key, or None when it is absent, of another run, or damaged."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data[_CHUNK_KEY]) != key:
                return None
            chunk = {name: data[name] for name in ("status", *widths)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if chunk["status"].shape != (rows,) or any(chunk[n].shape != (rows, w) for n, w in widths.items()):
        return None
    return chunk


def _remove_chunks(work: Path, batches: int) -> None:
    """Delete this run's chunk files, then the folder if nothing else is in it (a user's folder may hold more)."""
    for i in range(batches):
        _chunk_path(work, i).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        work.rmdir()


def default_work_dir(out_path: str | Path, key: str) -> Path:
    """Chunk folder of an output: hidden, beside it, named by the output and the start of the key."""
    out = Path(out_path)
    return out.parent / f".{out.name}.{key[:16]}.chunks"


def _remove_stale_work_dirs(out: Path, keep: Path) -> None:
    """Remove chunk folders of this output left by runs with other keys (their output would be replaced anyway)."""
    if not out.parent.is_dir():
        return
    prefix = f".{out.name}."
    for entry in out.parent.iterdir():
        if entry.name.startswith(prefix) and entry.name.endswith(".chunks") and entry != keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def _require_pyarrow(out: Path) -> None:
    try:
        importlib.import_module("pyarrow.parquet")
    except ImportError as err:
        raise ImportError(f"writing {str(out)!r} as Parquet needs pyarrow: pip install pyarrow "
                          "(or name the output .npz)") from err


def write_output(path: str | Path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> Path:
    """Write an output table atomically: ``.npz`` (arrays plus a JSON ``metadata`` string) or ``.parquet``
    (one column per array, 2-d arrays as fixed-size lists, the JSON in the schema metadata under ``latentface``).

    Raises:
        ValueError: the suffix is neither .npz nor .parquet.
        ImportError: Parquet without pyarrow.
    """
    out = Path(path)
    text = json.dumps(dict(metadata), sort_keys=True)
    if out.suffix == ".npz":
        return write_atomic(out, _npz_bytes({**arrays, _METADATA: np.array(text)}))
    if out.suffix != ".parquet":
        raise ValueError(f"output {str(out)!r} must end with one of {OUTPUT_SUFFIXES}")
    _require_pyarrow(out)
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {}
    for name, values in arrays.items():
        if values.ndim == 2:
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        else:
            columns[name] = pa.array([display_name(v) for v in values.tolist()] if values.dtype.kind == "U"
                                     else values)
    table = pa.table(columns).replace_schema_metadata({_PARQUET_METADATA: text.encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return write_atomic(out, sink.getvalue().to_pybytes())


def load_output(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an output of `encode_records` back.

    Returns:
        ``(arrays, metadata)``: ``files`` and ``status`` as str arrays, ``label`` (int64, -1 for none) when
        present, and the float32 feature or code arrays (B, D).

    Raises:
        OSError, ValueError: the file cannot be read or is not such an output.
        ImportError: a Parquet file without pyarrow.
    """
    path = Path(path)
    if path.suffix != ".parquet":
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        if _METADATA not in arrays:
            raise ValueError(f"{str(path)!r} has no {_METADATA!r} entry: not written by latentface encode")
        return arrays, json.loads(str(arrays.pop(_METADATA)))
    _require_pyarrow(path)
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = (table.schema.metadata or {}).get(_PARQUET_METADATA)
    if meta is None:
        raise ValueError(f"{str(path)!r} has no latentface metadata: not written by latentface encode")
    arrays = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if hasattr(column.type, "list_size"):
            arrays[name] = column.flatten().to_numpy().reshape(len(column), column.type.list_size)
        elif name in ("files", "status"):
            arrays[name] = np.array(column.to_pylist(), dtype=str)
        else:
            arrays[name] = column.to_numpy()
    return arrays, json.loads(meta)


def _existing(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """An existing, readable output (arrays and metadata), or None."""
    if not path.is_file():
        return None
    try:
        return load_output(path)
    except (OSError, ValueError, KeyError, EOFError, ImportError, zipfile.BadZipFile):
        return None


def process_state() -> Any:
    """Accelerate's `PartialState` of this process (several processes under ``accelerate launch``; on a machine
    without GPUs they use the gloo backend on the CPU)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _names(records: Sequence[ImageRecord], names: Sequence[str] | None) -> list[str]:
    """Row names as printable text: undecodable bytes of file names become ``\\xNN`` (`display_name`)."""
    if names is None:
        return [display_name(record.path) for record in records]
    if len(names) != len(records):
        raise ValueError(f"got {len(names)} names for {len(records)} records")
    return [display_name(name) for name in names]


def _check_request(model: LatentFace, records: Sequence[ImageRecord], out: Path, protocol: str, batch_size: int,
                   skip: Mapping[int, str], min_side: int) -> None:
    check_option("protocol", protocol, PROTOCOLS)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if min_side < MIN_IMAGE_SIDE:
        raise ValueError(f"min_side must be at least {MIN_IMAGE_SIDE} (the smallest image any entry point accepts), "
                         f"got {min_side}")
    if not records:
        raise ValueError("no records to encode")
    if out.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"output {str(out)!r} must end with one of {OUTPUT_SUFFIXES}")
    if out.suffix == ".parquet":
        _require_pyarrow(out)
    if protocol != "codes":
        model.require_rdm(f"protocol {protocol!r} (protocol 'codes' gives Stage-1 codes without it)")
    bad = [i for i in skip if not 0 <= i < len(records)]
    if bad:
        raise ValueError(f"skip names rows {bad} outside the {len(records)} records")


def _raise_if_any_failed(state: Any, failure: Exception | None) -> None:
    """Tell every process whether any of them failed (a collective call: nobody is left waiting), then raise."""
    message = "" if failure is None else f"{type(failure).__name__}: {failure}"
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        others = [m for m in gather_object([message]) if m]
    else:
        others = []
    if failure is not None:
        raise failure
    if others:
        raise RuntimeError(f"another process failed while encoding: {others[0]}")


def _merge(out: Path, work: Path, key: str, rows: Sequence[range], widths: Mapping[str, int], names: Sequence[str],
           records: Sequence[ImageRecord], faces: Mapping[int, FaceBox] | None, metadata: dict[str, Any]) -> np.ndarray:
    """Join every chunk into the output table, write it atomically, remove the chunks; returns the statuses."""
    chunks = []
    for i, part in enumerate(rows):
        chunk = _load_chunk(_chunk_path(work, i), key, len(part), widths)
        if chunk is None:
            raise RuntimeError(f"chunk {_chunk_path(work, i)} is missing or damaged after every process finished")
        chunks.append(chunk)
    table: dict[str, np.ndarray] = {"files": np.array(names, dtype=str),
                                    "status": np.concatenate([c["status"] for c in chunks])}
    if any(record.label is not None for record in records):
        table["label"] = np.array([-1 if r.label is None else r.label for r in records], dtype=np.int64)
    if faces is not None:
        table.update(_face_arrays(faces, len(records)))
    table.update({name: np.concatenate([c[name] for c in chunks]) for name in widths})
    write_output(out, table, {**metadata, "rows": len(records), "ok": int((table["status"] == OK).sum()),
                              "arrays": list(widths)})
    _remove_chunks(work, len(rows))
    return table["status"]


def encode_records(
    model: LatentFace,
    records: Sequence[ImageRecord],
    out_path: str | Path,
    *,
    protocol: EncodeProtocol = "fer",
    batch_size: int = 64,
    seed: int = 0,
    flip: bool = False,
    names: Sequence[str] | None = None,
    skip: Mapping[int, str] | None = None,
    min_side: int = DEFAULT_MIN_SIDE,
    faces: Mapping[int, FaceBox] | None = None,
    work_dir: str | Path | None = None,
    weights_name: str | None = None,
    progress: bool = True,
) -> EncodeResult:
    """Encode image records to an output table, resumably; under ``accelerate launch`` the batches are shared.

    Args:
        model: the weights, on the device to run on.
        records: the images (with optional labels and face boxes), one output row each, in this order.
        out_path: ``.npz`` or ``.parquet`` output, written atomically when every batch is done.
        protocol: ``"fer"`` or ``"verification"`` (`LatentFace.features`: one ``features`` array) or ``"codes"``
            (arrays `STAGE1_ARRAYS`, plus `RDM_ARRAYS` when the weights have the RDM).
        batch_size: records per batch (batches are fixed by position; part of the key).
        seed: batch ``i`` draws its noise from a generator seeded with `batch_seed` ``(seed, i)``.
        flip: encode the horizontally mirrored images.
        names: row names (default: the record paths).
        skip: rows not to load, with the status to give them (e.g. ``"no face detected"``).
        min_side: smaller images or boxes are skipped (at least `DEFAULT_MIN_SIDE`, the rule of every entry point).
        faces: the detected face of each row that has one (`latentface.face_records.detect_rows`); when given,
            the output also holds `FACE_ARRAYS`, so that every row maps back to its face.
        work_dir: chunk folder (default `default_work_dir`).
        weights_name: name of the weights, recorded in the metadata.
        progress: show a progress bar on stderr (main process only).

    Returns:
        `EncodeResult` (the same in every process).

    Raises:
        ValueError: a bad protocol, batch size, output suffix, empty record list or skip row.
        WeightsError: a features protocol with weights that have no RDM.
        ImportError: a Parquet output without pyarrow.
    """
    out = Path(out_path)
    skip = dict(skip or {})
    _check_request(model, records, out, protocol, batch_size, skip, min_side)
    names = _names(records, names)
    digest, settings = weights_digest(model), _settings(model, protocol, seed, batch_size, flip, min_side)
    bad = [i for i in faces or {} if not 0 <= i < len(records)]
    if bad:
        raise ValueError(f"faces names rows {bad} outside the {len(records)} records")
    key = _key(digest, settings, records, names, skip, faces)
    found = _existing(out)
    if found is not None and found[1].get("key") == key:
        if work_dir is None:  # chunks left by a run stopped between writing the output and removing them
            shutil.rmtree(default_work_dir(out, key), ignore_errors=True)
        return EncodeResult(out, key, names, found[0]["status"].tolist(), 0, reused=True)

    state = process_state()
    work = Path(work_dir) if work_dir is not None else default_work_dir(out, key)
    if state.is_main_process and work_dir is None:
        _remove_stale_work_dirs(out, work)
    work.mkdir(parents=True, exist_ok=True)
    widths = array_widths(model, protocol)
    batches = math.ceil(len(records) / batch_size)
    mine = range(state.process_index, batches, state.num_processes)
    rows = [range(i * batch_size, min(len(records), (i + 1) * batch_size)) for i in range(batches)]
    computed = 0
    failure: Exception | None = None
    try:
        with tqdm(total=sum(len(rows[i]) for i in mine), unit="img", desc=f"encode {protocol}", file=sys.stderr,
                  disable=not (progress and state.is_main_process)) as bar:
            for i in mine:
                path = _chunk_path(work, i)
                if _load_chunk(path, key, len(rows[i]), widths) is None:
                    generator = torch.Generator().manual_seed(batch_seed(seed, i))
                    chunk = _encode_chunk(model, [records[j] for j in rows[i]], [skip.get(j) for j in rows[i]],
                                          protocol, flip, min_side, generator)
                    write_atomic(path, _npz_bytes({**chunk, _CHUNK_KEY: np.array(key)}))
                    computed += 1
                bar.update(len(rows[i]))
    except Exception as err:  # re-raised below, once every process has heard of it
        failure = err
    _raise_if_any_failed(state, failure)
    if state.is_main_process:
        try:
            status = _merge(out, work, key, rows, widths, names, records, faces, metadata={
                "key": key, "weights": weights_name, "weights_digest": digest, "latentface_version": __version__,
                **settings})
        except Exception as err:  # re-raised below, once the other processes are released
            failure = err
    state.wait_for_everyone()
    if failure is not None:
        raise failure
    if not state.is_main_process:
        try:
            status = load_output(out)[0]["status"]
        except (OSError, ValueError, KeyError) as err:
            raise RuntimeError(f"the main process did not write {out} (see its error)") from err
    return EncodeResult(out, key, names, status.tolist(), computed, reused=False)
