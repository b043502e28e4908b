"""Send a workflow script's logging and warnings to the rule's log file."""

from __future__ import annotations

import contextlib
import logging
import sys
import time

#: the last line of a job's log: seconds spent inside :func:`to_log` (the library call of the job), which
#: benchmarks/workflow.py sets against the job's wall time (process start and imports are the rest)
LIBRARY_SECONDS = "braindl library seconds:"


def progress(line: str) -> None:
    """A progress line on stdout (the terminal) and, through ``logging``, in the job's log."""
    print(line, flush=True)
    logging.getLogger("braindl").info(line)


@contextlib.contextmanager
def to_log(log_files):
    """Route ``logging``, ``warnings`` and stderr to the first log file, if any."""
    path = log_files[0] if len(log_files) else None
    if path is None:
        yield
        return
    with open(path, "w") as fh, contextlib.redirect_stderr(fh):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        t0 = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            print(f"{type(exc).__name__}: {exc}", file=fh)
            raise
        finally:
            root.removeHandler(handler)
            logging.captureWarnings(False)
            sys.stderr.flush()
            print(f"{LIBRARY_SECONDS} {time.perf_counter() - t0:.3f}", file=fh, flush=True)
