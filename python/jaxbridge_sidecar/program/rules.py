"""The primitive table: every primitive a Program may name, the kinds of its
parameters (which decode.py checks) and its rule, which lowers it to
`jax.lax` calls (which evaluate.py runs, normally under `jax.jit`). A table
rather than `getattr(lax, name)`: a name from the wire reaches exactly these
functions and nothing else (see src/trace/README.md)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import jax
import numpy as np
from jax import lax
from jax.ad_checkpoint import checkpoint_name

from . import pycall
from .ir import ProgramError, Sub, output_avals


class Context(Protocol):
    """What a rule may ask of the evaluation it runs in: higher-order rules
    evaluate their sub-programs through it, `callback` sends its arguments
    to the run that is executing the program, `scan` runs a step function
    built for a given context (lax.scan, or chunking.py's chunks), and `link` / `linked` keep
    the linear map a vjp or linearize equation made for the equations that
    apply it."""

    def evaluate(self, sub: Sub, args: list[Any]) -> list[Any]: ...

    def callback(self, callback: int, arrays: list[Any], *, ordered: bool, partitioned: bool) -> None: ...

    def scan(self, body: Sub, step: Callable[[Any], Callable[[Any, Any], Any]], init: list[Any], xs: list[Any], p: dict[str, Any]) -> tuple[list[Any], list[Any]]: ...

    def link(self, link: int, value: Any) -> None: ...

    def linked(self, link: int) -> Any: ...


# A rule is called as JAX calls its lowering rules: context first, then the
# operands (traced arrays) and the decoded parameters.
Rule = Callable[[Context, list[Any], dict[str, Any]], list[Any]]


# --- the primitive table ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PrimRule:
    fn: Rule
    params: dict[str, str]
    arity: tuple[int, int | None]  # min, max inputs (None: any)


RULES: dict[str, PrimRule] = {}


def _rule(name: str, params: dict[str, str] | None = None, arity: tuple[int, int | None] = (1, 1)) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        RULES[name] = PrimRule(fn, params or {}, arity)
        return fn

    return deco


_UNARY = {
    "neg": lax.neg, "sign": lax.sign, "floor": lax.floor, "ceil": lax.ceil, "is_finite": lax.is_finite,
    "exp": lax.exp, "exp2": lax.exp2, "log": lax.log, "log1p": lax.log1p, "expm1": lax.expm1,
    "tanh": lax.tanh, "logistic": lax.logistic, "sin": lax.sin, "cos": lax.cos, "tan": lax.tan,
    "asin": lax.asin, "acos": lax.acos, "atan": lax.atan, "sinh": lax.sinh, "cosh": lax.cosh,
    "asinh": lax.asinh, "acosh": lax.acosh, "atanh": lax.atanh, "sqrt": lax.sqrt, "rsqrt": lax.rsqrt,
    "cbrt": lax.cbrt, "abs": lax.abs, "not": lax.bitwise_not, "erf": lax.erf, "erfc": lax.erfc,
    "erf_inv": lax.erf_inv, "lgamma": lax.lgamma, "digamma": lax.digamma, "square": lax.square,
    "population_count": lax.population_count, "clz": lax.clz, "real": lax.real, "imag": lax.imag,
    "conj": lax.conj,
}
_BINARY = {
    "add": lax.add, "sub": lax.sub, "mul": lax.mul, "div": lax.div, "rem": lax.rem, "pow": lax.pow,
    "max": lax.max, "min": lax.min, "atan2": lax.atan2, "nextafter": lax.nextafter,
    "and": lax.bitwise_and, "or": lax.bitwise_or, "xor": lax.bitwise_xor,
    "eq": lax.eq, "ne": lax.ne, "lt": lax.lt, "le": lax.le, "gt": lax.gt, "ge": lax.ge,
    "shift_left": lax.shift_left, "shift_right_logical": lax.shift_right_logical,
    "shift_right_arithmetic": lax.shift_right_arithmetic,
}
for _n, _f in _UNARY.items():
    RULES[_n] = PrimRule(lambda ctx, ins, p, f=_f: [f(ins[0])], {}, (1, 1))
for _n, _f in _BINARY.items():
    RULES[_n] = PrimRule(lambda ctx, ins, p, f=_f: [f(ins[0], ins[1])], {}, (2, 2))


@_rule("round", {"rounding_method": "enum_int:0|1"})
def _round(ctx: Context, ins: list[Any], p: dict[str, Any]) -> list[Any]:
    return [lax.round(ins[0], lax.RoundingMethod(p["rounding_method"]))]


@_rule("integer_pow", {"y": "int"})
def _integer_pow(ctx, ins, p):
    return [lax.integer_pow(ins[0], p["y"])]


@_rule("select_n", arity=(2, None))
def _select_n(ctx, ins, p):
    return [lax.select_n(ins[0], *ins[1:])]


@_rule("clamp", arity=(3, 3))
def _clamp(ctx, ins, p):
    return [lax.clamp(ins[0], ins[1], ins[2])]


@_rule("convert_element_type", {"new_dtype": "dtype", "weak_type": "bool"})
def _convert(ctx, ins, p):
    return [lax.convert_element_type(ins[0], p["new_dtype"])]


@_rule("bitcast_convert_type", {"new_dtype": "dtype"})
def _bitcast(ctx, ins, p):
    return [lax.bitcast_convert_type(ins[0], p["new_dtype"])]


@_rule("broadcast_in_dim", {"shape": "ints", "broadcast_dimensions": "ints"})
def _bid(ctx, ins, p):
    return [lax.broadcast_in_dim(ins[0], p["shape"], p["broadcast_dimensions"])]


@_rule("reshape", {"new_sizes": "ints", "dimensions": "null"})
def _reshape(ctx, ins, p):
    return [lax.reshape(ins[0], p["new_sizes"])]


@_rule("transpose", {"permutation": "ints"})
def _transpose(ctx, ins, p):
    return [lax.transpose(ins[0], p["permutation"])]


@_rule("squeeze", {"dimensions": "ints"})
def _squeeze(ctx, ins, p):
    return [lax.squeeze(ins[0], p["dimensions"])]


@_rule("concatenate", {"dimension": "uint"}, arity=(1, None))
def _concatenate(ctx, ins, p):
    return [lax.concatenate(ins, p["dimension"])]


@_rule("pad", {"padding_config": "pad_config"}, arity=(2, 2))
def _pad(ctx, ins, p):
    return [lax.pad(ins[0], ins[1], p["padding_config"])]


@_rule("slice", {"start_indices": "ints", "limit_indices": "ints", "strides": "ints?"})
def _slice(ctx, ins, p):
    return [lax.slice(ins[0], p["start_indices"], p["limit_indices"], p["strides"])]


@_rule("dynamic_slice", {"slice_sizes": "ints"}, arity=(1, None))
def _dynamic_slice(ctx, ins, p):
    return [lax.dynamic_slice(ins[0], ins[1:], p["slice_sizes"])]


@_rule("dynamic_update_slice", arity=(2, None))
def _dynamic_update_slice(ctx, ins, p):
    return [lax.dynamic_update_slice(ins[0], ins[1], ins[2:])]


@_rule("iota", {"dtype": "dtype", "shape": "ints", "dimension": "uint", "sharding": "null"}, arity=(0, 0))
def _iota(ctx, ins, p):
    return [lax.broadcasted_iota(p["dtype"], p["shape"], p["dimension"])]


@_rule("rev", {"dimensions": "ints"})
def _rev(ctx, ins, p):
    return [lax.rev(ins[0], p["dimensions"])]


for _n, _f in {
    "reduce_sum": lax.reduce_sum, "reduce_prod": lax.reduce_prod, "reduce_max": lax.reduce_max,
    "reduce_min": lax.reduce_min, "reduce_and": lax.reduce_and, "reduce_or": lax.reduce_or,
    "reduce_xor": lax.reduce_xor,
}.items():
    RULES[_n] = PrimRule(lambda ctx, ins, p, f=_f: [f(ins[0], p["axes"])], {"axes": "ints", "out_sharding": "null"}, (1, 1))

for _n, _f in {"argmax": lax.argmax, "argmin": lax.argmin}.items():
    def _arg(ctx, ins, p, f=_f, n=_n):
        if len(p["axes"]) != 1:
            raise ProgramError(f"{n}: axes must name exactly one axis, got {list(p['axes'])}")
        return [f(ins[0], p["axes"][0], p["index_dtype"])]

    RULES[_n] = PrimRule(_arg, {"axes": "ints", "index_dtype": "dtype"}, (1, 1))

for _n, _f in {"cumsum": lax.cumsum, "cumprod": lax.cumprod, "cummax": lax.cummax, "cummin": lax.cummin, "cumlogsumexp": lax.cumlogsumexp}.items():
    RULES[_n] = PrimRule(lambda ctx, ins, p, f=_f: [f(ins[0], p["axis"], p["reverse"])], {"axis": "uint", "reverse": "bool"}, (1, 1))


@_rule("dot_general", {"dimension_numbers": "dot_dims", "precision": "null", "preferred_element_type": "dtype?"}, arity=(2, 2))
def _dot_general(ctx, ins, p):
    return [lax.dot_general(ins[0], ins[1], p["dimension_numbers"], preferred_element_type=p["preferred_element_type"])]


_MODES = "enum:clip|fill|promise_in_bounds"


@_rule("gather", {"dimension_numbers": "gather_dims", "slice_sizes": "ints", "indices_are_sorted": "bool", "unique_indices": "bool", "mode": _MODES, "fill_value": "null"}, arity=(2, 2))
def _gather(ctx, ins, p):
    return [lax.gather(ins[0], ins[1], p["dimension_numbers"], p["slice_sizes"], indices_are_sorted=p["indices_are_sorted"], unique_indices=p["unique_indices"], mode=lax.GatherScatterMode.from_any(p["mode"]))]


for _n, _f in {"scatter": lax.scatter, "scatter_add": lax.scatter_add, "scatter_mul": lax.scatter_mul, "scatter_min": lax.scatter_min, "scatter_max": lax.scatter_max}.items():
    RULES[_n] = PrimRule(
        lambda ctx, ins, p, f=_f: [f(ins[0], ins[1], ins[2], p["dimension_numbers"], indices_are_sorted=p["indices_are_sorted"], unique_indices=p["unique_indices"], mode=lax.GatherScatterMode.from_any(p["mode"]))],
        {"dimension_numbers": "scatter_dims", "indices_are_sorted": "bool", "unique_indices": "bool", "mode": _MODES},
        (3, 3),
    )


@_rule("sort", {"dimension": "uint", "is_stable": "bool", "num_keys": "uint"}, arity=(1, None))
def _sort(ctx, ins, p):
    out = lax.sort(tuple(ins), p["dimension"], p["is_stable"], p["num_keys"])
    return list(out)


@_rule("reduce_precision", {"exponent_bits": "uint", "mantissa_bits": "uint"})
def _reduce_precision(ctx, ins, p):
    return [lax.reduce_precision(ins[0], p["exponent_bits"], p["mantissa_bits"])]


# --- random: keys are raw uint32 key data, exactly jax.random.key_data(...) ---

_IMPLS = "enum:threefry2x32"


def _wrap(k: Any, impl: str) -> Any:
    return jax.random.wrap_key_data(k, impl=impl)


@_rule("random_seed", {"impl": _IMPLS})
def _random_seed(ctx, ins, p):
    return [jax.random.key_data(jax.random.key(ins[0], impl=p["impl"]))]


@_rule("random_bits", {"impl": _IMPLS, "bit_width": "enum_int:8|16|32|64", "shape": "ints"})
def _random_bits(ctx, ins, p):
    dtype = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}[p["bit_width"]]
    return [jax.random.bits(_wrap(ins[0], p["impl"]), p["shape"], dtype)]


@_rule("random_split", {"impl": _IMPLS, "shape": "ints"})
def _random_split(ctx, ins, p):
    return [jax.random.key_data(jax.random.split(_wrap(ins[0], p["impl"]), p["shape"]))]


@_rule("random_fold_in", {"impl": _IMPLS}, arity=(2, 2))
def _random_fold_in(ctx, ins, p):
    return [jax.random.key_data(jax.random.fold_in(_wrap(ins[0], p["impl"]), ins[1]))]


# --- control flow ---------------------------------------------------------------------


@_rule("cond", {"branches": "programs"}, arity=(1, None))
def _cond(ctx, ins, p):
    index, ops = ins[0], ins[1:]
    branches = p["branches"]
    fns = [lambda *a, b=b: tuple(ctx.evaluate(b, list(a))) for b in branches]
    if np.dtype(index.dtype) == np.bool_:
        if len(fns) != 2:
            raise ProgramError(f"cond: a bool predicate needs exactly 2 branches, got {len(fns)}")
        out = lax.cond(index, fns[1], fns[0], *ops)
    else:
        out = lax.switch(index, fns, *ops)
    return list(out)


@_rule("scan", {"body": "program", "length": "uint", "reverse": "bool", "unroll": "uint", "num_consts": "uint", "num_carry": "uint", "_split_transpose": "bool"}, arity=(0, None))
def _scan(ctx, ins, p):
    nc, nk = p["num_consts"], p["num_carry"]
    if nc + nk > len(ins):
        raise ProgramError(f"scan: num_consts {nc} + num_carry {nk} exceed its {len(ins)} inputs")
    consts, init, xs = ins[:nc], ins[nc : nc + nk], ins[nc + nk :]
    body = p["body"]

    def step(c):  # the step, evaluated in rule context `c` (a chunked scan collects its callbacks)
        def f(carry, x):
            outs = c.evaluate(body, [*consts, *carry, *x])
            return list(outs[:nk]), list(outs[nk:])

        return f

    carry, ys = ctx.scan(body, step, list(init), list(xs), p)
    return [*carry, *ys]


@_rule("while", {"cond": "program", "body": "program", "cond_nconsts": "uint", "body_nconsts": "uint"}, arity=(0, None))
def _while(ctx, ins, p):
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    if cn + bn > len(ins):
        raise ProgramError(f"while: cond_nconsts {cn} + body_nconsts {bn} exceed its {len(ins)} inputs")
    cconsts, bconsts, init = ins[:cn], ins[cn : cn + bn], ins[cn + bn :]
    cond, body = p["cond"], p["body"]

    def cond_fn(carry):
        return ctx.evaluate(cond, [*cconsts, *carry])[0]

    def body_fn(carry):
        return list(ctx.evaluate(body, [*bconsts, *carry]))

    return list(lax.while_loop(cond_fn, body_fn, list(init)))


# --- callbacks: jax.debug.callback into the client (evaluate.py routes the events) -------


@_rule("callback", {"callback": "uint", "ordered": "bool", "partitioned": "bool", "chunk": "uint"}, arity=(0, None))
def _callback(ctx, ins, p):
    ctx.callback(p["callback"], ins, ordered=p["ordered"], partitioned=p["partitioned"])
    return []


# --- calls into remote Python objects (see pycall.py) -------------------------------------


@_rule("pycall", {"target": "pycall", "method": "method", "out": "pyout"}, arity=(0, None))
def _pycall(ctx, ins, p):
    target = p["target"]
    if len(ins) != target.arrays:
        raise ProgramError(f"pycall: its templates take {target.arrays} arrays, the equation has {len(ins)} inputs")
    node, outs = pycall.call(target, p["method"], ins, "pycall")
    if node != p["out"]:
        raise ProgramError(f"pycall: {target.cls.__qualname__}.{p['method']} returned {node}, the program declares {p['out']}")
    return outs


# --- transformations: JAX's own grad, jvp, vjp, vmap, checkpoint, custom rules -------------
#
# Each equation holds the transformed function as a sub-program. Its first
# `num_consts` inputs are the values the function closes over (the
# captures of its TypeScript trace): the rule builds a Python closure over
# them, exactly as a user would write the function in Python, so an
# enclosing transformation differentiates or batches through them as JAX
# does. Integer and bool values have float0 tangents and cotangents in JAX;
# those never cross the wire: equations carry tangents and cotangents of
# inexact values only, and the rules fill in float0 zeros where JAX needs
# them (decode.py checks every count against the body's types).


def inexact_dtype(dtype: Any) -> bool:
    """Floating or complex, bfloat16 included (numpy's own issubdtype does not know it)."""
    return bool(jax.numpy.issubdtype(dtype, jax.numpy.inexact))


def _inexact(x: Any) -> bool:
    return inexact_dtype(x.dtype)


def _float0(x: Any) -> Any:
    return np.zeros(np.shape(x), dtype=jax.dtypes.float0)


def _with_float0(like: Any, given: list[Any]) -> tuple[Any, ...]:
    """One tangent per value of `like`: the next of `given` for an inexact value, float0 zeros otherwise."""
    it = iter(given)
    return tuple(next(it) if _inexact(x) else _float0(x) for x in like)


def _closure(ctx, body: Sub, consts: list[Any], num_aux: int = 0) -> Callable[..., Any]:
    """The body as a Python function of its non-const inputs; with aux outputs it returns (outputs, aux) as has_aux wants."""

    def fn(*args: Any) -> Any:
        outs = tuple(ctx.evaluate(body, [*consts, *args]))
        if num_aux:
            return outs[: len(outs) - num_aux], outs[len(outs) - num_aux :]
        return outs

    return fn


def _scalar_closure(ctx, body: Sub, consts: list[Any], num_aux: int) -> Callable[..., Any]:
    """For grad: the body's single main output as a value, not a tuple."""
    fn = _closure(ctx, body, consts, num_aux)
    if num_aux:
        return lambda *a: (lambda r: (r[0][0], r[1]))(fn(*a))
    return lambda *a: fn(*a)[0]


_DIFF = {"body": "program", "num_consts": "uint", "argnums": "ints", "num_aux": "uint", "holomorphic": "bool"}


@_rule("grad", _DIFF, arity=(0, None))
def _grad(ctx, ins, p):
    nc, na = p["num_consts"], p["num_aux"]
    fn = _scalar_closure(ctx, p["body"], ins[:nc], na)
    out = jax.grad(fn, argnums=p["argnums"], has_aux=na > 0, holomorphic=p["holomorphic"])(*ins[nc:])
    grads, aux = out if na else (out, ())
    return [*grads, *aux]


@_rule("value_and_grad", _DIFF, arity=(0, None))
def _value_and_grad(ctx, ins, p):
    nc, na = p["num_consts"], p["num_aux"]
    fn = _scalar_closure(ctx, p["body"], ins[:nc], na)
    value, grads = jax.value_and_grad(fn, argnums=p["argnums"], has_aux=na > 0, holomorphic=p["holomorphic"])(*ins[nc:])
    value, aux = value if na else (value, ())
    return [value, *aux, *grads]


def _jac_rule(transform: Callable[..., Any], depth: int) -> Rule:
    def rule(ctx, ins, p):
        nc, na = p["num_consts"], p["num_aux"]
        fn = _closure(ctx, p["body"], ins[:nc], na)
        out = transform(fn, argnums=p["argnums"], has_aux=na > 0, holomorphic=p["holomorphic"])(*ins[nc:])
        jac, aux = out if na else (out, ())
        # Blocks nest [output][argnum] (hessian: [output][argnum][argnum]); flatten in that order.
        flat = list(jac)
        for _ in range(depth):
            flat = [b for row in flat for b in row]
        return [*flat, *aux]

    return rule


RULES["jacfwd"] = PrimRule(_jac_rule(jax.jacfwd, 1), dict(_DIFF), (0, None))
RULES["jacrev"] = PrimRule(_jac_rule(jax.jacrev, 1), dict(_DIFF), (0, None))
RULES["hessian"] = PrimRule(_jac_rule(jax.hessian, 2), dict(_DIFF), (0, None))


def _primals_and_rest(ins: list[Any], p: dict[str, Any]) -> tuple[list[Any], list[Any], list[Any]]:
    nc = p["num_consts"]
    n = len(p["body"].inputs) - nc
    return ins[:nc], ins[nc : nc + n], ins[nc + n :]


@_rule("jvp", {"body": "program", "num_consts": "uint", "num_aux": "uint"}, arity=(0, None))
def _jvp(ctx, ins, p):
    consts, primals, tangents = _primals_and_rest(ins, p)
    na = p["num_aux"]
    fn = _closure(ctx, p["body"], consts, na)
    out = jax.jvp(fn, tuple(primals), _with_float0(primals, tangents), has_aux=na > 0)
    outs, touts = out[0], out[1]
    aux = out[2] if na else ()
    return [*outs, *(t for t, o in zip(touts, outs) if _inexact(o)), *aux]


# vjp and linearize apply JAX's transformation where the program calls them,
# as jax.vjp / jax.linearize return at once; the linear map they return is
# kept in the evaluation under the equation's `link`, and vjp_call /
# linearize_call (given one output of that equation, so they come after it)
# apply it, as calling the returned function does in Python. The forward
# pass runs once.

_FORWARD = {"body": "program", "num_consts": "uint", "num_aux": "uint", "link": "uint"}


def _forward(transform: Callable[..., Any], ctx, ins, p) -> list[Any]:
    consts, primals, _ = _primals_and_rest(ins, p)
    na = p["num_aux"]
    fn = _closure(ctx, p["body"], consts, na)
    if transform is jax.vjp:
        r = jax.vjp(fn, *primals, has_aux=na > 0)
    else:
        r = jax.linearize(fn, *primals, has_aux=na > 0)
    outs, linear = r[0], r[1]
    aux = r[2] if na else ()
    ctx.link(p["link"], (linear, [_inexact(o) for o in outs], list(outs), list(primals)))
    return [*outs, *aux]


@_rule("vjp", _FORWARD, arity=(0, None))
def _vjp(ctx, ins, p):
    return _forward(jax.vjp, ctx, ins, p)


@_rule("linearize", _FORWARD, arity=(0, None))
def _linearize(ctx, ins, p):
    return _forward(jax.linearize, ctx, ins, p)


@_rule("vjp_call", {"link": "uint"}, arity=(1, None))
def _vjp_call(ctx, ins, p):
    f_vjp, _, outs, primals = ctx.linked(p["link"])
    grads = f_vjp(_with_float0(outs, ins[1:]))
    return [g for g, x in zip(grads, primals) if _inexact(x)]


@_rule("linearize_call", {"link": "uint"}, arity=(1, None))
def _linearize_call(ctx, ins, p):
    f_jvp, inexact_outs, _, primals = ctx.linked(p["link"])
    touts = f_jvp(*_with_float0(primals, ins[1:]))
    return [t for t, ok in zip(touts, inexact_outs) if ok]


@_rule("vmap", {"body": "program", "num_consts": "uint", "in_axes": "axes", "out_axes": "axes", "axis_size": "uint", "axis_name": "name?"}, arity=(0, None))
def _vmap(ctx, ins, p):
    nc = p["num_consts"]
    fn = _closure(ctx, p["body"], ins[:nc])
    out = jax.vmap(fn, in_axes=p["in_axes"], out_axes=p["out_axes"], axis_name=p["axis_name"], axis_size=p["axis_size"])(*ins[nc:])
    return list(out)


CHECKPOINT_POLICIES = (
    "everything_saveable", "nothing_saveable", "dots_saveable", "checkpoint_dots",
    "dots_with_no_batch_dims_saveable", "checkpoint_dots_with_no_batch_dims",
    "save_only_these_names", "save_any_names_but_these", "save_anything_except_these_names",
)
_NAMED_POLICIES = ("save_only_these_names", "save_any_names_but_these", "save_anything_except_these_names")


def _policy(name: str | None, names: tuple[str, ...]) -> Any:
    if name is None:
        if names:
            raise ProgramError("checkpoint: policy_names given without a policy that takes names")
        return None
    make = getattr(jax.checkpoint_policies, name)
    if name in _NAMED_POLICIES:
        return make(*names)
    if names:
        raise ProgramError(f"checkpoint: policy {name} takes no names, got {list(names)}")
    return make


@_rule("checkpoint", {"body": "program", "prevent_cse": "bool", "policy": "policy", "policy_names": "names"}, arity=(0, None))
def _checkpoint(ctx, ins, p):
    fn = _closure(ctx, p["body"], [])
    return list(jax.checkpoint(fn, prevent_cse=p["prevent_cse"], policy=_policy(p["policy"], p["policy_names"]))(*ins))


@_rule("checkpoint_name", {"name": "name"})
def _checkpoint_name(ctx, ins, p):
    return [checkpoint_name(ins[0], p["name"])]


@_rule("stop_gradient")
def _stop_gradient(ctx, ins, p):
    return [lax.stop_gradient(ins[0])]


@_rule("custom_jvp_call", {"call": "program", "jvp": "program", "num_call_consts": "uint", "num_jvp_consts": "uint"}, arity=(0, None))
def _custom_jvp_call(ctx, ins, p):
    a, b = p["num_call_consts"], p["num_jvp_consts"]
    call_consts, jvp_consts, args = ins[:a], ins[a : a + b], ins[a + b :]
    call, jvp = p["call"], p["jvp"]
    n_out = len(call.outputs)

    @jax.custom_jvp
    def f(*xs):
        return tuple(ctx.evaluate(call, [*call_consts, *xs]))

    @f.defjvp
    def f_jvp(primals, tangents):
        tans = [t for t, x in zip(tangents, primals) if _inexact(x)]
        outs = ctx.evaluate(jvp, [*jvp_consts, *primals, *tans])
        po = tuple(outs[:n_out])
        return po, _with_float0(po, list(outs[n_out:]))

    return list(f(*args))


@_rule("custom_vjp_call", {"call": "program", "fwd": "program", "bwd": "program", "num_call_consts": "uint", "num_fwd_consts": "uint", "num_bwd_consts": "uint"}, arity=(0, None))
def _custom_vjp_call(ctx, ins, p):
    a, b, c = p["num_call_consts"], p["num_fwd_consts"], p["num_bwd_consts"]
    call_consts, fwd_consts, bwd_consts, args = ins[:a], ins[a : a + b], ins[a + b : a + b + c], ins[a + b + c :]
    call, fwd, bwd = p["call"], p["fwd"], p["bwd"]
    n_out = len(call.outputs)
    inexact_args = [_inexact(x) for x in args]
    inexact_outs = [inexact_dtype(a.dtype) for a in output_avals(call)]

    @jax.custom_vjp
    def f(*xs):
        return tuple(ctx.evaluate(call, [*call_consts, *xs]))

    def f_fwd(*xs):
        outs = ctx.evaluate(fwd, [*fwd_consts, *xs])
        return tuple(outs[:n_out]), tuple(outs[n_out:])

    def f_bwd(res, cts):
        given = [ct for ct, ok in zip(cts, inexact_outs) if ok]
        grads = iter(ctx.evaluate(bwd, [*bwd_consts, *res, *given]))
        # Integer and bool arguments get no cotangent (None, as JAX allows).
        return tuple(next(grads) if ok else None for ok in inexact_args)

    f.defvjp(f_fwd, f_bwd)
    return list(f(*args))


# --- sharding and collectives ----------------------------------------------------------------
#
# The collectives name their mesh axes and are lowered with jax.lax's own
# functions, so they resolve in whatever context binds those names: a
# `shard_map` body here, or a vmap body with an axis name. Outside both, JAX
# raises its own unbound-axis error.


def _axis(names: tuple[str, ...]) -> Any:
    """An axis name as Python code writes it: a string for one axis, a tuple for several."""
    return names[0] if len(names) == 1 else names


@_rule("sharding_constraint", {"sharding": "sharding"})
def _sharding_constraint(ctx, ins, p):
    return [lax.with_sharding_constraint(ins[0], p["sharding"])]


@_rule("shard_map", {"body": "program", "mesh": "mesh", "in_specs": "specs", "out_specs": "specs", "check_vma": "bool"}, arity=(0, None))
def _shard_map(ctx, ins, p):
    body, in_specs, out_specs = p["body"], p["in_specs"], p["out_specs"]
    if len(in_specs) != len(ins) or len(out_specs) != len(body.outputs):
        raise ProgramError(f"shard_map: {len(in_specs)} in_specs for {len(ins)} inputs and {len(out_specs)} out_specs for {len(body.outputs)} outputs")

    def f(*args):
        return tuple(ctx.evaluate(body, list(args)))

    return list(jax.shard_map(f, mesh=p["mesh"], in_specs=in_specs, out_specs=out_specs, check_vma=p["check_vma"])(*ins))


# The reductions take several operands at once, as jax.lax's do with a
# pytree: one equation, one (tuple) all-reduce, the same HLO as Python's.
for _n, _f in {"psum": lax.psum, "pmean": lax.pmean, "pmax": lax.pmax, "pmin": lax.pmin}.items():
    RULES[_n] = PrimRule(lambda ctx, ins, p, f=_f: list(f(tuple(ins), _axis(p["axes"]))), {"axes": "axis_names"}, (1, None))


@_rule("all_gather", {"axis_name": "axis_names", "all_gather_dimension": "uint", "tiled": "bool", "to": "enum:varying|invarying"})
def _all_gather(ctx, ins, p):
    return [lax.all_gather(ins[0], _axis(p["axis_name"]), axis=p["all_gather_dimension"], tiled=p["tiled"], to=p["to"])]


@_rule("psum_scatter", {"axis_name": "axis_names", "scatter_dimension": "uint", "tiled": "bool"})
def _psum_scatter(ctx, ins, p):
    return [lax.psum_scatter(ins[0], _axis(p["axis_name"]), scatter_dimension=p["scatter_dimension"], tiled=p["tiled"])]


@_rule("ppermute", {"axis_name": "axis_names", "perm": "perm"})
def _ppermute(ctx, ins, p):
    return [lax.ppermute(ins[0], _axis(p["axis_name"]), list(p["perm"]))]


@_rule("all_to_all", {"axis_name": "axis_names", "split_axis": "uint", "concat_axis": "uint", "tiled": "bool"})
def _all_to_all(ctx, ins, p):
    return [lax.all_to_all(ins[0], _axis(p["axis_name"]), p["split_axis"], p["concat_axis"], tiled=p["tiled"])]


@_rule("axis_index", {"axis_name": "axis_names"}, arity=(0, 0))
def _axis_index(ctx, ins, p):
    return [lax.axis_index(_axis(p["axis_name"]))]
