"""genai policy domain."""
