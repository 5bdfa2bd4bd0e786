"""Reports: one self-contained ``report.html`` for any run directory interp writes.

========  ===========================================================================
page      :func:`write_report`, :func:`render_report`, :func:`load_run` (the page)
findings  what a report says about a run, one function per kind (:func:`register`)
markup    the HTML pieces (escaping, tables, inline figures, the page frame)
========  ===========================================================================

Like :mod:`interp.plots` it takes results and never runs a model.
"""

from interp.report.page import REPORT_FILE, Run, load_run, render_report, write_report

__all__ = ["Run", "load_run", "render_report", "write_report", "REPORT_FILE"]
