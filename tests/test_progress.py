"""bench.progress: plain progress lines in logs (no TTY), throttled, with a resume-aware ETA."""

from __future__ import annotations

import io

import bench.progress as progress
from bench.progress import LogProgress, SilentProgress, progress_bar


def test_log_lines_are_throttled_and_the_last_one_always_shows(monkeypatch):
    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    log = LogProgress(every=2.5, stream=out)
    task = log.add_task("matrix demo", total=4)  # starts at t=0
    for _ in range(4):  # advances at t=1, 2, 3, 4
        log.advance(task)
    lines = out.getvalue().splitlines()
    # t=1 prints (first), t=2 is within 2.5 s of it, t=3 too, t=4 completes the task
    assert lines == ["matrix demo: 1/4 (25%) elapsed 0:01 ETA 0:03",
                     "matrix demo: 4/4 (100%) elapsed 0:04 ETA 0:00"]


def test_eta_counts_only_work_done_in_this_run(monkeypatch):
    clock = iter([0.0, 10.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    log = LogProgress(every=0, stream=out)
    task = log.add_task("train effb4", total=100, completed=50)  # half came from a resume file
    log.update(task, advance=5, description="train effb4 ep 6/10")
    # 5 steps in 10 s -> 2 s a step, 45 left -> 90 s; the resumed 50 do not shorten it
    assert out.getvalue().strip() == "train effb4 ep 6/10: 55/100 (55%) elapsed 0:10 ETA 1:30"


def test_progress_bar_picks_silent_under_quiet_and_lines_without_a_tty(monkeypatch):
    with progress_bar(quiet=True) as bar:
        assert isinstance(bar, SilentProgress)
    monkeypatch.setenv("ARTIFACT_BENCH_LOG_EVERY", "7")
    with progress_bar(quiet=False) as bar:  # pytest captures stderr: not a terminal
        assert isinstance(bar, LogProgress) and bar.every == 7.0
