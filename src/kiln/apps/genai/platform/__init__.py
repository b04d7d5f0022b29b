"""genai platform domain."""
