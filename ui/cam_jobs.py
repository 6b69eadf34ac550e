"""Long CAM computations off the page's script thread: progress, an estimate and a Stop button.

A Score-CAM of ResNet-50 is ~2,000 forward passes: minutes on a CPU. Run in the script thread it
greys the page out with no way back. Here it runs in a worker thread that reports
``progress(done, total)`` after every batch; the page polls the job from a fragment that reruns
twice a second, and "Stop" sets an event that the next progress report turns into
:class:`JobStopped`, so the engine unwinds (its hooks are removed in ``finally``) within one batch.

Jobs live in the session's state, one per (model, photo, layer, class, method) key; a job is
started only by the user's click, never by a model or photo change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

JOBS_KEY = "cam_jobs"
POLL_SECONDS = 0.5


class JobStopped(Exception):
    """Raised inside the worker by the progress report once the user pressed Stop."""


@dataclass
class CamJob:
    """One computation in a worker thread; its fields are written by the worker, read by the page."""

    key: str
    label: str
    total: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    result: Any = None
    error: BaseException | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def stopped(self) -> bool:
        """The user pressed Stop (the worker may still be finishing its batch: it is done for the page)."""
        return self.stop_event.is_set()

    @property
    def active(self) -> bool:
        """Running and not stopped: what the progress bar is drawn for."""
        return self.running and not self.stopped

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def eta_seconds(self) -> float | None:
        """Seconds left at the pace so far; None before the first report."""
        if not self.done or not self.total:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.done * max(0, self.total - self.done)

    def progress(self, done: int, total: int) -> None:
        """The engine's progress callback: record, and stop here when asked."""
        self.done, self.total = done, total
        if self.stop_event.is_set():
            raise JobStopped(f"{self.label} stopped")

    def stop(self) -> None:
        self.stop_event.set()


def session_jobs() -> dict[str, CamJob]:
    """This session's jobs by key."""
    return st.session_state.setdefault(JOBS_KEY, {})


def job_for(key: str) -> CamJob | None:
    return session_jobs().get(key)


def start_job(key: str, label: str, work: Callable[[Callable[[int, int], None]], Any]) -> CamJob:
    """Run ``work(progress)`` in a worker thread; any other running job of this session is stopped first.

    ``work`` must not call Streamlit (it runs outside the script thread); what it returns
    becomes ``job.result``, what it raises ``job.error``.
    """
    jobs = session_jobs()
    for other in jobs.values():
        if other.running:
            other.stop()
    job = CamJob(key, label)
    jobs[key] = job

    def run() -> None:
        try:
            job.result = work(job.progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the page, which shows it
            job.error = exc
        finally:
            job.finished = time.monotonic()

    threading.Thread(target=run, name=f"mushcam-{label}", daemon=True).start()
    return job


def forget_job(key: str) -> None:
    """Drop a finished job (its result has been stored elsewhere, or the user dismissed it)."""
    job = session_jobs().get(key)
    if job is not None and not job.running:
        del session_jobs()[key]


def show_progress(key: str, text: Callable[[CamJob], str], stop_key: str) -> None:
    """The running job ``key``'s bar (``text(job)`` beside it) and its Stop button; a full rerun
    once the job is over. The body of each page's progress fragment."""
    job = job_for(key)
    if job is None or not job.active:
        st.rerun()  # raises: the rest does not run
    st.progress(job.fraction, text=text(job))
    if st.button("Stop", key=stop_key, icon="⏹️"):
        job.stop()
        st.rerun()


def format_seconds(seconds: float) -> str:
    """'45 s', '3 min 20 s'."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"
