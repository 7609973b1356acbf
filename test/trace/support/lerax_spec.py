"""lerax utilities that PyPI's lerax 0.0.5 lacks, written from the specification
(shared/seed/lerax-utils.txt and DESIGN.md), for the oracles to share."""

import equinox as eqx
from jax import lax


def filter_cond(pred, true_fun, false_fun, *args):
    """Like lax.cond, with non-array leaves kept static; the static outputs of both branches must be equal."""
    dyn, stat = eqx.partition(args, eqx.is_array)
    statics = {}

    def wrap(fun, name):
        def g(d):
            out = fun(*eqx.combine(d, stat))
            od, os_ = eqx.partition(out, eqx.is_array)
            statics[name] = os_
            return od

        return g

    od = lax.cond(pred, wrap(true_fun, "t"), wrap(false_fun, "f"), dyn)
    if not eqx.tree_equal(statics["t"], statics["f"]):
        raise ValueError("The non-array leaves of the outputs of true_fun and false_fun must be identical.")
    return eqx.combine(od, statics["t"])
