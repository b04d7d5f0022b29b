"""Accounts of the media contract (`/api/auth/*`) on the core user store."""
