"""genai catalog domain."""
