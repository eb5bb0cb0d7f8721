"""How a workflow job runs gtok: everything it prints goes to the job's log, and a user error is
one line there, not a traceback."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from gtok.errors import GtokError


@contextlib.contextmanager
def job_log(path: str | os.PathLike) -> Iterator[None]:
    """Send everything this process prints, from Python and from C libraries, to a workflow job's
    log; a `GtokError` ends the job with its one-line message there, not with a traceback.

    File descriptors 1 and 2 are pointed at the log for good, so output after the block (an
    unexpected exception's traceback, warnings at exit) lands there too.
    """
    log = open(path, "w", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    try:
        yield
    except GtokError as exc:
        print(f"error: {exc}", file=log)
        raise SystemExit(1) from None
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        log.close()
