"""A package a test sidecar allows (`--allow relpkg`): `_side` records that it was imported."""

IMPORTED: list[str] = []


def double(x):
    return x * 2
