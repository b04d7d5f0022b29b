"""genai runtime domain."""
