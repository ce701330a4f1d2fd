"""Encoding a list of image records to features or codes: batched, seeded per batch, resumable, multi-process.

Batch ``i`` always holds records ``i * batch_size`` to ``(i + 1) * batch_size - 1`` and draws its diffusion noise
from its own generator seeded by ``(seed, i)``, so the numbers depend neither on where a run was resumed nor on
how many processes shared the work. Each finished batch is saved as a chunk in a work folder beside the output;
the output is written atomically once every batch is done, then the chunks are removed. A bad item (missing,
empty, corrupt, truncated, damaged, not an image, too small) gets NaN rows and a status that says why; it never
stops its batch. A row whose result holds NaN or Inf gets the status `NON_FINITE`. The images are decoded in
DataLoader worker processes (``workers``) while the model runs; the numbers do not depend on how many.

The output key (`run_key`) hashes the weights, the settings and the input list (paths, boxes, labels, file
sizes and modification times): a run whose output already holds the same key does nothing, and the benchmarks
use the same key for their feature cache.

Modules: `keys` (run key, settings, batch seeds), `items` (checking and loading each record, the DataLoader),
`model_pass` (a loaded batch through the model), `chunks` (one file per finished batch), `output` (the output
table: write, read, merge) and `processes` (sharing a run between the processes of ``accelerate launch``).
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from latentface import __version__
from latentface.data.records import ImageRecord
from latentface.extract.chunks import chunk_path, default_work_dir, load_chunk, remove_stale_work_dirs, save_chunk
from latentface.extract.items import (
    DEFAULT_MIN_SIDE,
    OK,
    ItemDataset,
    batch_loader,
    default_workers,
    load_item,
    row_names,
)
from latentface.extract.keys import FORMAT_VERSION, batch_seed, hash_run, run_key, run_settings
from latentface.extract.model_pass import NON_FINITE, RDM_ARRAYS, STAGE1_ARRAYS, array_widths, run_batch
from latentface.extract.output import (
    FACE_ARRAYS,
    existing_output,
    load_output,
    merge_chunks,
    require_pyarrow,
    write_output,
)
from latentface.extract.processes import process_batches, process_state, raise_if_any_failed, written_by_main_process
from latentface.face_records import FaceBox
from latentface.hub import weights_digest
from latentface.model import LatentFace
from latentface.options import ENCODE_OUTPUT_SUFFIXES, ENCODE_PROTOCOLS, EncodeProtocol, check_option
from latentface.preprocess.images import MIN_IMAGE_SIDE

__all__ = [
    "DEFAULT_MIN_SIDE", "FACE_ARRAYS", "FORMAT_VERSION", "NON_FINITE", "OK", "RDM_ARRAYS", "STAGE1_ARRAYS",
    "EncodeResult", "array_widths", "batch_seed", "default_work_dir", "default_workers", "encode_records",
    "load_item", "load_output", "process_state", "run_key", "write_output",
]


@dataclass(frozen=True)
class EncodeResult:
    """What `encode_records` did.

    Attributes:
        path: the output file.
        key: its run key.
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


def _check_request(model: LatentFace, records: Sequence[ImageRecord], out: Path, protocol: str, batch_size: int,
                   skip: Mapping[int, str], min_side: int, faces: Mapping[int, FaceBox] | None,
                   workers: int | None) -> None:
    """Check the arguments of `encode_records` (named as there) before anything is read or written.

    Raises:
        ValueError: a bad protocol, batch size, minimum side, worker count, output suffix, empty record list, or
            skip or face row.
        WeightsError: a features protocol with weights that have no RDM.
        ImportError: a Parquet output without pyarrow.
    """
    check_option("protocol", protocol, ENCODE_PROTOCOLS)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if min_side < MIN_IMAGE_SIDE:
        raise ValueError(f"min_side must be at least {MIN_IMAGE_SIDE} (the smallest image any entry point accepts), "
                         f"got {min_side}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be at least 0, got {workers}")
    if not records:
        raise ValueError("no records to encode")
    if out.suffix not in ENCODE_OUTPUT_SUFFIXES:
        raise ValueError(f"output {str(out)!r} must end with one of {ENCODE_OUTPUT_SUFFIXES}")
    if out.suffix == ".parquet":
        require_pyarrow(out)
    if protocol != "codes":
        model.require_rdm(f"protocol {protocol!r} (protocol 'codes' gives Stage-1 codes without it)")
    bad = [i for i in skip if not 0 <= i < len(records)]
    if bad:
        raise ValueError(f"skip names rows {bad} outside the {len(records)} records")
    bad = [i for i in faces or {} if not 0 <= i < len(records)]
    if bad:
        raise ValueError(f"faces names rows {bad} outside the {len(records)} records")


def _encode_batches(model: LatentFace, dataset: ItemDataset, batches: Sequence[int], rows: Sequence[range],
                    work: Path, key: str, *, protocol: str, seed: int, flip: bool, workers: int, bar: tqdm) -> int:
    """Encode every batch of `batches` that has no valid chunk yet, saving a chunk for each.

    Args:
        model: the weights.
        dataset: the items (loaded in `workers` DataLoader worker processes, or here when 0).
        batches: this process's batches.
        rows: the rows of every batch of the run.
        work: the work folder.
        key: the run's key.
        protocol: the encode protocol.
        seed: the run's seed.
        flip: encode the mirrored images.
        workers: decoding worker processes.
        bar: progress, advanced by the rows of each batch done or reused.

    Returns:
        The number of batches encoded.
    """
    widths = array_widths(model, protocol)
    todo = [i for i in batches if load_chunk(chunk_path(work, i), key, len(rows[i]), widths) is None]
    bar.update(sum(len(rows[i]) for i in batches) - sum(len(rows[i]) for i in todo))
    if not todo:
        return 0
    loaded = iter(batch_loader(dataset, [rows[i] for i in todo], workers))
    try:
        for i in todo:
            generator = torch.Generator().manual_seed(batch_seed(seed, i))
            save_chunk(work, i, key, run_batch(model, next(loaded), protocol, flip, generator))
            bar.update(len(rows[i]))
    finally:
        del loaded  # stops the worker processes now, even when a batch failed
    return len(todo)


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
    workers: int | None = None,
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
        workers: DataLoader worker processes that decode the images (0: decode in this process; None:
            `default_workers`). The output does not depend on it, nor does the key.
        progress: show a progress bar on stderr (main process only).

    Returns:
        `EncodeResult` (the same in every process).

    Raises:
        ValueError: a bad protocol, batch size, worker count, output suffix, empty record list, skip or face row.
        WeightsError: a features protocol with weights that have no RDM.
        ImportError: a Parquet output without pyarrow.
    """
    out = Path(out_path)
    skip = dict(skip or {})
    _check_request(model, records, out, protocol, batch_size, skip, min_side, faces, workers)
    names = row_names(records, names)
    digest, settings = weights_digest(model), run_settings(model, protocol, seed, batch_size, flip, min_side)
    key = hash_run(digest, settings, records, names, skip, faces)
    found = existing_output(out)
    if found is not None and found[1].get("key") == key:
        if work_dir is None:  # chunks left by a run stopped between writing the output and removing them
            shutil.rmtree(default_work_dir(out, key), ignore_errors=True)
        return EncodeResult(out, key, names, found[0]["status"].tolist(), 0, reused=True)

    state = process_state()
    work = Path(work_dir) if work_dir is not None else default_work_dir(out, key)
    if state.is_main_process and work_dir is None:
        remove_stale_work_dirs(out, work)
    work.mkdir(parents=True, exist_ok=True)
    batches = math.ceil(len(records) / batch_size)
    mine = process_batches(state, batches)
    rows = [range(i * batch_size, min(len(records), (i + 1) * batch_size)) for i in range(batches)]
    cfg = model.config
    dataset = ItemDataset(records, cfg.image_size, cfg.preprocess.resize_mode, cfg.preprocess.resample, min_side,
                          skip)
    computed = 0
    failure: Exception | None = None
    try:
        with tqdm(total=sum(len(rows[i]) for i in mine), unit="img", desc=f"encode {protocol}", file=sys.stderr,
                  disable=not (progress and state.is_main_process)) as bar:
            computed = _encode_batches(
                model, dataset, mine, rows, work, key, protocol=protocol, seed=seed, flip=flip, bar=bar,
                workers=default_workers(state.num_processes) if workers is None else workers)
    except Exception as err:  # re-raised below, once every process has heard of it
        failure = err
    raise_if_any_failed(state, failure)
    status = written_by_main_process(state, lambda: merge_chunks(
        out, work, key, rows, array_widths(model, protocol), names, records, faces, metadata={
            "key": key, "weights": weights_name, "weights_digest": digest, "latentface_version": __version__,
            **settings}), out)
    return EncodeResult(out, key, names, status.tolist(), computed, reused=False)
