"""Optimizer state through equinox's serialiser: reads a JSON list of
{"case", "ts_file", "py_file"} on stdin. Runs each case with optax
(optax_oracle.train), then

- loads the file TypeScript saved (32-byte fingerprint, then the leaves as
  equinox writes them) with `eqx.tree_deserialise_leaves` into
  `[params, optax_state]` as optax built them, and says whether every leaf
  has optax's dtype, shape and bits;
- writes `[params, optax_state]` with `eqx.tree_serialise_leaves` after the
  same fingerprint, for TypeScript to load.

Prints a list of {"loaded_equal": bool, "leaves": n, "structure": str}.
"""

import json
import sys

import equinox as eqx
import jax
import numpy as np

from optax_oracle import train


def check(req):
    params, state, _ = train(req["case"])
    ours = [params, state]

    with open(req["ts_file"], "rb") as f:
        fingerprint = f.read(32)
        loaded = eqx.tree_deserialise_leaves(f, jax.tree.map(np.zeros_like, ours))
    a = jax.tree.leaves(loaded)
    b = jax.tree.leaves(ours)
    equal = len(a) == len(b) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.asarray(x).shape == np.asarray(y).shape and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in zip(a, b)
    )
    with open(req["py_file"], "wb") as f:
        f.write(fingerprint)
        eqx.tree_serialise_leaves(f, ours)
    return {"loaded_equal": bool(equal), "leaves": len(b), "structure": str(jax.tree.structure(state))}


def main():
    print(json.dumps([check(r) for r in json.load(sys.stdin)]))


if __name__ == "__main__":
    main()
