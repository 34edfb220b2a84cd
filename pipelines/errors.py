"""Errors the CLI turns into one clear line and a non-zero exit."""


class InputError(ValueError):
    """Bad user input (config or data): the message names file, line and field."""


class RunFailed(RuntimeError):
    """The run completed and wrote its outputs, but a quality gate failed (e.g. failure ratio)."""
