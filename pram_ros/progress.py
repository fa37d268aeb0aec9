"""Progress bars on long work, only where a person watches: on a terminal.

tqdm draws to stderr; piped into a log it would write thousands of bar updates. Bars are
shown only when stderr is a terminal, and never with TQDM_DISABLE set (tests, benchmarks).
"""

from __future__ import annotations

import os

from tqdm import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    """tqdm(iterable, **kwargs), drawn only on a terminal (tqdm's disable=None)."""
    disable = True if os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false") else None
    return tqdm(iterable, disable=disable, **kwargs)
