"""#InsTag prompt templates (package data; see prompts/__init__.py)."""
