"""Stopping the workers of ``accelerate launch`` when their launcher dies.

``accelerate launch`` starts one worker process per rank and waits for them. When the launcher is killed (SIGKILL,
a lost terminal, an out-of-memory kill), nothing tells its workers: they run on, write the output and hold the
output lock. `watch_launcher` starts a daemon thread in a worker that polls its parent process id; when the parent
is gone (the worker was handed to another process), the worker exits at once with status `EXIT_LAUNCHER_GONE`
(143, as a process ended by SIGTERM). Finished chunks stay on disk, so a new run resumes from them.
"""

from __future__ import annotations

import os
import sys
import threading
import time

__all__ = ["EXIT_LAUNCHER_GONE", "POLL_SECONDS", "watch_launcher"]

EXIT_LAUNCHER_GONE = 143
"""Exit status of a worker whose launcher died (128 + SIGTERM)."""
POLL_SECONDS = 0.5
"""How often the watcher looks at the parent process id."""

_watching = threading.Event()


def watch_launcher(poll_seconds: float = POLL_SECONDS) -> None:
    """Exit this process with `EXIT_LAUNCHER_GONE` as soon as its parent process (the launcher) has died.

    Starts one daemon thread (a second call does nothing). The exit is immediate (`os._exit`): it works while the
    main thread waits in a collective operation whose other side is gone, and leaves no partial file (every file
    of ``encode`` is written atomically).
    """
    if _watching.is_set():
        return
    _watching.set()
    launcher = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != launcher:
                print(f"latentface: the launcher (process {launcher}) is gone; worker {os.getpid()} stops",
                      file=sys.stderr, flush=True)
                os._exit(EXIT_LAUNCHER_GONE)
            time.sleep(poll_seconds)

    threading.Thread(target=watch, name="latentface-launcher-watch", daemon=True).start()
