"""Programs from the wire. A Program (see `src/trace/README.md`) is data:
canonical JSON naming primitives, their parameters and typed variables.
`decode_program` checks it completely (every primitive in the rule table,
every parameter of the kind its rule declares, every variable defined
before use) before anything runs. Nothing in a program can name a Python
object: primitive names are keys of `RULES`, dtypes come from the wire's
dtype table, and parameters are ints, bools, dtypes and sub-programs (the
one exception, `pycall`, names objects by the ids the sidecar handed out)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from jax import lax

from .. import limits, protocol
from ..allowlist import NotAllowed, check_method_name
from ..protocol import WireError, dtype_from_name, dtype_name
from ..sharding import mesh_from_wire, sharding_from_wire, spec_from_wire
from . import pycall
from .ir import IR_VERSION, Aval, Eqn, Lit, Program, ProgramError, Sub, output_avals
from .rules import CHECKPOINT_POLICIES, RULES, inexact_dtype

MAX_PROGRAM_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64


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


def _kind_check(kind: str, value: Any, where: str, name: str, depth: int, objects: pycall.Objects | None, links: dict[int, dict[str, Any]], decoded: dict[str, Any]) -> Any:
    """Validate and convert one parameter value. `objects` resolves what a
    `pycall` names (PyRefs, module structures); without it, pycall is refused.
    `decoded` holds the equation's parameters decoded so far (PartitionSpecs
    are checked against the equation's `mesh`, listed before them)."""
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
        return _decode_sub(value, f"{where}.{name}", depth + 1, objects, links)
    if kind == "programs":
        if not isinstance(value, list) or not value:
            raise ProgramError(f"{where}: parameter {name} must be a non-empty list of programs")
        return tuple(_decode_sub(v, f"{where}.{name}[{i}]", depth + 1, objects, links) for i, v in enumerate(value))
    if kind == "pycall":
        if objects is None:
            raise NotAllowed(f"{where}: pycall names Python objects, which only a running sidecar can resolve")
        if not isinstance(value, dict) or set(value) != {"object", "args"}:
            raise ProgramError(f"{where}: parameter {name} is {{object, args}}: the target template and the argument templates")
        return pycall.Target(objects, value["object"], value["args"], f"{where}.{name}")
    if kind == "axes":
        if not isinstance(value, list) or not all(v is None or (_is_int(v) and v >= 0) for v in value):
            raise ProgramError(f"{where}: parameter {name} must be a list of non-negative integers and nulls, got {value!r}")
        return tuple(value)
    if kind == "name":
        return _name(value, where, name)
    if kind == "name?":
        return None if value is None else _name(value, where, name)
    if kind == "names":
        if not isinstance(value, list):
            raise ProgramError(f"{where}: parameter {name} must be a list of names, got {value!r}")
        return tuple(_name(v, where, name) for v in value)
    if kind == "policy":
        if value is not None and value not in CHECKPOINT_POLICIES:
            raise ProgramError(f"{where}: parameter {name} must be null or one of jax.checkpoint_policies {list(CHECKPOINT_POLICIES)}, got {value!r}")
        return value
    if kind == "method":
        return check_method_name(value, where)
    if kind == "pyout":
        return pycall.check_output_node(value, f"{where}.{name}")
    if kind == "axis_names":
        # What a collective names: mesh axes (a shard_map's) or a vmap's axis name; only ever names, never reaches Python.
        ok = isinstance(value, list) and value and len(set(value)) == len(value) and all(isinstance(a, str) and 0 < len(a) <= 128 and a.isascii() and a.isprintable() for a in value)
        if not ok:
            raise ProgramError(f"{where}: parameter {name} must be a non-empty list of distinct axis names (printable ASCII, 1 to 128 characters), got {value!r}")
        return tuple(value)
    if kind == "perm":
        if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 and all(_is_int(i) and i >= 0 for i in p) for p in value):
            raise ProgramError(f"{where}: parameter {name} must be a list of [source, destination] index pairs, got {value!r}")
        return tuple((p[0], p[1]) for p in value)
    if kind == "mesh":
        return mesh_from_wire(value, f"{where}.{name}", ProgramError)
    if kind == "sharding":
        return sharding_from_wire(value, f"{where}.{name}", ProgramError)
    if kind == "specs":
        if not isinstance(value, list):
            raise ProgramError(f"{where}: parameter {name} must be a list of PartitionSpecs, got {value!r}")
        return tuple(spec_from_wire(v, decoded["mesh"], f"{where}.{name}[{i}]", ProgramError) for i, v in enumerate(value))
    raise AssertionError(kind)


MAX_NAME = 128


def _name(value: Any, where: str, name: str) -> str:
    """An axis or checkpoint name: a short printable ASCII string (it only ever names, never reaches Python)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME or not value.isascii() or not value.isprintable():
        raise ProgramError(f"{where}: parameter {name} must be a printable ASCII name of 1 to {MAX_NAME} characters, got {value!r}")
    return value


def _int_enum_check(kind: str, value: Any, where: str, name: str) -> int:
    choices = [int(c) for c in kind[len("enum_int:") :].split("|")]
    if not _is_int(value) or value not in choices:
        raise ProgramError(f"{where}: parameter {name} must be one of {choices}, got {value!r}")
    return value


# --- transformations: the counts their rules rely on ------------------------------------
#
# A transformation's inputs and outputs are laid out by its body's types
# (rules.py: consts first, then arguments; tangents and cotangents only for
# inexact values). Every count is checked here, before anything runs, so a
# rule never indexes past its inputs.


def _count(where: str, what: str, got: int, want: int) -> None:
    if got != want:
        raise ProgramError(f"{where}: {what}: expected {want}, got {got}")


def _consts(p: dict[str, Any], where: str, key: str = "num_consts", body: str = "body") -> tuple[int, int]:
    nc, n = p[key], len(p[body].inputs)
    if nc > n:
        raise ProgramError(f"{where}: {key} {nc} exceeds the {n} inputs of {body}")
    return nc, n - nc


def _inexact_count(avals: Any) -> int:
    return sum(1 for a in avals if inexact_dtype(a.dtype))


def _check_diff(prim: str) -> Any:
    def check(p: dict[str, Any], n_in: int, n_out: int, where: str) -> None:
        nc, n_args = _consts(p, where)
        _count(where, "inputs (consts, then arguments, as the body takes them)", n_in, nc + n_args)
        argnums = p["argnums"]
        if not argnums or len(set(argnums)) != len(argnums) or any(a >= n_args for a in argnums):
            raise ProgramError(f"{where}: argnums must be distinct indices among the {n_args} arguments, got {list(argnums)}")
        main = len(p["body"].outputs) - p["num_aux"]
        if main < 1 or (prim in ("grad", "value_and_grad") and main != 1):
            raise ProgramError(f"{where}: the body has {len(p['body'].outputs)} outputs and num_aux {p['num_aux']}: {prim} needs {'exactly one' if prim in ('grad', 'value_and_grad') else 'at least one'} main output")
        k = len(argnums)
        want = {"grad": k, "value_and_grad": 1 + k, "jacfwd": main * k, "jacrev": main * k, "hessian": main * k * k}[prim]
        _count(where, "outputs", n_out, want + p["num_aux"])

    return check


def _check_jvp(p: dict[str, Any], n_in: int, n_out: int, where: str) -> None:
    nc, n = _consts(p, where)
    body = p["body"]
    _count(where, "inputs (consts, primals, a tangent per inexact primal)", n_in, nc + n + _inexact_count(body.inputs[nc:]))
    outs = output_avals(body)
    main = len(outs) - p["num_aux"]
    if main < 0:
        raise ProgramError(f"{where}: num_aux {p['num_aux']} exceeds the body's {len(outs)} outputs")
    _count(where, "outputs (primal outputs, a tangent per inexact one, aux)", n_out, len(outs) + _inexact_count(outs[:main]))


def _check_forward(p: dict[str, Any], n_in: int, n_out: int, where: str) -> None:
    """vjp and linearize: the function applied (consts, then primals), its outputs and aux out."""
    nc, n = _consts(p, where)
    _count(where, "inputs (consts, then primals)", n_in, nc + n)
    outs = len(p["body"].outputs)
    if outs - p["num_aux"] < 1:
        raise ProgramError(f"{where}: the body has {outs} outputs and num_aux {p['num_aux']}: it needs at least one output to differentiate")
    _count(where, "outputs (the body's)", n_out, outs)


# vjp_call and linearize_call apply the linear map their `link` names: the
# vjp or linearize equation that made it, earlier in the program.
_LINKED = {"vjp_call": "vjp", "linearize_call": "linearize"}
_LINKS = ("vjp", "linearize", *_LINKED)


def _check_link(prim: str, p: dict[str, Any], links: dict[int, dict[str, Any]], n_in: int, n_out: int, where: str) -> None:
    if prim in ("vjp", "linearize"):
        if p["link"] in links:
            raise ProgramError(f"{where}: link {p['link']} is used by an earlier {links[p['link']]['prim']} equation")
        links[p["link"]] = {"prim": prim, **p}
        return
    made = links.get(p["link"])
    if made is None or made["prim"] != _LINKED[prim]:
        raise ProgramError(f"{where}: link {p['link']} names no earlier {_LINKED[prim]} equation")
    body, nc, na = made["body"], made["num_consts"], made["num_aux"]
    outs = output_avals(body)
    main, primals = outs[: len(outs) - na], body.inputs[nc:]
    if prim == "vjp_call":
        _count(where, "inputs (an output of the vjp equation, then a cotangent per inexact output)", n_in, 1 + _inexact_count(main))
        _count(where, "outputs (a cotangent per inexact primal)", n_out, _inexact_count(primals))
    else:
        _count(where, "inputs (an output of the linearize equation, then a tangent per inexact primal)", n_in, 1 + _inexact_count(primals))
        _count(where, "outputs (a tangent per inexact output)", n_out, _inexact_count(main))


def _check_vmap(p: dict[str, Any], n_in: int, n_out: int, where: str) -> None:
    nc, n = _consts(p, where)
    body = p["body"]
    _count(where, "inputs (consts, then arguments)", n_in, nc + n)
    _count(where, "in_axes (one per argument)", len(p["in_axes"]), n)
    outs = output_avals(body)
    _count(where, "out_axes (one per output)", len(p["out_axes"]), len(outs))
    _count(where, "outputs", n_out, len(outs))
    for i, (ax, a) in enumerate(zip(p["in_axes"], body.inputs[nc:])):
        if ax is not None and ax > len(a.shape):
            raise ProgramError(f"{where}: in_axes[{i}] is {ax}, but the argument has rank {len(a.shape) + 1}")
    for i, (ax, a) in enumerate(zip(p["out_axes"], outs)):
        if ax is not None and ax > len(a.shape):
            raise ProgramError(f"{where}: out_axes[{i}] is {ax}, but the output has rank {len(a.shape) + 1}")


def _check_checkpoint(p: dict[str, Any], n_in: int, n_out: int, where: str) -> None:
    _count(where, "inputs", n_in, len(p["body"].inputs))
    _count(where, "outputs", n_out, len(p["body"].outputs))


def _check_custom_jvp(p: dict[str, Any], n_in: int, n_out: int, where: str) -> None:
    a, n_args = _consts(p, where, "num_call_consts", "call")
    b, n_jvp = _consts(p, where, "num_jvp_consts", "jvp")
    args = p["call"].inputs[a:]
    _count(where, "inputs (call consts, jvp consts, arguments)", n_in, a + b + n_args)
    _count(where, "jvp inputs after its consts (primals, a tangent per inexact primal)", n_jvp, n_args + _inexact_count(args))
    outs = output_avals(p["call"])
    _count(where, "outputs", n_out, len(outs))
    _count(where, "jvp outputs (primal outputs, a tangent per inexact one)", len(p["jvp"].outputs), len(outs) + _inexact_count(outs))


def _check_custom_vjp(p: dict[str, Any], n_in: int, n_out: int, where: str) -> None:
    a, n_args = _consts(p, where, "num_call_consts", "call")
    b, n_fwd = _consts(p, where, "num_fwd_consts", "fwd")
    c, n_bwd = _consts(p, where, "num_bwd_consts", "bwd")
    args = p["call"].inputs[a:]
    outs = output_avals(p["call"])
    _count(where, "inputs (call, fwd and bwd consts, arguments)", n_in, a + b + c + n_args)
    _count(where, "fwd inputs after its consts (the arguments)", n_fwd, n_args)
    n_res = len(p["fwd"].outputs) - len(outs)
    if n_res < 0:
        raise ProgramError(f"{where}: fwd returns {len(p['fwd'].outputs)} values, fewer than the {len(outs)} outputs of call")
    _count(where, "bwd inputs after its consts (residuals, a cotangent per inexact output)", n_bwd, n_res + _inexact_count(outs))
    _count(where, "bwd outputs (a cotangent per inexact argument)", len(p["bwd"].outputs), _inexact_count(args))
    _count(where, "outputs", n_out, len(outs))


_STRUCTURE: dict[str, Any] = {
    **{prim: _check_diff(prim) for prim in ("grad", "value_and_grad", "jacfwd", "jacrev", "hessian")},
    "jvp": _check_jvp,
    "linearize": _check_forward,
    "vjp": _check_forward,
    "vmap": _check_vmap,
    "checkpoint": _check_checkpoint,
    "custom_jvp_call": _check_custom_jvp,
    "custom_vjp_call": _check_custom_vjp,
}


# --- programs ----------------------------------------------------------------------------

# Fields only a top-level program has: the header, and jit's shardings.
_HEADER = {"version", "x64", "in_shardings", "out_shardings"}


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


def _decode_sub(obj: Any, where: str, depth: int, objects: pycall.Objects | None, links: dict[int, dict[str, Any]]) -> Sub:
    if depth > MAX_DEPTH:
        raise ProgramError(f"{where}: programs nest deeper than {MAX_DEPTH}")
    if not isinstance(obj, dict) or not {"inputs", "eqns", "outputs"} <= set(obj):
        raise ProgramError(f"{where}: a program is {{inputs, eqns, outputs}}")
    extra = set(obj) - {"inputs", "eqns", "outputs"} - (_HEADER if depth == 0 else set())
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
            params[name] = _int_enum_check(kind, v, ew, name) if kind.startswith("enum_int:") else _kind_check(kind, v, ew, name, depth, objects, links, params)
        outs = tuple(_decode_aval(a, f"{ew}.outputs[{i}]") for i, a in enumerate(e["outputs"]))
        check = _STRUCTURE.get(prim)
        if check is not None:
            check(params, len(ins), len(outs), ew)
        if prim in _LINKS:
            _check_link(prim, params, links, len(ins), len(outs), ew)
        defined += len(outs)
        eqns.append(Eqn(prim, ins, params, outs))
    outputs = tuple(_decode_operand(o, defined, f"{where}.outputs[{i}]") for i, o in enumerate(obj["outputs"]))
    return Sub(inputs, tuple(eqns), outputs)


def decode_program(data: bytes | bytearray | memoryview | str, objects: pycall.Objects | None = None, max_array_bytes: int | None = None) -> Program:
    """Parse and check a program's canonical JSON. Raises WireError('ProgramError') or NotAllowed.
    `objects` is what a `pycall` equation may name; without it such programs are refused.
    With `max_array_bytes`, a program any of whose values (inputs, equation
    outputs, in sub-programs too) is larger is refused (`LimitExceeded`)
    before JAX sees it: a huge `iota` crashes XLA rather than failing."""
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
    sub = _decode_sub(obj, "program", 0, objects, {})
    if max_array_bytes is not None:
        check_sizes(sub, max_array_bytes)
    ins = _shardings(obj.get("in_shardings"), len(sub.inputs), "in_shardings", "inputs")
    outs = _shardings(obj.get("out_shardings"), len(sub.outputs), "out_shardings", "outputs")
    return Program(sub.inputs, sub.eqns, sub.outputs, IR_VERSION, obj["x64"], ins, outs)


def _shardings(value: Any, n: int, name: str, what: str) -> tuple[Any, ...] | None:
    """jit's shardings of a program's inputs or outputs: a list of at most one
    entry per input/output (null: unspecified); missing entries (the
    captures after the declared inputs) are unspecified."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > n:
        raise ProgramError(f"program.{name} must be a list of at most {n} shardings (one per {what[:-1]}, null for unspecified), got {value!r}")
    decoded = tuple(None if v is None else sharding_from_wire(v, f"program.{name}[{i}]", ProgramError) for i, v in enumerate(value))
    return decoded + (None,) * (n - len(decoded))


def check_sizes(program: Sub, max_array_bytes: int) -> None:
    """Refuse a program that names a value larger than `max_array_bytes`."""
    stack: list[tuple[Sub, str]] = [(program, "program")]
    while stack:
        sub, where = stack.pop()
        found = [(f"{where}.inputs[{i}]", a) for i, a in enumerate(sub.inputs)]
        for k, e in enumerate(sub.eqns):
            found += [(f"{where}.eqns[{k}] ({e.prim}).outputs[{i}]", a) for i, a in enumerate(e.outputs)]
            for name, v in e.params.items():
                for j, b in enumerate(v if isinstance(v, tuple) else (v,)):
                    if isinstance(b, Sub):
                        stack.append((b, f"{where}.eqns[{k}].{name}" + (f"[{j}]" if isinstance(v, tuple) else "")))
        for at, aval in found:
            n = protocol.shape_bytes(aval.shape, aval.dtype.itemsize)
            if n > max_array_bytes:
                raise WireError("LimitExceeded", limits.exceeded(f"{at}, {aval},", limits.fmt_bytes(n), "max_array_bytes", limits.fmt_bytes(max_array_bytes)))


def _no_floats(text: str) -> Any:
    raise ProgramError(f"programs carry no JSON floats (literal values are exact strings); found {text}")


def program_hash(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()

