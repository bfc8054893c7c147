"""The report: the stores as one table per study (`frame`), what it says against the claim and
its cost (`claim`, `sections`), rendered as Markdown and HTML (`render`) with its `plots`."""
