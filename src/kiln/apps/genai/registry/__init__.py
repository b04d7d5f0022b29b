"""genai registry domain."""
