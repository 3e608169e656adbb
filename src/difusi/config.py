"""Typed stage configurations: one dataclass per stage whose fields are both its YAML keys and its
command-line options (`difusi.cli.options.add_config_options` makes one --flag per field).

A field made with `option(default, help)` carries the help text the CLI shows. A field holding a
nested config (EvaluationConfig.sampler, a SamplerSettings) is flattened: its fields are YAML keys
and flags of their own (`steps:`, `--steps`), so a recipe is always one flat mapping.
YAML sets values; an option given on the command line overrides the YAML; unknown keys are an error
naming them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from difusi.errors import DifusiError
from difusi.io import write_text


def option(default: Any, help: str):
    """A dataclass field whose help text the CLI shows."""
    return dataclasses.field(default=default, metadata={"help": help})


def nested(factory: type, help: str = ""):
    """A field holding a nested config whose fields are flattened into the parent's keys and flags."""
    return dataclasses.field(default_factory=factory, metadata={"help": help, "nested": True})


@dataclasses.dataclass(frozen=True)
class Flat:
    """One flat key of a config: its field, its resolved type, and the nested field holding it (if any)."""

    field: dataclasses.Field
    kind: Any
    parent: str | None = None

    @property
    def name(self) -> str:
        return self.field.name


def flat_fields(cls: type) -> list[Flat]:
    """Every key of config class `cls`, nested configs' fields flattened in place."""
    hints = typing.get_type_hints(cls)
    found: list[Flat] = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("nested"):
            inner = typing.get_type_hints(hints[f.name])
            found += [Flat(g, inner[g.name], f.name) for g in dataclasses.fields(hints[f.name])]
        else:
            found.append(Flat(f, hints[f.name]))
    names = [flat.name for flat in found]
    assert len(names) == len(set(names)), f"{cls.__name__} flattens to repeated keys: {names}"
    return found


def optional_part(kind: Any) -> Any:
    """`X` for `X | None`, else `kind` unchanged."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


class Config:
    """Base of the stage configs (each a dataclass, frozen or not): YAML in and out, overrides by flat key."""

    @classmethod
    def from_yaml(cls, path: str | Path):
        """Read a YAML recipe (one flat mapping of option: value); unknown keys are an error naming them."""
        path = Path(path)
        if not path.is_file():
            raise DifusiError(f"config file {path} does not exist; pass an existing YAML file to --config")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise DifusiError(f"{path} must hold a YAML mapping of option: value")
        return cls().with_overrides(values, source=str(path))

    def with_overrides(self, overrides: Mapping[str, Any], source: str = "overrides"):
        """A copy with `overrides` (flat keys) applied; None values are skipped: the option was not given."""
        keys = {flat.name: flat for flat in flat_fields(type(self))}
        unknown = sorted(set(overrides) - set(keys))
        if unknown:
            raise DifusiError(f"unknown option(s) in {source}: {', '.join(map(str, unknown))}")
        own: dict[str, Any] = {}
        inner: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            parent = keys[key].parent
            if parent is None:
                own[key] = value
            else:
                inner.setdefault(parent, {})[key] = value
        for parent, values in inner.items():
            own[parent] = dataclasses.replace(getattr(self, parent), **values)
        return dataclasses.replace(self, **own)

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping `from_yaml` reads back."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("nested"):
                values.update(dataclasses.asdict(value))
            else:
                values[f.name] = list(value) if isinstance(value, tuple) else value
        return values

    def to_yaml(self, path: str | Path) -> None:
        """Write the resolved config atomically."""
        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
