"""Resident memory of this process, read from /proc/self/status (Linux; None elsewhere).

``ru_maxrss`` is inherited across fork+exec and misleads; VmHWM is this process's own
high-water mark, and writing 5 to /proc/self/clear_refs resets it to the current RSS so
that the peak of one phase (one model, one call) can be read.
"""

from __future__ import annotations

import re
from pathlib import Path


def _proc_status_kb(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field_name}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def peak_rss_bytes() -> int | None:
    """This process's resident-memory high-water mark (VmHWM), or None off Linux."""
    kb = _proc_status_kb("VmHWM")
    return None if kb is None else kb * 1024


def current_rss_bytes() -> int | None:
    """This process's resident memory now (VmRSS), or None off Linux."""
    kb = _proc_status_kb("VmRSS")
    return None if kb is None else kb * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5) so a peak per model can be read."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False
