"""Real inference servers for the remote adapters' tests and benchmark (run in their own venvs)."""
