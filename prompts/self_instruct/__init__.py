"""Self-Instruct prompt templates and built-in seed tasks (package data, no code)."""
