"""Overlapping the stages of a job: one stage produces on a background thread while the next
consumes, since numpy, numba (nogil), h5py and zlib release the GIL for most of their time."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator


def prefetched(items: Iterator, depth: int = 2) -> Iterator:
    """Items of an iterator produced on a background thread, at most `depth` ahead (errors are
    raised here, in order)."""
    done = object()
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((item, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            q.put((None, exc))
            return
        q.put((done, None))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)
