"""Input pipeline: vocabularies, formats, tasks and mixtures."""
