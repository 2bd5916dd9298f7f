"""Grouped dataclasses -> one command-line parser that also reads YAML recipes; knows nothing of training.

A top-level config class has one field per section, each a dataclass whose fields carry their help text in
`metadata` (`flag_help`). `build_parser` makes one flag per field (flat names: `--lr`, not `--optim.lr`) plus
`--config recipe.yaml`. Precedence: field default < recipe < flag. A recipe is either flat (`lr: 1e-5`) or grouped
by section (`optim: {lr: 1e-5}`). Sections validate themselves in `__post_init__` (`Validated`); every problem found
in the arguments is collected and raised once, as a `ConfigError` whose lines name the flags. Written by hand:
transformers' HfArgumentParser parses flags or a YAML file, not a recipe that flags override, and argparse stops at
the first bad value.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """Invalid settings. One line per problem, each naming the flag (or recipe key) concerned."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def flag_help(text: str, **extra: Any) -> dict:
    """Field metadata: the flag's help text, plus `choices`, `metavar` or `repeatable=True`."""
    return {"help": text, **extra}


class Validated:
    """Mixin: `__post_init__` raises one ConfigError listing everything `problems()` found."""

    def problems(self) -> list[str]:
        return []

    def __post_init__(self):
        found = self.problems()
        if found:
            raise ConfigError(found)


def check_positive(obj: Any, names: Sequence[str], allow_none: bool = False) -> list[str]:
    """A problem line for each field of `names` that is not a positive number (None allowed with allow_none)."""
    out = []
    for name in names:
        value = getattr(obj, name)
        if value is None and allow_none:
            continue
        if value is None or value <= 0:
            out.append(f"--{name} must be a positive number, got {value}")
    return out


_NONE_WORDS = {"none", "null", ""}


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(hint: Any) -> tuple[type, bool]:
    """(scalar type, optional) of `int | None`-style annotations."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _convert(value: Any, hint: Any, where: str) -> Any:
    """A YAML or command-line value as the field's type; ValueError naming `where` otherwise."""
    base, optional = _base_type(hint)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        if optional:
            return None
        raise ValueError(f"{where} may not be empty")
    if base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{where} expects true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{where} expects an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} expects an integer, got {value!r}") from None
    if base is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} expects a number, got {value!r}") from None
    if isinstance(value, (dict, list)):
        raise ValueError(f"{where} expects a single value, got {value!r}")
    return str(value)


def _sections(cls: type) -> dict[str, type]:
    """Section name -> group dataclass of a top-level config class."""
    hints = _field_types(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def build_parser(cls: type, prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """One flag per field of every section of `cls`, grouped under the section's docstring, plus `--config`."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, allow_abbrev=False,
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="YAML", help="recipe file (flat or sectioned keys); flags override it")
    for section, group_cls in _sections(cls).items():
        group = parser.add_argument_group(section, (group_cls.__doc__ or "").strip())
        hints = _field_types(group_cls)
        for f in dataclasses.fields(group_cls):
            if f.name in getattr(cls, "HIDDEN_FLAGS", ()):
                continue
            base, optional = _base_type(hints[f.name])
            default = f.default if f.default is not dataclasses.MISSING else None
            text = f.metadata.get("help", "")
            if "default" not in text:
                text += f" (default: {default!r})"
            kwargs: dict[str, Any] = {"help": text.replace("%", "%%")}
            if f.metadata.get("repeatable"):  # joined with "; " into one value by build_config
                kwargs["action"] = "append"
            if base is bool:
                group.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, **kwargs)
            else:
                # Choices are checked with every other problem in __post_init__, not by argparse one at a time.
                metavar = "{" + ",".join(f.metadata["choices"]) + "}" if "choices" in f.metadata else None
                metavar = f.metadata.get("metavar", metavar)
                kwargs["metavar"] = metavar or {int: "N", float: "X"}.get(base, "TEXT") + ("|none" if optional else "")
                group.add_argument(f"--{f.name}", **kwargs)
    return parser


def _flatten_recipe(recipe: Mapping[str, Any], cls: type, source: str) -> tuple[dict[str, Any], list[str]]:
    """{field: value} from a flat or sectioned recipe, and the unknown keys (as problems)."""
    sections = _sections(cls)
    known = {f.name for group_cls in sections.values() for f in dataclasses.fields(group_cls)}
    flat: dict[str, Any] = {}
    problems = []
    for key, value in recipe.items():
        if key in sections and isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                if sub_key in {f.name for f in dataclasses.fields(sections[key])}:
                    flat[sub_key] = sub_value
                else:
                    problems.append(f"{source}: unknown setting {key}.{sub_key}")
        elif key in known:
            flat[key] = value
        elif key in sections and value is None:
            continue
        else:
            problems.append(f"{source}: unknown setting {key!r}")
    return flat, problems


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) recipe as a mapping; ConfigError naming the file when it is missing or malformed."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config: recipe file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def build_config(cls: type, values: Mapping[str, Any]) -> Any:
    """An instance of a top-level config class from flat {field: value}; every problem is collected first."""
    problems: list[str] = []
    groups = {}
    for section, group_cls in _sections(cls).items():
        hints = _field_types(group_cls)
        kwargs = {}
        for f in dataclasses.fields(group_cls):
            if f.name in values:
                value = values[f.name]
                if f.metadata.get("repeatable") and isinstance(value, (list, tuple)):
                    value = "; ".join(str(item) for item in value)
                try:
                    kwargs[f.name] = _convert(value, hints[f.name], f"--{f.name}")
                except ValueError as exc:
                    problems.append(str(exc))
        try:
            groups[section] = group_cls(**kwargs)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return cls(**groups)


def parse_config(cls: type, argv: Sequence[str] | None, prog: str, description: str,
                 epilog: str | None = None) -> Any:
    """Parse flags (and `--config` recipe) into `cls`. argparse itself exits 2 on unknown flags."""
    return parse_config_explicit(cls, argv, prog, description, epilog)[0]


def parse_config_explicit(cls: type, argv: Sequence[str] | None, prog: str, description: str,
                          epilog: str | None = None) -> tuple[Any, set[str]]:
    """As parse_config, plus the names of the fields the flags or the recipe set (the rest are defaults)."""
    parser = build_parser(cls, prog, description, epilog)
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    problems: list[str] = []
    recipe_path = args.pop("config", None)
    if recipe_path:
        flat, problems = _flatten_recipe(load_recipe(recipe_path), cls, str(recipe_path))
        values.update(flat)
    values.update(args)
    try:
        config = build_config(cls, values)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return config, set(values)


def config_from_dict(cls: type, recipe: Mapping[str, Any], source: str = "config") -> Any:
    """A config from a (sectioned or flat) mapping, e.g. a checkpoint's training_config.yaml."""
    flat, problems = _flatten_recipe(recipe, cls, source)
    if problems:
        raise ConfigError(problems)
    return build_config(cls, flat)

