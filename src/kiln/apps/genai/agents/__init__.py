"""Agent projects (authoring, validate, publish) and agent executions (the in-process engine)."""
