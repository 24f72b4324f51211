"""The run report: one self-contained HTML page and a Markdown summary."""
