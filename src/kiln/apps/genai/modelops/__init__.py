"""genai modelops domain."""
