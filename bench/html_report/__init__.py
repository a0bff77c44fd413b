"""A run as one self-contained HTML page (``bench report``; written at the end of ``bench run``).

The page needs nothing but itself: CSS and a few lines of JavaScript inline, figures as data
URIs, a Content-Security-Policy that forbids every network request. It is rendered from the run
folder only (manifest, records through ``bench.report.views``, figures) and shows what exists in
a half-finished run and what is still pending.
"""

from bench.html_report.page import render_report, write_report

__all__ = ["render_report", "write_report"]
