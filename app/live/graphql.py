"""GraphQL for this domain (being written)."""
