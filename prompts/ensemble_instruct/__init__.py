"""Ensemble-Instruct prompt templates (package data, no code)."""
