"""Optimizer state through equinox's serialiser: reads {"case", "ts_file",
"py_file"} on stdin. Runs the case with optax (optax_oracle.run's step), then

- loads the file TypeScript saved (32-byte fingerprint, then the leaves as
  equinox writes them) with `eqx.tree_deserialise_leaves` into
  `[params, optax_state]` as optax built them, and says whether every leaf
  has optax's dtype, shape and bits;
- writes `[params, optax_state]` with `eqx.tree_serialise_leaves` after the
  same fingerprint, for TypeScript to load.

Prints {"loaded_equal": bool, "leaves": n, "structure": str}.
"""

import json
import sys

import equinox as eqx
import jax
import numpy as np
import optax

from optax_oracle import build, tree


def main():
    req = json.load(sys.stdin)
    case = req["case"]
    opt = build(case["opt"])
    params = tree(case["params"])
    state = opt.init(params)

    @jax.jit
    def step(p, s, g):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    for g in case["grads"]:
        params, state = step(params, state, tree(g))
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
    print(json.dumps({"loaded_equal": bool(equal), "leaves": len(b), "structure": str(jax.tree.structure(state))}))


if __name__ == "__main__":
    main()
