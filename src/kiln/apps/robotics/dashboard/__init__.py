"""The dashboard's summary, trends and blockers over assets, jobs and outputs."""
