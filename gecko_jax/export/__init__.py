"""Getting a model out: a TF SavedModel for TF Serving / Vertex AI, a sentence-transformers
folder for the PyTorch world."""
