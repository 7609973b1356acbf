"""The optimizer oracle: optax itself. Reads {"x64": bool, "cases": [...], "split"?: bool} as
JSON on stdin; each case names an optimizer (built here from optax's own
functions), a parameter pytree and a sequence of gradient pytrees. For each
case one `jax.jit`-compiled step `(params, state, grads) -> (apply_updates(
params, updates), new_state, updates)` runs over the sequence, as the
TypeScript side runs its own jitted step (with "split": true,
`jax.jit(opt.update)` and `jax.jit(optax.apply_updates)` run one after the
other instead, as TypeScript's top-level calls do), and the last line printed is
{"results": [{"updates": [[leaf...] per step], "params": [leaf...],
"state": [leaf...], "state_structure": str}]} with every array as
{"dtype", "shape", "b64"} (its raw bytes), so the test compares bits.

Specs (the same JSON the TypeScript test builds its optimizers from):
  opt:   {"name": "adam" | "sgd" | ..., "lr": LR, "kw": {...}}
         {"name": "chain", "parts": [opt, ...]}
         {"name": "clip_by_global_norm", "max_norm": float}
  LR:    a number, or {"schedule": optax schedule name, "kw": {...}}
         ({"schedule": "join_schedules", "parts": [LR...], "boundaries": [...]})
  tree:  {"dict": {key: tree}} | {"list": [tree]} | array
Keyword values that optax documents as floats are passed as Python floats
(JSON cannot tell 1 from 1.0); the names in INT_KEYS stay ints.
"""

import base64
import json
import os
import sys

import jax

jax.config.update("jax_enable_x64", os.environ.get("ORACLE_X64", "1") == "1")
jax.config.update("jax_platforms", "cpu")

import numpy as np  # noqa: E402
import optax  # noqa: E402

INT_KEYS = {"transition_steps", "transition_begin", "decay_steps", "warmup_steps", "power"}
DTYPES = {"float32": np.float32, "float64": np.float64}


def to_py(kw):
    out = {}
    for k, v in kw.items():
        if isinstance(v, dict) and "schedule" in v:
            v = schedule(v)
        elif isinstance(v, int) and not isinstance(v, bool) and k not in INT_KEYS:
            v = float(v)
        out[k] = v
    return out


def schedule(spec):
    if isinstance(spec, (int, float)):
        return float(spec)
    name = spec["schedule"]
    if name == "join_schedules":
        return optax.join_schedules([schedule(p) for p in spec["parts"]], spec["boundaries"])
    return getattr(optax, name)(**to_py(spec["kw"]))


def build(spec):
    name = spec["name"]
    if name == "chain":
        return optax.chain(*(build(p) for p in spec["parts"]))
    if name == "clip_by_global_norm":
        return optax.clip_by_global_norm(float(spec["max_norm"]))
    return getattr(optax, name)(schedule(spec["lr"]), **to_py(spec.get("kw", {})))


def decode(a):
    raw = base64.b64decode(a["b64"])
    return jax.numpy.asarray(np.frombuffer(raw, dtype=DTYPES[a["dtype"]]).reshape(a["shape"]))


def tree(t):
    if isinstance(t, dict) and "dict" in t:
        return {k: tree(v) for k, v in t["dict"].items()}
    if isinstance(t, dict) and "list" in t:
        return [tree(v) for v in t["list"]]
    return decode(t)


def encode(x):
    x = np.asarray(x)
    return {"dtype": str(x.dtype), "shape": list(x.shape), "b64": base64.b64encode(np.ascontiguousarray(x).tobytes()).decode()}


def train(case, split=False):
    """The case's steps with optax: (final params, final state, [updates of each step])."""
    opt = build(case["opt"])
    params = tree(case["params"])
    state = opt.init(params)

    @jax.jit
    def fused(p, s, g):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, u

    update = jax.jit(opt.update)
    apply = jax.jit(optax.apply_updates)

    def step(p, s, g):
        if not split:
            return fused(p, s, g)
        u, s = update(g, s, p)
        return apply(p, u), s, u

    updates = []
    for g in case["grads"]:
        params, state, u = step(params, state, tree(g))
        updates.append(u)
    return params, state, updates


def run(case, split=False):
    params, state, updates = train(case, split)
    return {
        "updates": [[encode(x) for x in jax.tree.leaves(u)] for u in updates],
        "params": [encode(x) for x in jax.tree.leaves(params)],
        "state": [encode(x) for x in jax.tree.leaves(state)],
        "state_structure": str(jax.tree.structure(state)),
    }


def main():
    req = json.load(sys.stdin)
    print(json.dumps({"results": [run(c, req.get("split", False)) for c in req["cases"]]}))


if __name__ == "__main__":
    main()
