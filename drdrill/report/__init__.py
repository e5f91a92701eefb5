"""Reports stakeholders read: the timeline plot of a run and the DR test report (HTML + Markdown)."""
