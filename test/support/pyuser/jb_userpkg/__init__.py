"""A user's own Python package, as a test sidecar allow-lists it (`--allow jb_userpkg`):
a plain (non-equinox) object whose methods traced TypeScript code calls."""

import equinox as eqx
import jax.numpy as jnp


class Scaler:
    def __init__(self, k: float):
        self.k = k

    def __call__(self, x):
        return x * self.k

    def split(self, x):
        """A dict and a tuple with a None: the output structures pycall carries."""
        return {"pos": jnp.maximum(x, 0), "neg": (jnp.minimum(x, 0), None)}

    def module(self, x):
        """Returns a Module: not something a traced call can return."""
        return eqx.nn.Identity()


def make_scaler(k: float) -> Scaler:
    return Scaler(k)
