"""Programs traced in TypeScript, turned back into `jax.lax` calls.

A Program (see `src/trace/README.md`) is data: canonical JSON naming
primitives, their parameters and typed variables. `decode_program` checks it
completely (every primitive in the fixed table below, every parameter of the
expected kind, every variable defined before use) before anything runs;
`evaluate` interprets it with `jax.lax` calls, normally under `jax.jit`.
Nothing in a program can name a Python object: primitive names are keys of
`RULES`, dtypes come from the wire's dtype table, and parameters are ints,
bools, dtypes and sub-programs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import pycall
from ..allowlist import NotAllowed
from ..protocol import WireError, dtype_from_name, dtype_name

IR_VERSION = 1
MAX_PROGRAM_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64


def ProgramError(message: str) -> WireError:  # noqa: N802 - an error kind, not a function
    return WireError("ProgramError", message)


# --- the decoded program ------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Aval:
    dtype: np.dtype
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{dtype_name(self.dtype)}[{', '.join(map(str, self.shape))}]"


@dataclasses.dataclass(frozen=True, slots=True)
class Lit:
    value: Any  # a numpy scalar of the literal's dtype
    text: str

    @property
    def aval(self) -> Aval:
        return Aval(np.dtype(self.value.dtype), ())


@dataclasses.dataclass(frozen=True, slots=True)
class Eqn:
    prim: str
    inputs: tuple[int | Lit, ...]
    params: dict[str, Any]
    outputs: tuple[Aval, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Sub:
    inputs: tuple[Aval, ...]
    eqns: tuple[Eqn, ...]
    outputs: tuple[int | Lit, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Program(Sub):
    version: int
    x64: bool


# --- literals -----------------------------------------------------------------

_UINT_FOR_BITS = {16: np.uint16, 32: np.uint32, 64: np.uint64}


def _float_from_bits(text: str, dtype: np.dtype, where: str) -> Any:
    bits = dtype.itemsize * 8
    if not (isinstance(text, str) and text.startswith("0x") and len(text) == 2 + bits // 4):
        raise ProgramError(f"{where}: a {dtype_name(dtype)} literal must be '0x' and {bits // 4} hex digits, got {text!r}")
    try:
        n = int(text[2:], 16)
    except ValueError:
        raise ProgramError(f"{where}: bad hex literal {text!r}") from None
    return np.array(n, dtype=_UINT_FOR_BITS[bits]).view(dtype)[()]


def decode_literal(obj: Any, where: str) -> Lit:
    if not isinstance(obj, dict) or set(obj) != {"lit", "dtype"} or not isinstance(obj["lit"], str):
        raise ProgramError(f"{where}: an operand is a variable number or {{lit, dtype}}, got {obj!r}")
    dtype = _dtype(obj["dtype"], where)
    text = obj["lit"]
    kind = dtype.kind
    if kind == "b":
        if text not in ("true", "false"):
            raise ProgramError(f"{where}: a bool literal is 'true' or 'false', got {text!r}")
        value = np.bool_(text == "true")
    elif kind in "iu":
        try:
            n = int(text, 10)
        except ValueError:
            raise ProgramError(f"{where}: bad integer literal {text!r}") from None
        info = np.iinfo(dtype)
        if not info.min <= n <= info.max:
            raise ProgramError(f"{where}: {n} is out of range for {dtype_name(dtype)}")
        value = np.array(n, dtype=dtype)[()]
    elif kind == "c":
        part = np.dtype(np.float32 if dtype == np.complex64 else np.float64)
        pieces = text.split(",")
        if len(pieces) != 2:
            raise ProgramError(f"{where}: a complex literal is 're_bits,im_bits', got {text!r}")
        re, im = (_float_from_bits(p, part, where) for p in pieces)
        value = np.array(complex(re, im), dtype=dtype)[()]
    else:
        value = _float_from_bits(text, dtype, where)
    return Lit(value, text)


# --- parameter kinds ------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _dtype(x: Any, where: str) -> np.dtype:
    try:
        return dtype_from_name(x)
    except WireError as e:
        raise ProgramError(f"{where}: {e}") from None


def _ints(x: Any, where: str, name: str) -> tuple[int, ...]:
    if not isinstance(x, list) or not all(_is_int(v) for v in x):
        raise ProgramError(f"{where}: parameter {name} must be a list of integers, got {x!r}")
    return tuple(x)


def _kind_check(kind: str, value: Any, where: str, name: str, depth: int, server: Any = None) -> Any:
    """Validate and convert one parameter value. `server` resolves what a
    `pycall` names (PyRefs, module structures); without one, pycall is refused."""
    if kind == "int":
        if not _is_int(value):
            raise ProgramError(f"{where}: parameter {name} must be an integer, got {value!r}")
        return value
    if kind == "uint":
        if not _is_int(value) or value < 0:
            raise ProgramError(f"{where}: parameter {name} must be a non-negative integer, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ProgramError(f"{where}: parameter {name} must be a boolean, got {value!r}")
        return value
    if kind == "ints":
        return _ints(value, where, name)
    if kind == "ints?":
        return None if value is None else _ints(value, where, name)
    if kind == "dtype":
        return _dtype(value, where)
    if kind == "dtype?":
        return None if value is None else _dtype(value, where)
    if kind == "null":
        if value is not None:
            raise ProgramError(f"{where}: parameter {name} must be null, got {value!r}")
        return None
    if kind.startswith("enum:"):
        choices = kind[5:].split("|")
        if value not in choices:
            raise ProgramError(f"{where}: parameter {name} must be one of {choices}, got {value!r}")
        return value
    if kind == "dot_dims":
        ok = isinstance(value, list) and len(value) == 2 and all(isinstance(p, list) and len(p) == 2 for p in value)
        if not ok:
            raise ProgramError(f"{where}: dimension_numbers must be [[lhs_contract, rhs_contract], [lhs_batch, rhs_batch]], got {value!r}")
        (lc, rc), (lb, rb) = value
        return ((_ints(lc, where, name), _ints(rc, where, name)), (_ints(lb, where, name), _ints(rb, where, name)))
    if kind == "pad_config":
        if not isinstance(value, list) or not all(isinstance(c, list) and len(c) == 3 and all(_is_int(v) for v in c) for c in value):
            raise ProgramError(f"{where}: padding_config must be a list of [lo, hi, interior], got {value!r}")
        return tuple(tuple(c) for c in value)
    if kind == "gather_dims":
        fields = ("offset_dims", "collapsed_slice_dims", "start_index_map", "operand_batching_dims", "start_indices_batching_dims")
        if not isinstance(value, dict) or set(value) != set(fields):
            raise ProgramError(f"{where}: gather dimension_numbers must have exactly the fields {fields}")
        return lax.GatherDimensionNumbers(**{f: _ints(value[f], where, f) for f in fields})
    if kind == "scatter_dims":
        fields = ("update_window_dims", "inserted_window_dims", "scatter_dims_to_operand_dims", "operand_batching_dims", "scatter_indices_batching_dims")
        if not isinstance(value, dict) or set(value) != set(fields):
            raise ProgramError(f"{where}: scatter dimension_numbers must have exactly the fields {fields}")
        return lax.ScatterDimensionNumbers(**{f: _ints(value[f], where, f) for f in fields})
    if kind == "program":
        return _decode_sub(value, f"{where}.{name}", depth + 1, server)
    if kind == "programs":
        if not isinstance(value, list) or not value:
            raise ProgramError(f"{where}: parameter {name} must be a non-empty list of programs")
        return tuple(_decode_sub(v, f"{where}.{name}[{i}]", depth + 1, server) for i, v in enumerate(value))
    if kind == "pycall":
        if server is None:
            raise NotAllowed(f"{where}: pycall names Python objects, which only a running sidecar can resolve")
        if not isinstance(value, dict) or set(value) != {"object", "args"}:
            raise ProgramError(f"{where}: parameter {name} is {{object, args}}: the target template and the argument templates")
        return pycall.Target(server, value["object"], value["args"], f"{where}.{name}")
    if kind == "method":
        return pycall.check_method_name(value, where)
    if kind == "pyout":
        return pycall.check_output_node(value, f"{where}.{name}")
    raise AssertionError(kind)


# --- the primitive table ------------------------------------------------------------

Rule = Callable[[list[Any], dict[str, Any]], list[Any]]


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
    RULES[_n] = PrimRule(lambda ins, p, f=_f: [f(ins[0])], {}, (1, 1))
for _n, _f in _BINARY.items():
    RULES[_n] = PrimRule(lambda ins, p, f=_f: [f(ins[0], ins[1])], {}, (2, 2))


@_rule("round", {"rounding_method": "enum_int:0|1"})
def _round(ins: list[Any], p: dict[str, Any]) -> list[Any]:
    return [lax.round(ins[0], lax.RoundingMethod(p["rounding_method"]))]


@_rule("integer_pow", {"y": "int"})
def _integer_pow(ins, p):
    return [lax.integer_pow(ins[0], p["y"])]


@_rule("select_n", arity=(2, None))
def _select_n(ins, p):
    return [lax.select_n(ins[0], *ins[1:])]


@_rule("clamp", arity=(3, 3))
def _clamp(ins, p):
    return [lax.clamp(ins[0], ins[1], ins[2])]


@_rule("convert_element_type", {"new_dtype": "dtype", "weak_type": "bool"})
def _convert(ins, p):
    return [lax.convert_element_type(ins[0], p["new_dtype"])]


@_rule("bitcast_convert_type", {"new_dtype": "dtype"})
def _bitcast(ins, p):
    return [lax.bitcast_convert_type(ins[0], p["new_dtype"])]


@_rule("broadcast_in_dim", {"shape": "ints", "broadcast_dimensions": "ints"})
def _bid(ins, p):
    return [lax.broadcast_in_dim(ins[0], p["shape"], p["broadcast_dimensions"])]


@_rule("reshape", {"new_sizes": "ints", "dimensions": "null"})
def _reshape(ins, p):
    return [lax.reshape(ins[0], p["new_sizes"])]


@_rule("transpose", {"permutation": "ints"})
def _transpose(ins, p):
    return [lax.transpose(ins[0], p["permutation"])]


@_rule("squeeze", {"dimensions": "ints"})
def _squeeze(ins, p):
    return [lax.squeeze(ins[0], p["dimensions"])]


@_rule("concatenate", {"dimension": "uint"}, arity=(1, None))
def _concatenate(ins, p):
    return [lax.concatenate(ins, p["dimension"])]


@_rule("pad", {"padding_config": "pad_config"}, arity=(2, 2))
def _pad(ins, p):
    return [lax.pad(ins[0], ins[1], p["padding_config"])]


@_rule("slice", {"start_indices": "ints", "limit_indices": "ints", "strides": "ints?"})
def _slice(ins, p):
    return [lax.slice(ins[0], p["start_indices"], p["limit_indices"], p["strides"])]


@_rule("dynamic_slice", {"slice_sizes": "ints"}, arity=(1, None))
def _dynamic_slice(ins, p):
    return [lax.dynamic_slice(ins[0], ins[1:], p["slice_sizes"])]


@_rule("dynamic_update_slice", arity=(2, None))
def _dynamic_update_slice(ins, p):
    return [lax.dynamic_update_slice(ins[0], ins[1], ins[2:])]


@_rule("iota", {"dtype": "dtype", "shape": "ints", "dimension": "uint", "sharding": "null"}, arity=(0, 0))
def _iota(ins, p):
    return [lax.broadcasted_iota(p["dtype"], p["shape"], p["dimension"])]


@_rule("rev", {"dimensions": "ints"})
def _rev(ins, p):
    return [lax.rev(ins[0], p["dimensions"])]


for _n, _f in {
    "reduce_sum": lax.reduce_sum, "reduce_prod": lax.reduce_prod, "reduce_max": lax.reduce_max,
    "reduce_min": lax.reduce_min, "reduce_and": lax.reduce_and, "reduce_or": lax.reduce_or,
    "reduce_xor": lax.reduce_xor,
}.items():
    RULES[_n] = PrimRule(lambda ins, p, f=_f: [f(ins[0], p["axes"])], {"axes": "ints", "out_sharding": "null"}, (1, 1))

for _n, _f in {"argmax": lax.argmax, "argmin": lax.argmin}.items():
    def _arg(ins, p, f=_f, n=_n):
        if len(p["axes"]) != 1:
            raise ProgramError(f"{n}: axes must name exactly one axis, got {list(p['axes'])}")
        return [f(ins[0], p["axes"][0], p["index_dtype"])]

    RULES[_n] = PrimRule(_arg, {"axes": "ints", "index_dtype": "dtype"}, (1, 1))

for _n, _f in {"cumsum": lax.cumsum, "cumprod": lax.cumprod, "cummax": lax.cummax, "cummin": lax.cummin, "cumlogsumexp": lax.cumlogsumexp}.items():
    RULES[_n] = PrimRule(lambda ins, p, f=_f: [f(ins[0], p["axis"], p["reverse"])], {"axis": "uint", "reverse": "bool"}, (1, 1))


@_rule("dot_general", {"dimension_numbers": "dot_dims", "precision": "null", "preferred_element_type": "dtype?"}, arity=(2, 2))
def _dot_general(ins, p):
    return [lax.dot_general(ins[0], ins[1], p["dimension_numbers"], preferred_element_type=p["preferred_element_type"])]


_MODES = "enum:clip|fill|promise_in_bounds"


@_rule("gather", {"dimension_numbers": "gather_dims", "slice_sizes": "ints", "indices_are_sorted": "bool", "unique_indices": "bool", "mode": _MODES, "fill_value": "null"}, arity=(2, 2))
def _gather(ins, p):
    return [lax.gather(ins[0], ins[1], p["dimension_numbers"], p["slice_sizes"], indices_are_sorted=p["indices_are_sorted"], unique_indices=p["unique_indices"], mode=lax.GatherScatterMode.from_any(p["mode"]))]


for _n, _f in {"scatter": lax.scatter, "scatter_add": lax.scatter_add, "scatter_mul": lax.scatter_mul, "scatter_min": lax.scatter_min, "scatter_max": lax.scatter_max}.items():
    RULES[_n] = PrimRule(
        lambda ins, p, f=_f: [f(ins[0], ins[1], ins[2], p["dimension_numbers"], indices_are_sorted=p["indices_are_sorted"], unique_indices=p["unique_indices"], mode=lax.GatherScatterMode.from_any(p["mode"]))],
        {"dimension_numbers": "scatter_dims", "indices_are_sorted": "bool", "unique_indices": "bool", "mode": _MODES},
        (3, 3),
    )


@_rule("sort", {"dimension": "uint", "is_stable": "bool", "num_keys": "uint"}, arity=(1, None))
def _sort(ins, p):
    out = lax.sort(tuple(ins), p["dimension"], p["is_stable"], p["num_keys"])
    return list(out)


@_rule("reduce_precision", {"exponent_bits": "uint", "mantissa_bits": "uint"})
def _reduce_precision(ins, p):
    return [lax.reduce_precision(ins[0], p["exponent_bits"], p["mantissa_bits"])]


# --- random: keys are raw uint32 key data, exactly jax.random.key_data(...) ---

_IMPLS = "enum:threefry2x32"


def _wrap(k: Any, impl: str) -> Any:
    return jax.random.wrap_key_data(k, impl=impl)


@_rule("random_seed", {"impl": _IMPLS})
def _random_seed(ins, p):
    return [jax.random.key_data(jax.random.key(ins[0], impl=p["impl"]))]


@_rule("random_bits", {"impl": _IMPLS, "bit_width": "enum_int:8|16|32|64", "shape": "ints"})
def _random_bits(ins, p):
    dtype = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}[p["bit_width"]]
    return [jax.random.bits(_wrap(ins[0], p["impl"]), p["shape"], dtype)]


@_rule("random_split", {"impl": _IMPLS, "shape": "ints"})
def _random_split(ins, p):
    return [jax.random.key_data(jax.random.split(_wrap(ins[0], p["impl"]), p["shape"]))]


@_rule("random_fold_in", {"impl": _IMPLS}, arity=(2, 2))
def _random_fold_in(ins, p):
    return [jax.random.key_data(jax.random.fold_in(_wrap(ins[0], p["impl"]), ins[1]))]


# --- control flow ---------------------------------------------------------------------


@_rule("cond", {"branches": "programs"}, arity=(1, None))
def _cond(ins, p):
    index, ops = ins[0], ins[1:]
    branches = p["branches"]
    fns = [lambda *a, b=b: tuple(evaluate(b, list(a))) for b in branches]
    if np.dtype(index.dtype) == np.bool_:
        if len(fns) != 2:
            raise ProgramError(f"cond: a bool predicate needs exactly 2 branches, got {len(fns)}")
        out = lax.cond(index, fns[1], fns[0], *ops)
    else:
        out = lax.switch(index, fns, *ops)
    return list(out)


@_rule("scan", {"body": "program", "length": "uint", "reverse": "bool", "unroll": "uint", "num_consts": "uint", "num_carry": "uint", "_split_transpose": "bool"}, arity=(0, None))
def _scan(ins, p):
    nc, nk = p["num_consts"], p["num_carry"]
    if nc + nk > len(ins):
        raise ProgramError(f"scan: num_consts {nc} + num_carry {nk} exceed its {len(ins)} inputs")
    consts, init, xs = ins[:nc], ins[nc : nc + nk], ins[nc + nk :]
    body = p["body"]

    def f(carry, x):
        outs = evaluate(body, [*consts, *carry, *x])
        return list(outs[:nk]), list(outs[nk:])

    carry, ys = lax.scan(f, list(init), list(xs), length=p["length"], reverse=p["reverse"], unroll=p["unroll"], _split_transpose=p["_split_transpose"])
    return [*carry, *ys]


@_rule("while", {"cond": "program", "body": "program", "cond_nconsts": "uint", "body_nconsts": "uint"}, arity=(0, None))
def _while(ins, p):
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    if cn + bn > len(ins):
        raise ProgramError(f"while: cond_nconsts {cn} + body_nconsts {bn} exceed its {len(ins)} inputs")
    cconsts, bconsts, init = ins[:cn], ins[cn : cn + bn], ins[cn + bn :]
    cond, body = p["cond"], p["body"]

    def cond_fn(carry):
        return evaluate(cond, [*cconsts, *carry])[0]

    def body_fn(carry):
        return list(evaluate(body, [*bconsts, *carry]))

    return list(lax.while_loop(cond_fn, body_fn, list(init)))


# --- callbacks: jax.debug.callback into the client ------------------------------------


class CallbackSink:
    """Where `callback` equations deliver: `current` is the sink of the run now
    executing (one run with callbacks executes at a time, see server.py). A
    compiled program is cached and reused across calls, so its host function
    looks the sink up at event time rather than capturing one."""

    current: Any = None


def _host_callback(cb_id: int) -> Callable[..., None]:
    def host_fn(*arrays: Any) -> None:
        sink = CallbackSink.current
        if sink is None:
            return  # run outside a callback context (a direct lower() call): dropped
        sink.emit(cb_id, [np.asarray(a) for a in arrays])

    return host_fn


@_rule("callback", {"callback": "uint", "ordered": "bool", "partitioned": "bool"}, arity=(0, None))
def _callback(ins, p):
    jax.debug.callback(_host_callback(p["callback"]), *ins, ordered=p["ordered"], partitioned=p["partitioned"])
    return []


# --- calls into remote Python objects (see pycall.py) -------------------------------------


@_rule("pycall", {"target": "pycall", "method": "method", "out": "pyout"}, arity=(0, None))
def _pycall(ins, p):
    target = p["target"]
    if len(ins) != target.arrays:
        raise ProgramError(f"pycall: its templates take {target.arrays} arrays, the equation has {len(ins)} inputs")
    node, outs = pycall.call(target, p["method"], ins, "pycall")
    if node != p["out"]:
        raise ProgramError(f"pycall: {target.cls.__qualname__}.{p['method']} returned {node}, the program declares {p['out']}")
    return outs


def has_callbacks(sub: Sub) -> bool:
    """Whether a program (or any of its sub-programs) holds a `callback` equation."""
    for e in sub.eqns:
        if e.prim == "callback":
            return True
        for v in e.params.values():
            if isinstance(v, Sub) and has_callbacks(v):
                return True
            if isinstance(v, tuple) and any(isinstance(b, Sub) and has_callbacks(b) for b in v):
                return True
    return False


def _int_enum_check(kind: str, value: Any, where: str, name: str) -> int:
    choices = [int(c) for c in kind[len("enum_int:") :].split("|")]
    if not _is_int(value) or value not in choices:
        raise ProgramError(f"{where}: parameter {name} must be one of {choices}, got {value!r}")
    return value


# --- decoding -----------------------------------------------------------------------------


def _decode_aval(obj: Any, where: str) -> Aval:
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape"}:
        raise ProgramError(f"{where}: a type is {{dtype, shape}}, got {obj!r}")
    shape = obj["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise ProgramError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    return Aval(_dtype(obj["dtype"], where), tuple(shape))


def _decode_operand(obj: Any, defined: int, where: str) -> int | Lit:
    if _is_int(obj):
        if not 0 <= obj < defined:
            raise ProgramError(f"{where}: variable {obj} is used before it is defined (only 0..{defined - 1} exist here)")
        return obj
    return decode_literal(obj, where)


def _decode_sub(obj: Any, where: str, depth: int, server: Any = None) -> Sub:
    if depth > MAX_DEPTH:
        raise ProgramError(f"{where}: programs nest deeper than {MAX_DEPTH}")
    if not isinstance(obj, dict) or not {"inputs", "eqns", "outputs"} <= set(obj):
        raise ProgramError(f"{where}: a program is {{inputs, eqns, outputs}}")
    extra = set(obj) - {"inputs", "eqns", "outputs", "version", "x64"}
    if extra:
        raise ProgramError(f"{where}: unknown program fields {sorted(extra)}")
    if not isinstance(obj["inputs"], list) or not isinstance(obj["eqns"], list) or not isinstance(obj["outputs"], list):
        raise ProgramError(f"{where}: inputs, eqns and outputs must be lists")
    inputs = tuple(_decode_aval(a, f"{where}.inputs[{i}]") for i, a in enumerate(obj["inputs"]))
    defined = len(inputs)
    eqns = []
    for k, e in enumerate(obj["eqns"]):
        ew = f"{where}.eqns[{k}]"
        if not isinstance(e, dict) or set(e) != {"prim", "inputs", "params", "outputs"}:
            raise ProgramError(f"{ew}: an equation is {{prim, inputs, params, outputs}}")
        prim = e["prim"]
        rule = RULES.get(prim) if isinstance(prim, str) else None
        if rule is None:
            raise NotAllowed(f"{ew}: primitive {prim!r} is not one this sidecar lowers (allowed: {', '.join(sorted(RULES))})")
        ew = f"{ew} ({prim})"
        if not isinstance(e["inputs"], list) or not isinstance(e["outputs"], list) or not isinstance(e["params"], dict):
            raise ProgramError(f"{ew}: inputs and outputs must be lists, params a map")
        lo, hi = rule.arity
        n = len(e["inputs"])
        if n < lo or (hi is not None and n > hi):
            raise ProgramError(f"{ew}: takes {lo}{'' if hi == lo else '..' + ('' if hi is None else str(hi))} inputs, got {n}")
        ins = tuple(_decode_operand(o, defined, f"{ew}.inputs[{i}]") for i, o in enumerate(e["inputs"]))
        given = set(e["params"])
        if given != set(rule.params):
            missing = sorted(set(rule.params) - given)
            unknown = sorted(given - set(rule.params))
            raise ProgramError(f"{ew}: parameters must be exactly {sorted(rule.params)}" + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))
        params = {}
        for name, kind in rule.params.items():
            v = e["params"][name]
            params[name] = _int_enum_check(kind, v, ew, name) if kind.startswith("enum_int:") else _kind_check(kind, v, ew, name, depth, server)
        outs = tuple(_decode_aval(a, f"{ew}.outputs[{i}]") for i, a in enumerate(e["outputs"]))
        defined += len(outs)
        eqns.append(Eqn(prim, ins, params, outs))
    outputs = tuple(_decode_operand(o, defined, f"{where}.outputs[{i}]") for i, o in enumerate(obj["outputs"]))
    return Sub(inputs, tuple(eqns), outputs)


def decode_program(data: bytes | bytearray | memoryview | str, server: Any = None) -> Program:
    """Parse and check a program's canonical JSON. Raises WireError('ProgramError') or NotAllowed."""
    raw = bytes(data) if not isinstance(data, str) else data.encode()
    if len(raw) > MAX_PROGRAM_BYTES:
        raise ProgramError(f"program of {len(raw)} bytes exceeds the limit of {MAX_PROGRAM_BYTES}")
    try:
        obj = json.loads(raw, parse_float=_no_floats, parse_constant=_no_floats)
    except WireError:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise ProgramError(f"program is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProgramError("a program is a JSON object")
    if obj.get("version") != IR_VERSION:
        raise ProgramError(f"program IR version {obj.get('version')!r}; this sidecar reads version {IR_VERSION}")
    if not isinstance(obj.get("x64"), bool):
        raise ProgramError("program needs `x64`: the jax_enable_x64 mode it was traced for")
    sub = _decode_sub(obj, "program", 0, server)
    return Program(sub.inputs, sub.eqns, sub.outputs, IR_VERSION, obj["x64"])



def _no_floats(text: str) -> Any:
    raise ProgramError(f"programs carry no JSON floats (literal values are exact strings); found {text}")


def program_hash(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


# --- evaluation ---------------------------------------------------------------------------


def _value(o: int | Lit, env: list[Any]) -> Any:
    return env[o] if isinstance(o, int) else o.value


def evaluate(sub: Sub, args: list[Any]) -> list[Any]:
    """Interpret a program with lax calls (under jit this traces once). Each
    result's shape and dtype is checked against what the tracer declared."""
    if len(args) != len(sub.inputs):
        raise ProgramError(f"program takes {len(sub.inputs)} inputs, got {len(args)}")
    env = list(args)
    for k, e in enumerate(sub.eqns):
        ins = [_value(o, env) for o in e.inputs]
        outs = RULES[e.prim].fn(ins, e.params)
        if len(outs) != len(e.outputs):
            raise ProgramError(f"eqns[{k}] ({e.prim}): produced {len(outs)} outputs, the program declares {len(e.outputs)}")
        for i, (got, want) in enumerate(zip(outs, e.outputs)):
            if tuple(got.shape) != want.shape or np.dtype(got.dtype) != want.dtype:
                raise ProgramError(
                    f"eqns[{k}] ({e.prim}) output {i}: JAX computes {dtype_name(got.dtype)}[{', '.join(map(str, got.shape))}], "
                    f"the program declares {want}; the tracer's shape rule disagrees with JAX"
                )
        env.extend(outs)
    return [jnp.asarray(_value(o, env)) if isinstance(o, Lit) else env[o] for o in sub.outputs]


def check_x64(program: Program) -> None:
    mode = bool(jax.config.jax_enable_x64)
    if program.x64 != mode:
        raise ProgramError(
            f"program was traced for jax_enable_x64={program.x64} but this sidecar runs with {mode}; "
            "trace with the `x64` the sidecar reported in its handshake"
        )


def check_args(program: Program, args: list[Any]) -> None:
    if len(args) != len(program.inputs):
        raise WireError("ArgumentError", f"program takes {len(program.inputs)} arguments, got {len(args)}")
    for i, (a, want) in enumerate(zip(args, program.inputs)):
        shape = tuple(getattr(a, "shape", ()))
        dtype = getattr(a, "dtype", None)
        if dtype is None or shape != want.shape or np.dtype(dtype) != want.dtype:
            got = f"{dtype_name(dtype)}[{', '.join(map(str, shape))}]" if dtype is not None else type(a).__name__
            raise WireError("ArgumentError", f"argument {i}: the program expects {want}, got {got}")


class Lowered:
    """A decoded program and its jitted function; `traces` counts how often JAX traced it."""

    def __init__(self, program: Program, hash_: str):
        self.program = program
        self.hash = hash_
        self.traces = 0
        self.has_callbacks = has_callbacks(program)

        def fn(*args: Any) -> list[Any]:
            self.traces += 1
            return evaluate(program, list(args))

        self.fn = jax.jit(fn)

    def __call__(self, args: list[Any]) -> list[Any]:
        check_x64(self.program)
        check_args(self.program, args)
        return self.fn(*args)


def lower(data: bytes | bytearray | memoryview | str, server: Any = None) -> Lowered:
    """Decode and wrap a program. `server` is the sidecar whose objects a
    `pycall` equation may name; without it such programs are refused."""
    raw = bytes(data) if not isinstance(data, str) else data.encode()
    return Lowered(decode_program(raw, server), program_hash(raw))
