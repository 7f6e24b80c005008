"""Errors the store raises, with messages meant for the person running Klantbeeld."""


class StoreError(RuntimeError):
    """The store cannot do what was asked; the message says why and what to do."""


class StoreLockedError(StoreError):
    """The embedded database file is held by another process."""
