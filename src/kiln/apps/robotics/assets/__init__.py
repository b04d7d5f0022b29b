"""Recordings as assets: registration, upload, directory scans and the native picker; tags;
indexing a recording's own index into its metadata."""
