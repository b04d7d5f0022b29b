"""Upload and vault: the streamed multipart upload, listing and deleting media, the media files,
and the live status WebSocket."""
