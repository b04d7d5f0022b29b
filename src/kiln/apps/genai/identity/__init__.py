"""genai identity domain."""
