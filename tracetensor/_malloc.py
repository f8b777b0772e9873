"""glibc's malloc, set for what eager array code does: free and allocate the same large
temporaries every step.

glibc's defaults serve an allocation over 128 KiB by mmap, and hand the heap's free top back
to the kernel past a threshold that adapts only up to the largest block freed so far. An
eager training step then takes most of its temporaries' pages anew from the kernel every
step, each 4 KiB page zeroed and faulted in. On the development machine, with glibc's
defaults: 1,200-2,300 page faults in a small CNN's step (batch 32), 2,500 in the
512->1024->1024->10 MLP's (batch 256), which the thresholds below make 0.4-0.6x and 0.8x as
long (`python benchmarks/run.py overhead`). Small models (arrays under 128 KiB) see no
difference.

`tune()` sets, from the start, what glibc's own adaptation reaches at most: blocks up to
32 MiB come from the heap, and up to 64 MiB of its free top is kept for the next step.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # (glibc's malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
TRIM_THRESHOLD = 64 << 20  # twice it: what glibc's adaptation sets beside it

TUNED = False  # whether `tune` set them (see why not there)

# the options that set these thresholds (or fix them), as variables and as glibc tunables
_USER_SET = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_TUNABLES = tuple(f"glibc.malloc.{t}" for t in ("mmap_threshold", "trim_threshold", "top_pad", "mmap_max"))


def tune() -> bool:
    """Sets glibc malloc's mmap and trim thresholds (see the module's docstring), once per
    process. Not where the user set these thresholds already (MALLOC_MMAP_THRESHOLD_ and the
    like, or their glibc.malloc tunables: other malloc options, MALLOC_ARENA_MAX say, do not
    count), where TRACETENSOR_MALLOC=default asks for glibc's defaults, or under another C
    library. Returns whether they were set."""
    global TUNED
    if TUNED or os.environ.get("TRACETENSOR_MALLOC", "") == "default":
        return TUNED
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(k in os.environ for k in _USER_SET) or any(t in tunables for t in _TUNABLES):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # (glibc answers "glibc 2.x"; others raise or say nothing)
            return False
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (ValueError, OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # (setting either one stops glibc's adaptation: both are set)
    TUNED = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return TUNED


tune()  # (as tracetensor is imported: before its first large array)
