"""Drive Debian's headless Chromium without a Python driver: load a page from disk, dump the DOM
after its scripts ran, or take a screenshot. Used by the report's browser test and for the demo
screenshot (``python tests/chromium.py PAGE.html OUT.png``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]


def find_chromium() -> str | None:
    return next((path for name in NAMES if (path := shutil.which(name))), None)


def _run(browser: str, args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def dump_dom(browser: str, page: Path) -> tuple[str, str]:
    """(DOM after load, Chromium's log) of a page on disk."""
    proc = _run(browser, ["--dump-dom", page.resolve().as_uri()])
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout, proc.stderr


def screenshot(browser: str, page: Path, out: Path, width: int = 1280, height: int = 2400) -> str:
    """Write a PNG of the page's first ``height`` pixels; returns Chromium's log."""
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = _run(browser, [f"--screenshot={out.resolve()}", f"--window-size={width},{height}", page.resolve().as_uri()])
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stderr


if __name__ == "__main__":
    browser = find_chromium()
    if browser is None:
        sys.exit("no chromium on PATH")
    screenshot(browser, Path(sys.argv[1]), Path(sys.argv[2]), height=int(sys.argv[3]) if len(sys.argv) > 3 else 2400)
    print(sys.argv[2])
