"""Playgrounds: persisted, owner-scoped chat and knowledge sessions, streamed over SSE."""
