"""The HTTP embedding service (``gecko-serve``): Vertex AI and OpenAI request formats."""
