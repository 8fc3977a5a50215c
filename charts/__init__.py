"""Pictures for the study team, drawn with matplotlib (Agg, no display) from the plain
data of domain.summary. Imports domain/, never bot/."""

from charts.render import Rendered, overview_files, render_overview, render_summary, summary_files

__all__ = ["Rendered", "overview_files", "render_overview", "render_summary", "summary_files"]
