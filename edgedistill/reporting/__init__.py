"""Reports from plain dicts: what a measurement ran on, Markdown tables, plots, the model card."""
