"""genai system domain."""
