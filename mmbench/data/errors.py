"""The one exception the data loaders raise for bad or missing input."""

from __future__ import annotations


class DataError(ValueError):
    """A data file is missing, unreadable or not what a loader expects.

    The message is one line that names the file (and key or shape where one is at fault) and says
    how to fix it.
    """
