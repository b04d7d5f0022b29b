"""genai content domain."""
