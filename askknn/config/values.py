"""The value types of the parameters: integers, numbers, choices, strings and lists, each a pydantic
type whose validator words its error with the key's dotted path (KEY, filled in by askknn.config.explain),
the range and, for a number YAML read as text, the fix."""
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from askknn.shared import LAYERS, METRICS

KEY = "\x00key\x00"   # replaced by the dotted path of the failing key when an error is reported
BIG = 10**7


def fail(text: str):
    raise PydanticCustomError("askknn", "{text}", {"text": text})


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _yaml_hint(v) -> str:
    """YAML 1.1 (PyYAML) reads `1e-3` as text; say so when a string would have been a number."""
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            return ""
        return f" (YAML reads {v} as text: write it with a decimal point, e.g. {float(v)!r})"
    return ""


# ---------------------------------------------------------------- value types
def integer(lo: int, hi: int, verb: str = "="):
    """An int in [lo, hi]; `verb` 'has' words errors for list items (`k_values has 600, ...`)."""
    def check(v):
        if not _is_int(v) or not lo <= v <= hi:
            fail(f"{KEY} has {v!r}; every value must be an integer in [{lo}, {hi}]{_yaml_hint(v)}" if verb == "has"
                  else f"{KEY} = {v!r} must be an integer in [{lo}, {hi}]{_yaml_hint(v)}")
        return v
    return Annotated[int, BeforeValidator(check), Field(ge=lo, le=hi)]


def number(lo: float, hi: float, low_open: bool = False):
    """A float (an int is accepted) in [lo, hi], or (lo, hi] with low_open."""
    def check(v):
        if not _is_number(v) or not (lo < v if low_open else lo <= v) or not v <= hi:
            fail(f"{KEY} = {v!r} must be a number in {'(' if low_open else '['}{lo}, {hi}]{_yaml_hint(v)}")
        return float(v)
    return Annotated[float, BeforeValidator(check), Field(gt=lo, le=hi) if low_open else Field(ge=lo, le=hi)]


def positive(verb: str = "=", zero: bool = False):
    """A positive float (an int is accepted), or one >= 0 with `zero`."""
    def check(v):
        if not _is_number(v) or not (v >= 0 if zero else v > 0):
            kind = "a number >= 0" if zero else "a positive number"
            fail(f"{KEY} has {v!r}; every value must be {kind}{_yaml_hint(v)}" if verb == "has"
                  else f"{KEY} = {v!r} must be {kind if zero else 'positive (a number > 0)'}{_yaml_hint(v)}")
        return float(v)
    return Annotated[float, BeforeValidator(check), Field(ge=0) if zero else Field(gt=0)]


def one_of(*allowed: str):
    def check(v):
        if v not in allowed:
            fail(f"{KEY} = {v!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")
        return v
    return Annotated[Literal[allowed], BeforeValidator(check)]


def text(v):
    if not isinstance(v, str) or not v:
        fail(f"{KEY} = {v!r} must be a non-empty string")
    return v


def boolean(v):
    if not isinstance(v, bool):
        fail(f"{KEY} = {v!r} must be true or false")
    return v


def layer(v):
    if v not in LAYERS:
        fail(f"{KEY} lists {v!r}, a layer the model does not have; the model's layers are: {', '.join(LAYERS)}")
    return v


def nonempty(v):
    if isinstance(v, list) and not v:
        fail(f"{KEY} is empty; list one or more values")
    return v


def distinct(v):
    if isinstance(v, list) and len(set(map(str, v))) != len(v):
        fail(f"{KEY} = {v!r} repeats a value; list each value once")
    return v


def guides_value(v):
    if v != "k" and (not _is_int(v) or not 1 <= v <= BIG):
        fail(f"{KEY} = {v!r} must be the string k (as many guides as the DkNN's K) or an integer >= 1")
    return v


def optional_count(v):
    if v is not None and (not _is_int(v) or not 1 <= v <= BIG):
        fail(f"{KEY} = {v!r} must be null (every training image not held out) or an integer in [1, {BIG}]"
              f"{_yaml_hint(v)}")
    return v


Str = Annotated[str, BeforeValidator(text)]
Bool = Annotated[bool, BeforeValidator(boolean)]
Eps = integer(0, 255)
Count = integer(1, BIG)
Steps = integer(0, 10**6)
Seed = integer(0, 2**32 - 1)
Positive = positive()
Layer = Annotated[str, BeforeValidator(layer)]
Metric = one_of(*METRICS)
Layers = Annotated[list[Layer], BeforeValidator(nonempty)]
Positives = Annotated[list[positive("has")], BeforeValidator(nonempty)]
NonNegatives = Annotated[list[positive("has", zero=True)], BeforeValidator(nonempty)]
Counts = Annotated[list[integer(1, BIG, "has")], BeforeValidator(nonempty)]
EpsList = Annotated[list[Eps], BeforeValidator(nonempty)]
Seeds = Annotated[list[Seed], BeforeValidator(nonempty), BeforeValidator(distinct)]
