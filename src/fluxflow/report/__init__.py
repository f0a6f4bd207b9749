"""The report page of a training run (``fluxflow-report OUTPUT_PATH``): one self-contained HTML file."""

from .markdown import data_uri
from .page import chart_groups, report_html, write_report

__all__ = ["chart_groups", "data_uri", "report_html", "write_report"]
