"""The one error the bootstrap raises: the run cannot proceed, and nothing was changed."""


class BootstrapError(Exception):
    """A bootstrap that cannot proceed; nothing was changed."""
