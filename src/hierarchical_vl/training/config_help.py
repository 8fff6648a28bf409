"""The training configuration described from its own dataclasses: every field's dotted key, type, default and
description, for ``hvl train --help``, ``hvl config fields`` and ``hvl config show``, and the type check of
``KEY=VALUE`` overrides.

The descriptions are the ``Args:`` sections of the argument dataclasses' docstrings (`TrainingArguments`,
`DataArguments`, `OptimizerArguments`, `TaskArguments`, `StageArguments`), so a field documented there is
documented everywhere; a field without a line there is a test failure.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any

from .arguments import DataArguments, OptimizerArguments, StageArguments, TaskArguments, TrainingArguments

__all__ = [
    "ConfigField",
    "check_field_types",
    "config_fields",
    "docstring_arguments",
    "format_config_fields",
]

_ARGUMENT_CLASSES = (TrainingArguments, DataArguments, OptimizerArguments, TaskArguments, StageArguments)
_ITEM_PLACEHOLDERS = {"tasks": "<task>", "curriculum": "<i>"}
_CONTAINED = {"tasks": TaskArguments, "curriculum": StageArguments}


@dataclass(frozen=True)
class ConfigField:
    """One configuration field.

    Args:
        key: Dotted key as ``KEY=VALUE`` overrides spell it (``data.root``, ``tasks.<task>.batch_size``,
            ``curriculum.<i>.cycle_length``).
        type: The annotation, as written (``int | None``).
        default: The default, as YAML would write it (``required`` when there is none).
        description: The docstring's description, on one line.
    """

    key: str
    type: str
    default: str
    description: str

    @property
    def summary(self) -> str:
        """The description's first sentence."""
        match = re.search(r"(?<!e\.g)(?<!i\.e)(?<!etc)\.(\s|$)", self.description)
        return self.description[: match.start() + 1] if match else self.description


def docstring_arguments(cls: type) -> dict[str, str]:
    """The ``Args:`` section of a class docstring: field name -> description joined on one line."""
    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return {}
    described: dict[str, str] = {}
    name = None
    indent = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = width
        if width < indent:
            break
        match = re.match(r"(\w+)(?: \([^)]*\))?: ?(.*)$", line.strip())
        if width == indent and match:
            name = match.group(1)
            described[name] = match.group(2).strip()
        elif name is not None:
            described[name] = f"{described[name]} {line.strip()}".strip()
    return described


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    text = str(annotation).replace("typing.", "")
    return re.sub(r"[\w.]*\.(\w+Arguments)", r"\1", text)


def _default(item: dataclasses.Field) -> str:
    if item.default is not dataclasses.MISSING:
        value = item.default
    elif item.default_factory is not dataclasses.MISSING:
        value = item.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "(fields below)"
    if isinstance(value, tuple):
        value = list(value)
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _fields_of(cls: type, prefix: str) -> list[ConfigField]:
    hints = typing.get_type_hints(cls)
    described = docstring_arguments(cls)
    found = []
    for item in dataclasses.fields(cls):
        key = f"{prefix}{item.name}"
        found.append(ConfigField(key, _type_name(hints[item.name]), _default(item), described.get(item.name, "")))
        nested = hints[item.name]
        if dataclasses.is_dataclass(nested):
            found.extend(_fields_of(nested, f"{key}."))
        elif cls is TrainingArguments and item.name in _CONTAINED:
            found.extend(_fields_of(_CONTAINED[item.name], f"{key}.{_ITEM_PLACEHOLDERS[item.name]}."))
    return found


def config_fields() -> list[ConfigField]:
    """Every field of the training configuration, in the dataclasses' order, nested ones after their parent."""
    return _fields_of(TrainingArguments, "")


def format_config_fields(fields: list[ConfigField] | None = None, *, width: int = 118) -> str:
    """The fields as a text table: key, type and default on one line, the summary indented below.

    Args:
        fields: The fields (all of them by default).
        width: Wrap width of the summaries.
    """
    lines = []
    for item in config_fields() if fields is None else fields:
        lines.append(f"  {item.key}: {item.type} = {item.default}")
        summary = item.summary.replace("``", "`")
        lines.extend(
            textwrap.wrap(summary, width, initial_indent="      ", subsequent_indent="      ", break_on_hyphens=False)
        )
    return "\n".join(lines)


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a loaded value fits a field's annotation (ints pass for floats, never bools for numbers)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in arguments)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            return len(value) == len(arguments) and all(map(_matches, value, arguments))
        return all(_matches(item, arguments[0]) for item in value) if arguments else True
    if origin is dict:
        if not isinstance(value, dict):
            return False
        key_type, value_type = arguments or (Any, Any)
        return all(_matches(k, key_type) and _matches(v, value_type) for k, v in value.items())
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, annotation)
    return isinstance(value, annotation) if isinstance(annotation, type) else True


_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _check(instance: Any, prefix: str) -> None:
    hints = typing.get_type_hints(type(instance))
    for item in dataclasses.fields(instance):
        value = getattr(instance, item.name)
        key = f"{prefix}{item.name}"
        annotation = hints[item.name]
        if dataclasses.is_dataclass(value):
            _check(value, f"{key}.")
            continue
        if type(instance) is TrainingArguments and item.name in _CONTAINED:
            entries = value.items() if isinstance(value, dict) else enumerate(value)
            for name, entry in entries:
                _check(entry, f"{key}.{name}.")
            continue
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value) and _matches(0.5, annotation):
            # YAML 1.1 reads ``1e-3`` (no dot) as text; a float field takes it as the number it spells
            value = float(value)
            setattr(instance, item.name, value)
        if not _matches(value, annotation):
            hint = ""
            if isinstance(value, str) and value.lower() in ("yes", "no", "on", "off", "true", "false"):
                hint = " (did you mean true or false, unquoted?)"
            raise ValueError(f"{key}: expected {_type_name(annotation)}, got {value!r}{hint}")


def check_field_types(args: TrainingArguments) -> None:
    """Raises ``ValueError`` (one line naming the dotted key) for a field whose value does not fit its type.

    Args:
        args: Loaded training arguments.
    """
    _check(args, "")
