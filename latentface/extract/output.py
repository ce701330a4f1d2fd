"""The output table of an encoding run: written atomically as ``.npz`` or ``.parquet``, read back, and merged
from the run's chunks."""

from __future__ import annotations

import importlib
import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentface.data.records import ImageRecord
from latentface.extract.chunks import chunk_path, load_chunk, remove_chunks
from latentface.extract.items import OK
from latentface.face_records import FaceBox
from latentface.fileio import npz_bytes, write_atomic
from latentface.options import ENCODE_OUTPUT_SUFFIXES
from latentface.paths import display_name

FACE_ARRAYS = ("face_box", "crop_box", "face_confidence")
"""Arrays written with ``faces``: detector box ``(x0, y0, x1, y1)``, crop box ``(x, y, w, h)`` and confidence per
row, float32, NaN for rows without a face."""

METADATA = "metadata"
"""Entry of an ``.npz`` output holding the metadata as JSON."""
PARQUET_METADATA = b"latentface"
"""Key of the metadata JSON in a ``.parquet`` output's schema metadata."""


def face_arrays(faces: Mapping[int, FaceBox], rows: int) -> dict[str, np.ndarray]:
    """The `FACE_ARRAYS` of a run with detection.

    Args:
        faces: the detected face of each row that has one.
        rows: rows of the output.

    Returns:
        The arrays, NaN for rows without a face.
    """
    arrays = {"face_box": np.full((rows, 4), np.nan, np.float32), "crop_box": np.full((rows, 4), np.nan, np.float32),
              "face_confidence": np.full(rows, np.nan, np.float32)}
    for i, face in faces.items():
        arrays["face_box"][i] = face.box
        arrays["crop_box"][i] = face.crop_box
        arrays["face_confidence"][i] = face.confidence
    return arrays


def require_pyarrow(out: Path) -> None:
    """Raise `ImportError` (saying how to install it) unless pyarrow can be imported to write or read `out`."""
    try:
        importlib.import_module("pyarrow.parquet")
    except ImportError as err:
        raise ImportError(f"writing {str(out)!r} as Parquet needs pyarrow: pip install pyarrow "
                          "(or name the output .npz)") from err


def write_output(path: str | Path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> Path:
    """Write an output table atomically: ``.npz`` (arrays plus a JSON ``metadata`` string) or ``.parquet``
    (one column per array, 2-d arrays as fixed-size lists, the JSON in the schema metadata under ``latentface``).

    Args:
        path: the output file.
        arrays: the columns, one row per record.
        metadata: JSON-serializable run description.

    Returns:
        The written file.

    Raises:
        ValueError: the suffix is neither .npz nor .parquet.
        ImportError: Parquet without pyarrow.
    """
    out = Path(path)
    text = json.dumps(dict(metadata), sort_keys=True)
    if out.suffix == ".npz":
        return write_atomic(out, npz_bytes({**arrays, METADATA: np.array(text)}))
    if out.suffix != ".parquet":
        raise ValueError(f"output {str(out)!r} must end with one of {ENCODE_OUTPUT_SUFFIXES}")
    require_pyarrow(out)
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {}
    for name, values in arrays.items():
        if values.ndim == 2:
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        else:
            columns[name] = pa.array([display_name(v) for v in values.tolist()] if values.dtype.kind == "U"
                                     else values)
    table = pa.table(columns).replace_schema_metadata({PARQUET_METADATA: text.encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return write_atomic(out, sink.getvalue().to_pybytes())


def load_output(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an output of `encode_records` back.

    Args:
        path: a ``.npz`` or ``.parquet`` output.

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
        if METADATA not in arrays:
            raise ValueError(f"{str(path)!r} has no {METADATA!r} entry: not written by latentface encode")
        return arrays, json.loads(str(arrays.pop(METADATA)))
    require_pyarrow(path)
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = (table.schema.metadata or {}).get(PARQUET_METADATA)
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


def existing_output(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """An existing, readable output.

    Args:
        path: the output file.

    Returns:
        Its arrays and metadata, or None when it is absent or cannot be read.
    """
    if not path.is_file():
        return None
    try:
        return load_output(path)
    except (OSError, ValueError, KeyError, EOFError, ImportError, zipfile.BadZipFile):
        return None


def merge_chunks(out: Path, work: Path, key: str, rows: Sequence[range], widths: Mapping[str, int],
                 names: Sequence[str], records: Sequence[ImageRecord], faces: Mapping[int, FaceBox] | None,
                 metadata: Mapping[str, Any]) -> np.ndarray:
    """Join every chunk of a run into its output table, write it atomically, then remove the chunks.

    Args:
        out: the output file.
        work: the work folder.
        key: the run's key.
        rows: the rows of each batch.
        widths: the feature or code arrays and their widths.
        names: the row names.
        records: the inputs (their labels are written when any has one).
        faces: the detected faces, or None for a run without detection.
        metadata: the run's description (rows, encoded rows and arrays are added).

    Returns:
        The status of every row.

    Raises:
        RuntimeError: a chunk is missing or damaged.
    """
    chunks = []
    for i, part in enumerate(rows):
        chunk = load_chunk(chunk_path(work, i), key, len(part), widths)
        if chunk is None:
            raise RuntimeError(f"chunk {chunk_path(work, i)} is missing or damaged after every process finished")
        chunks.append(chunk)
    table: dict[str, np.ndarray] = {"files": np.array(names, dtype=str),
                                    "status": np.concatenate([c["status"] for c in chunks])}
    if any(record.label is not None for record in records):
        table["label"] = np.array([-1 if r.label is None else r.label for r in records], dtype=np.int64)
    if faces is not None:
        table.update(face_arrays(faces, len(records)))
    table.update({name: np.concatenate([c[name] for c in chunks]) for name in widths})
    write_output(out, table, {**metadata, "rows": len(records), "ok": int((table["status"] == OK).sum()),
                              "arrays": list(widths)})
    remove_chunks(work, len(rows))
    return table["status"]
