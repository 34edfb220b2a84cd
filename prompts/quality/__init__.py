"""Quality-scoring prompt templates (package data; see prompts/__init__.py)."""
