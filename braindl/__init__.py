"""braindl: the library behind the neuroimaging deep-learning Snakemake workflow.

One module per stage of the chain (``synthetic``, ``inputs``, ...); workflow
scripts only unpack Snakemake's object and call one function here.
"""

__version__ = "0.1.0"


def _keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed memory for arrays up to 32 MiB instead of unmapping it.

    The stages allocate and free volume-sized arrays (a 1 mm float32 volume is 29 MiB) over and over. By
    default glibc maps each one afresh, and the kernel zeroes every page on its first touch: in a tiny
    preprocessing run that was a third of the jobs' minor page faults and a quarter of their system time
    (docs/benchmarks.md, 2026-12-04).
    Here freed blocks up to 32 MiB (glibc's largest threshold) stay in the heap, and the heap is not
    trimmed. Larger arrays are mapped as before. Settings the user's environment gives
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``) are left alone; nothing
    is done where the C library is not glibc. Returns whether the settings were applied.
    """
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library Python runs on (no ldconfig lookup per job)
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    # glibc's malloc.h: M_TRIM_THRESHOLD -1, M_TOP_PAD -2, M_MMAP_THRESHOLD -3 (mallopt returns 1 on success)
    return all(mallopt(p, v) == 1 for p, v in ((-3, 32 * 2**20), (-1, 2**31 - 1), (-2, 256 * 2**20)))


MALLOC_TUNED = _keep_freed_memory()
