"""The config documents (interception, output, chunks, pipelines): validated registry and routes."""
