"""Settings: dataclass fields that carry their own doc and valid range.

A setting is declared once, with `setting(default, doc, group, low=, high=, choices=)`;
`validate(obj)` checks every field of such a dataclass against it, and the node's
parameter declarations, the params YAML check and `pram params` all read the same
metadata (`specs`). In: a dataclass class or instance. Out: `Spec` records.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Spec:
    """One setting: its name, default, doc, group and what values it takes."""

    name: str
    default: Any
    doc: str
    group: str
    low: float | None = None  # inclusive bounds of a number
    high: float | None = None
    choices: tuple | None = None

    @property
    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.low is not None:
            return f"[{self.low}, {self.high}]"
        return f"a {type(self.default).__name__}"


def setting(default: Any, doc: str, group: str, *, low: float | None = None, high: float | None = None,
            choices: tuple | None = None) -> Any:
    """A dataclass field with its doc and valid values. Numbers take both bounds (ROS
    parameter ranges need them), strings may take choices, booleans neither."""
    if isinstance(default, (int, float)) and not isinstance(default, bool) and (low is None or high is None):
        raise TypeError(f"a numeric setting needs low and high bounds: {doc!r}")
    return field(default=default, metadata={"doc": doc, "group": group, "low": low, "high": high,
                                            "choices": choices})


def specs(cls_or_obj) -> list[Spec]:
    """The settings of a dataclass, in declaration order."""
    out = []
    for f in fields(cls_or_obj):
        if "doc" not in f.metadata or f.default is MISSING:
            raise TypeError(f"{f.name}: declare it with setting(...)")
        out.append(Spec(f.name, f.default, f.metadata["doc"], f.metadata["group"], f.metadata["low"],
                        f.metadata["high"], f.metadata["choices"]))
    return out


def check_value(spec: Spec, value: Any, label: str) -> None:
    """Raise ValueError when `value` is not allowed; `label` names the setting in the message
    (e.g. "LocalizerConfig.min_inliers", "parameter min_inliers")."""
    def refuse(expected: str):
        raise ValueError(f"{label} must be {expected}, got {value!r}")

    if isinstance(spec.default, bool):
        if not isinstance(value, bool):
            refuse("true or false")
    elif isinstance(spec.default, (int, float)):
        integer = isinstance(spec.default, int)
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            refuse("an integer" if integer else "a number")
        if not spec.low <= value <= spec.high:
            refuse(f"in [{spec.low}, {spec.high}]")
    elif isinstance(spec.default, str):
        if not isinstance(value, str):
            refuse("a string")
        if spec.choices is not None and value not in spec.choices:
            refuse(spec.allowed)


def validate(obj) -> None:
    """Check every setting of a dataclass instance (call it from __post_init__)."""
    for spec in specs(obj):
        check_value(spec, getattr(obj, spec.name), f"{type(obj).__name__}.{spec.name}")
