"""Errors of the data layer: each message is one line naming the problem and the fix."""


class DataError(RuntimeError):
    """Raw or processed data is missing, corrupt, or cannot be obtained."""
