"""A compact UCUM unit parser and converter for the units clinical quality measures use.

A unit expression is reduced to a (factor, dimensions) pair: the factor relative to the coherent base
units (m, g, s, rad, K, C, cd) and a vector of base-unit exponents. Two units are convertible when
their dimensions match. Arbitrary units (`[iU]`, `[arb'U]`...) get a dimension of their own so they
only compare with themselves. Temperatures on an offset scale (`Cel`, `[degF]`) convert only as whole
units. Results are cached per unit string: parsing happens once per distinct unit.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache

Dims = tuple[tuple[str, int], ...]
_D = Decimal

# Prefixes (c/s form).
PREFIXES: dict[str, Decimal] = {
    "Y": _D("1e24"),
    "Z": _D("1e21"),
    "E": _D("1e18"),
    "P": _D("1e15"),
    "T": _D("1e12"),
    "G": _D("1e9"),
    "M": _D("1e6"),
    "k": _D("1e3"),
    "h": _D("1e2"),
    "da": _D("1e1"),
    "d": _D("1e-1"),
    "c": _D("1e-2"),
    "m": _D("1e-3"),
    "u": _D("1e-6"),
    "n": _D("1e-9"),
    "p": _D("1e-12"),
    "f": _D("1e-15"),
    "a": _D("1e-18"),
    "z": _D("1e-21"),
    "y": _D("1e-24"),
}

# atom -> (factor, definition in other units or base dims, metric?)
# Base units carry their own dimension; derived units are written as UCUM expressions.
_BASE = {"m": "L", "g": "M", "s": "T", "rad": "A", "K": "Θ", "C": "Q", "cd": "F"}

_DERIVED: dict[str, tuple[str, str, bool]] = {
    # symbol: (factor, unit expression, metric)
    "%": ("1e-2", "1", False),
    "[ppth]": ("1e-3", "1", False),
    "[ppm]": ("1e-6", "1", False),
    "[pi]": ("3.1415926535897932384626433832795028841971693993751058209749445923", "1", False),
    "mol": ("6.0221367e23", "1", True),
    "sr": ("1", "rad2", True),
    "Hz": ("1", "s-1", True),
    "N": ("1", "kg.m/s2", True),
    "Pa": ("1", "N/m2", True),
    "J": ("1", "N.m", True),
    "W": ("1", "J/s", True),
    "A": ("1", "C/s", True),
    "V": ("1", "J/C", True),
    "F": ("1", "C/V", True),
    "Ohm": ("1", "V/A", True),
    "S": ("1", "Ohm-1", True),
    "Wb": ("1", "V.s", True),
    "T": ("1", "Wb/m2", True),
    "H": ("1", "Wb/A", True),
    "lm": ("1", "cd.sr", True),
    "lx": ("1", "lm/m2", True),
    "Bq": ("1", "s-1", True),
    "Gy": ("1", "J/kg", True),
    "Sv": ("1", "J/kg", True),
    "l": ("1", "dm3", True),
    "L": ("1", "l", True),
    "ar": ("100", "m2", True),
    "min": ("60", "s", False),
    "h": ("60", "min", False),
    "d": ("24", "h", False),
    "a_t": ("365.24219", "d", False),
    "a_j": ("365.25", "d", False),
    "a_g": ("365.2425", "d", False),
    "a": ("1", "a_j", False),
    "wk": ("7", "d", False),
    "mo_s": ("29.53059", "d", False),
    "mo_j": ("1", "a_j/12", False),
    "mo_g": ("1", "a_g/12", False),
    "mo": ("1", "mo_j", False),
    "t": ("1e3", "kg", True),
    "bar": ("1e5", "Pa", True),
    "u": ("1.6605402e-24", "g", True),
    "eq": ("1", "mol", True),
    "osm": ("1", "mol", True),
    "g%": ("1", "g/dl", True),
    "atm": ("101325", "Pa", False),
    "m[H2O]": ("9.80665", "kPa", True),
    "m[Hg]": ("133.3220", "kPa", True),
    "[in_i]": ("2.54", "cm", False),
    "[ft_i]": ("12", "[in_i]", False),
    "[yd_i]": ("3", "[ft_i]", False),
    "[mi_i]": ("5280", "[ft_i]", False),
    "[in_i'Hg]": ("1", "m[Hg].[in_i]/m", False),
    "[lb_av]": ("7000", "[gr]", False),
    "[gr]": ("64.79891", "mg", False),
    "[oz_av]": ("1", "[lb_av]/16", False),
    "[gal_us]": ("231", "[in_i]3", False),
    "[qt_us]": ("1", "[gal_us]/4", False),
    "[pt_us]": ("1", "[qt_us]/2", False),
    "[foz_us]": ("1", "[pt_us]/16", False),
    "[cup_us]": ("16", "[tbs_us]", False),
    "[tbs_us]": ("1", "[foz_us]/2", False),
    "[tsp_us]": ("1", "[tbs_us]/3", False),
    "[drp]": ("1", "ml/20", False),
    "cal": ("4.184", "J", True),
    "[Cal]": ("1", "kcal", False),
    "U": ("1", "umol/min", True),
    "[degF]": ("5/9", "K", False),  # offset scale: see _OFFSET_UNITS
    "Cel": ("1", "K", True),  # offset scale
    "deg": ("2", "[pi].rad/360", False),
    "[mesh_i]": ("1", "/[in_i]", False),
    "[HPF]": ("1", "1", False),
    "[LPF]": ("100", "1", False),
    "[car_m]": ("2e-1", "g", False),
    "[diop]": ("1", "/m", False),
    "[S]": ("1e-13", "s", False),
    "[CFU]": ("1", "1", False),
}

# Arbitrary units: each is its own dimension (not convertible to anything else).
_ARBITRARY = {
    "[iU]",
    "[IU]",
    "[arb'U]",
    "[USP'U]",
    "[GPL'U]",
    "[MPL'U]",
    "[APL'U]",
    "[beth'U]",
    "[anti'Xa'U]",
    "[todd'U]",
    "[dye'U]",
    "[smgy'U]",
    "[bdsk'U]",
    "[ka'U]",
    "[knk'U]",
    "[mclg'U]",
    "[tb'U]",
    "[PFU]",
    "[FFU]",
    "[Lf]",
    "[D'ag'U]",
    "[BAU]",
    "[AU]",
    "[EU]",
    "[ELU]",
    "[pH]",
    "[hp'_X]",
    "[hp'_C]",
    "[kp_X]",
    "[kp_C]",
    "[Amb'a'1'U]",
    "[PNU]",
    "[CCID_50]",
    "[TCID_50]",
    "[EID_50]",
}
_ARBITRARY_METRIC = {"[iU]", "[IU]"}

_OFFSET_UNITS = {"Cel": (_D("1"), _D("273.15")), "[degF]": (_D(5) / _D(9), _D("459.67") * _D(5) / _D(9))}

_ALL_ATOMS: dict[str, bool] = {
    **{k: True for k in _BASE},
    **{k: v[2] for k, v in _DERIVED.items()},
    **{k: (k in _ARBITRARY_METRIC) for k in _ARBITRARY},
}
_ATOMS_BY_LENGTH = sorted(_ALL_ATOMS, key=len, reverse=True)

_TOKEN = re.compile(r"(\{[^}]*\})|(\()|(\))|([./])|([^./(){}]+)")


class UcumError(ValueError):
    """The unit string is not a UCUM unit this converter understands."""


def _merge(a: dict[str, int], b: dict[str, int], sign: int) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + sign * v
        if out[k] == 0:
            del out[k]
    return out


@cache
def _atom(symbol: str) -> tuple[Decimal, Dims]:
    """Factor and dimensions of an atom (no prefix, no exponent)."""
    if symbol in _BASE:
        return _D(1), ((_BASE[symbol], 1),)
    if symbol in _ARBITRARY:
        return _D(1), ((symbol, 1),)
    factor_text, expr, _metric = _DERIVED[symbol]
    if "/" in factor_text:
        num, den = factor_text.split("/")
        factor = _D(num) / _D(den)
    else:
        factor = _D(factor_text)
    if expr == "1":
        return factor, ()
    sub_factor, sub_dims = parse(expr)
    return factor * sub_factor, sub_dims


def _simple(text: str) -> tuple[Decimal, dict[str, int]]:
    """One component: [prefix]atom[exponent], a number, or 10*n / 10^n."""
    m = re.fullmatch(r"10[*^]([+-]?\d+)", text)
    if m:
        return _D(10) ** int(m.group(1)), {}
    if re.fullmatch(r"\d+", text):
        return _D(text), {}
    m = re.fullmatch(r"(.*?)([+-]?\d+)?", text)
    assert m is not None
    body, exp_text = m.group(1), m.group(2)
    if body == "" or body.endswith(("[", "'")):
        raise UcumError(text)
    exponent = int(exp_text) if exp_text else 1
    factor, dims = _unit_body(body)
    return factor**exponent, {k: v * exponent for k, v in dims.items()}


def _unit_body(body: str) -> tuple[Decimal, dict[str, int]]:
    if body in _ALL_ATOMS:
        f, d = _atom(body)
        return f, dict(d)
    for atom in _ATOMS_BY_LENGTH:
        if body.endswith(atom) and _ALL_ATOMS[atom]:
            prefix = body[: -len(atom)]
            if prefix in PREFIXES:
                f, d = _atom(atom)
                return PREFIXES[prefix] * f, dict(d)
    raise UcumError(body)


def _parse_term(tokens: list[str], pos: int) -> tuple[Decimal, dict[str, int], int]:
    factor, dims = _D(1), {}
    op = "."
    expect_component = True
    while pos < len(tokens):
        tok = tokens[pos]
        if tok == ")":
            break
        if tok in "./" and len(tok) == 1:
            if expect_component and pos != 0:
                raise UcumError("".join(tokens))
            op = tok
            expect_component = True
            pos += 1
            continue
        if tok == "(":
            f, d, pos = _parse_term(tokens, pos + 1)
            if pos >= len(tokens) or tokens[pos] != ")":
                raise UcumError("unbalanced parenthesis")
            pos += 1
        elif tok.startswith("{"):
            f, d = _D(1), {}
            pos += 1
        else:
            f, d = _simple(tok)
            pos += 1
            # an annotation directly after a unit belongs to it
            if pos < len(tokens) and tokens[pos].startswith("{"):
                pos += 1
        if op == ".":
            factor, dims = factor * f, _merge(dims, d, 1)
        else:
            factor, dims = factor / f, _merge(dims, d, -1)
        expect_component = False
    return factor, dims, pos


@cache
def parse(unit: str) -> tuple[Decimal, Dims]:
    """Factor and canonical dimensions of a UCUM expression; raises UcumError if not understood."""
    if unit in ("", "1"):
        return _D(1), ()
    tokens = [m.group(0) for m in _TOKEN.finditer(unit)]
    if "".join(tokens) != unit:
        raise UcumError(unit)
    factor, dims, pos = _parse_term(tokens, 0)
    if pos != len(tokens):
        raise UcumError(unit)
    return factor, tuple(sorted(dims.items()))


def is_valid(unit: str) -> bool:
    try:
        parse(unit)
    except (UcumError, KeyError, ValueError):
        return False
    return True


def convert(value: Decimal, from_unit: str, to_unit: str) -> Decimal | None:
    """`value` in `from_unit` expressed in `to_unit`; None when the units are not commensurable."""
    if from_unit == to_unit:
        return value
    if from_unit in _OFFSET_UNITS or to_unit in _OFFSET_UNITS:
        return _convert_offset(value, from_unit, to_unit)
    try:
        f1, d1 = parse(from_unit)
        f2, d2 = parse(to_unit)
    except (UcumError, KeyError, ValueError):
        return None
    if d1 != d2:
        return None
    return round8(value * f1 / f2)


_Q8 = Decimal("1e-8")


def round8(value: Decimal) -> Decimal:
    """Round to CQL's Decimal scale (8 places) so conversions through inexact factors compare cleanly."""
    if value == value.to_integral_value() or abs(value) >= Decimal("1e19"):
        return value
    return value.quantize(_Q8)


def _convert_offset(value: Decimal, from_unit: str, to_unit: str) -> Decimal | None:
    def to_kelvin(v: Decimal, unit: str) -> Decimal | None:
        if unit in _OFFSET_UNITS:
            scale, offset = _OFFSET_UNITS[unit]
            return v * scale + offset
        try:
            f, d = parse(unit)
        except (UcumError, KeyError, ValueError):
            return None
        return v * f if d == (("Θ", 1),) else None

    kelvin = to_kelvin(value, from_unit)
    if kelvin is None:
        return None
    if to_unit in _OFFSET_UNITS:
        scale, offset = _OFFSET_UNITS[to_unit]
        return round8((kelvin - offset) / scale)
    try:
        f, d = parse(to_unit)
    except (UcumError, KeyError, ValueError):
        return None
    return round8(kelvin / f) if d == (("Θ", 1),) else None


def dimensions(unit: str) -> Dims | None:
    try:
        return parse(unit)[1]
    except (UcumError, KeyError, ValueError):
        return None


def factor(unit: str) -> Decimal | None:
    try:
        return parse(unit)[0]
    except (UcumError, KeyError, ValueError):
        return None
