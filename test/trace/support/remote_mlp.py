"""examples/remote-mlp.ts done in Python, the oracle test/examples.test.ts
checks the example against. Reads the example's `--json` report on stdin
and, independently of the bridge:

- builds the same two equinox MLPs from the same keys and runs the same scan
  with `lerax.utils.filter_scan` (both networks on each observation, then
  the target moves towards the online network as lerax's `polyak_average`
  documents it: `tau * online + (1 - tau) * target` on the inexact arrays);
- reads the two files the example wrote: the first 32 bytes must be lerax's
  fingerprint (sha256 of repr(jax.tree.structure)), the rest must load with
  `equinox.tree_deserialise_leaves` into exactly the networks computed here;
- evaluates the loaded networks on the probes, one `__call__` per row.

Prints one JSON line: the scan outputs, the probe outputs, and the checks."""

import hashlib
import io
import json
import sys

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lerax.utils as lu  # noqa: E402
import numpy as np  # noqa: E402

report = json.load(sys.stdin)
shape, tau = report["shape"], report["tau"]
xs = jnp.asarray(np.array(report["xs"], np.float32))
probes = jnp.asarray(np.array(report["probes"], np.float32))


def mlp(seed: int) -> eqx.nn.MLP:
    return eqx.nn.MLP(**shape, key=jax.random.PRNGKey(seed))


def polyak_average(online, target, tau):
    o, _ = eqx.partition(online, eqx.is_inexact_array)
    t, static = eqx.partition(target, eqx.is_inexact_array)
    return eqx.combine(jax.tree.map(lambda a, b: tau * a + (1 - tau) * b, o, t), static)


def step(carry, x):
    online, target = carry
    y, yt = online(x), target(x)
    return (online, polyak_average(online, target, tau)), (y, yt)


(online, target), (ys, yts) = eqx.filter_jit(lambda c, xs: lu.filter_scan(step, c, xs))((mlp(0), mlp(1)), xs)


def outputs(model) -> list:
    _, out = eqx.filter_jit(lambda m, xs: lu.filter_scan(lambda m, x: (m, m(x)), m, xs))(model, probes)
    return np.asarray(out).tolist()


def load(path: str, want) -> tuple[bool, bool, list]:
    data = open(path, "rb").read()
    fingerprint_ok = data[:32] == hashlib.sha256(repr(jax.tree.structure(want)).encode()).digest()
    loaded = eqx.tree_deserialise_leaves(io.BytesIO(data[32:]), mlp(42))
    return fingerprint_ok, bool(eqx.tree_equal(loaded, want)), outputs(loaded)


fp_online, eq_online, out_online = load(report["paths"]["online"], online)
fp_target, eq_target, out_target = load(report["paths"]["target"], target)
print(
    json.dumps(
        {
            "scanned": {"online": np.asarray(ys).tolist(), "target": np.asarray(yts).tolist()},
            "loaded": {"online": out_online, "target": out_target},
            "fingerprints": [fp_online, fp_target],
            "leaves_equal": [eq_online, eq_target],
        }
    )
)
