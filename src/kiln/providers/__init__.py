"""Clients for outside AI services (one module each); they import only `kiln.core`."""
