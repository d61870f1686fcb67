"""COOLEST export (placeholder)."""


def export_coolest(*args, **kwargs):
    raise NotImplementedError
