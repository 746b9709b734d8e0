"""Smart Object Search: embeddings of region crops and inputs, an ANN index per app and
embedding model, similarity queries and bulk actions on their results."""
