"""``pipeline report``: one self-contained HTML page (inline CSS, embedded PNG figures).

``gather`` reads the Delta tables and model artifacts into small pandas frames, ``plots`` draws
one figure per function, ``html`` renders the page and ``build`` puts the sections together.
"""
from pipeline.report.build import ReportSummary, build_report

__all__ = ["ReportSummary", "build_report"]
