"""Several processes on one run (``accelerate launch``): who encodes which batch, who writes the output, and how a
failure in one process reaches all of them (nobody is left waiting in a collective call)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentface.extract.output import load_output


def process_state() -> Any:
    """Accelerate's `PartialState` of this process (several processes under ``accelerate launch``; on a machine
    without GPUs they use the gloo backend on the CPU).

    Returns:
        The state (``process_index``, ``num_processes``, ``is_main_process``, ``device``, ...).
    """
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def process_batches(state: Any, batches: int) -> range:
    """The batches this process encodes: every ``num_processes``-th, from its own index.

    Args:
        state: `process_state`.
        batches: the run's number of batches.

    Returns:
        Batch indices, in order.
    """
    return range(state.process_index, batches, state.num_processes)


def raise_if_any_failed(state: Any, failure: Exception | None) -> None:
    """Tell every process whether any of them failed (a collective call: nobody is left waiting), then raise.

    Args:
        state: `process_state`.
        failure: this process's error, or None.

    Raises:
        Exception: `failure`, in the process that had it.
        RuntimeError: in the other processes, naming the first failure.
    """
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


def written_by_main_process(state: Any, write: Callable[[], np.ndarray], out: Path) -> np.ndarray:
    """Let the main process write the output while the others wait; every process then returns the statuses.

    Args:
        state: `process_state`.
        write: writes the output and returns the status of every row (run by the main process only).
        out: the output file (read back by the other processes).

    Returns:
        The status of every row.

    Raises:
        Exception: what `write` raised, in the main process (after the others were released).
        RuntimeError: in another process, when the main one wrote no readable output.
    """
    failure: Exception | None = None
    status = None
    if state.is_main_process:
        try:
            status = write()
        except Exception as err:  # re-raised below, once the other processes are released
            failure = err
    state.wait_for_everyone()
    if failure is not None:
        raise failure
    if status is None:
        try:
            status = load_output(out)[0]["status"]
        except (OSError, ValueError, KeyError) as err:
            raise RuntimeError(f"the main process did not write {out} (see its error)") from err
    return status
