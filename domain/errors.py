"""Errors the domain raises for a person to read (an admin's mistake, a bad
argument). Handlers and the CLI show `str(error)`; nothing is changed."""


class DomainError(Exception):
    """A request that cannot be carried out, with a message for an admin."""
