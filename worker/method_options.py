"""The options each optimizer takes (momentum, weight decay, betas, ...), checked without building anything.

A method's catalog `options` and a sweep's `method_options` overrides pass through `check_options`: the catalog
when it is loaded, a spec when it is validated (before a sweep is accepted), and the optimizer when it is built,
so a typo or an out-of-range value is refused with the option's name before any trial runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from worker.records import is_finite


def _shown(value: Any, limit: int = 80) -> str:
    """A value as an error message quotes it: its repr, cut short (a client may send anything)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OptionError(ValueError):
    """A bad optimizer option; `option` names it (None when the optimizer itself is unknown)."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


def _number(name: str, value: Any) -> float:
    if not is_finite(value):
        raise OptionError(f"option {name!r} must be a finite number, got {_shown(value)}")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    v = _number(name, value)
    if v < 0:
        raise OptionError(f"option {name!r} must be >= 0, got {_shown(value)}")
    return v


def _positive(name: str, value: Any) -> float:
    v = _number(name, value)
    if v <= 0:
        raise OptionError(f"option {name!r} must be > 0, got {_shown(value)}")
    return v


def _fraction(name: str, value: Any) -> float:
    v = _number(name, value)
    if not 0 <= v < 1:
        raise OptionError(f"option {name!r} must be in [0, 1), got {_shown(value)}")
    return v


def _betas(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise OptionError(f"option {name!r} must be two numbers in [0, 1), such as [0.9, 0.999]; got {_shown(value)}")
    return (_fraction(name, value[0]), _fraction(name, value[1]))


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionError(f"option {name!r} must be true or false, got {_shown(value)}")
    return value


def _optional_positive(name: str, value: Any) -> float | None:
    return None if value is None else _positive(name, value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise OptionError(f"option {name!r} must be a whole number from 1 to 1000000, got {_shown(value)}")
    return value


LOGREG = "logreg"
"""The linear probe's "optimizer": sklearn's logistic regression on frozen features; a grid value is its C."""


# per optimizer: option name -> (checker, the optimizer constructor's keyword)
_OPTIONS: dict[str, dict[str, tuple[Callable[[str, Any], Any], str]]] = {
    "sgd": {
        "momentum": (_fraction, "momentum"),
        "weight_decay": (_non_negative, "weight_decay"),
        "nesterov": (_flag, "nesterov"),
    },
    "adamw": {
        "betas": (_betas, "betas"),
        "eps": (_non_negative, "eps"),
        "weight_decay": (_non_negative, "weight_decay"),
    },
    "lars": {
        "momentum": (_fraction, "momentum"),
        "weight_decay": (_non_negative, "weight_decay"),
        "trust_coefficient": (_positive, "trust_coeff"),
        "eps": (_non_negative, "eps"),
        "nesterov": (_flag, "nesterov"),
    },
    "lamb": {
        "betas": (_betas, "betas"),
        "eps": (_non_negative, "eps"),
        "weight_decay": (_non_negative, "weight_decay"),
        "max_grad_norm": (_optional_positive, "max_grad_norm"),
    },
    "adam_spd": {
        "betas": (_betas, "betas"),
        "eps": (_non_negative, "eps"),
        "spd_lambda": (_non_negative, "spd_lambda"),
    },
    LOGREG: {
        "max_iter": (_count, "max_iter"),
        "tol": (_positive, "tol"),
    },
}

OPTIMIZERS = tuple(_OPTIONS)


def valid_options(optimizer: str) -> tuple[str, ...]:
    """Option names that a method using `optimizer` accepts (catalog `options` and sweep overrides)."""
    if optimizer not in _OPTIONS:
        raise OptionError(f"unknown optimizer {optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")
    return tuple(sorted(_OPTIONS[optimizer]))


def check_options(method: str, optimizer: str, options: Mapping[str, Any]) -> list[OptionError]:
    """Every problem of `options` for `method` (an optimizer of OPTIMIZERS), each naming its option."""
    valid = valid_options(optimizer)
    spec = _OPTIONS[optimizer]
    problems = []
    for name, value in options.items():
        if name not in spec:
            problems.append(
                OptionError(
                    f"unknown option {name!r} for method {method!r} (optimizer {optimizer!r}); "
                    f"valid options: {', '.join(valid)}",
                    name,
                )
            )
            continue
        try:
            spec[name][0](name, value)
        except OptionError as e:
            problems.append(OptionError(f"method {method!r}: {e}", name))
    return problems


def resolve_options(
    method: str, optimizer: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The catalog's `defaults` overridden by `overrides`, checked, as the optimizer constructor's keywords."""
    merged = {**dict(defaults), **dict(overrides or {})}
    problems = check_options(method, optimizer, merged)
    if problems:
        raise problems[0]
    spec = _OPTIONS[optimizer]
    return {spec[name][1]: spec[name][0](name, value) for name, value in merged.items()}
