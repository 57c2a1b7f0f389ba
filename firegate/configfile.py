"""Reading firegate's YAML files and reporting what is wrong with them.

Shared by the configuration and the site registry: YAML with the line of every
key, and pydantic's ValidationError turned into a ConfigError whose problems
name the key path, the reason, the value (secrets masked) and where it was set.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import PydanticCustomError

from firegate.errors import MISSING, ConfigError, ConfigProblem, mask_url


def raise_problems(problems: list[tuple[str, str, object]]) -> None:
    """Raise rule violations that involve several keys; ``config_error`` expands them."""
    if problems:
        raise PydanticCustomError(
            "firegate_config",
            "{summary}",
            {"summary": "; ".join(f"{k}: {r}" for k, r, _ in problems), "problems": problems},
        )


# ---------------------------------------------------------------------------
# YAML reading with line numbers

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers (``12:30`` would be 750) and
    with mapping keys kept as the text written (``on:`` stays "on", ``0012:`` "0012")."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        self.flatten_mapping(node)
        mapping: dict[Hashable, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be plain text", key_node.start_mark
                )
            mapping[str(key_node.value)] = self.construct_object(value_node, deep=deep)
        return mapping


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


@dataclass
class YamlDoc:
    """A parsed YAML file and the line of every key path, for error messages."""

    name: str
    data: Any
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    # duplicate keys, with their line, when read_yaml was asked to go on (the last one counts)
    duplicates: list[tuple[int, ConfigProblem]] = field(default_factory=list)

    def line_of(self, path: tuple[str, ...]) -> int | None:
        """The line of ``path``, or of its nearest ancestor written in the file."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def read_yaml(path: str | Path, *, keep_duplicates: bool = False) -> YamlDoc:
    """Parse a YAML file; every failure (missing, unreadable, syntax, duplicate key) is a ConfigError.

    With ``keep_duplicates`` duplicate keys are not raised but listed in ``doc.duplicates``
    (the data has the last value), so that they are reported with the rest."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.single(name, "file not found") from None
    except IsADirectoryError:
        raise ConfigError.single(name, "is a directory, not a file") from None
    except PermissionError:
        raise ConfigError.single(name, "permission denied") from None
    except UnicodeDecodeError as e:
        raise ConfigError.single(name, f"not UTF-8 text (bad byte at offset {e.start})") from None
    except OSError as e:
        raise ConfigError.single(name, f"cannot read: {e.strerror or e}") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        doc = YamlDoc(name, None)
        if node is not None:
            _index(node, (), doc, doc.duplicates)
            if doc.duplicates and not keep_duplicates:
                raise ConfigError(p for _, p in doc.duplicates)
            doc.data = loader.construct_document(node)
        return doc
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(s) for s in (e.context, e.problem) if s)
        raise ConfigError.single(name, f"YAML syntax error{at}: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError.single(name, f"YAML error: {e}") from None
    finally:
        loader.dispose()


def _index(
    node: yaml.Node, path: tuple[str, ...], doc: YamlDoc, dups: list[tuple[int, ConfigProblem]]
) -> None:
    if len(path) > 32:  # an alias loop; the constructor reports what matters
        return
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = str(key_node.value), key_node.start_mark.line + 1
            sub = (*path, key)
            if key in seen:
                why = f"duplicate key (first at line {seen[key]})"
                dups.append((line, ConfigProblem(".".join(sub), why, where=f"{doc.name}:{line}")))
            seen.setdefault(key, line)
            doc.lines[sub] = line
            _index(value_node, sub, doc, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            doc.lines[(*path, str(i))] = item.start_mark.line + 1
            _index(item, (*path, str(i)), doc, dups)


# ---------------------------------------------------------------------------
# validation errors -> ConfigError

_SECRET_KEYS = {"password", "token"}


def _shown(path: tuple[str, ...], value: object) -> object:
    if path and path[-1] in _SECRET_KEYS and value is not MISSING:
        return "***"
    if isinstance(value, SecretStr):
        return "***"
    return mask_url(value) if isinstance(value, str) else value


def is_model(obj: object) -> TypeGuard[type[BaseModel]]:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _fields_at(model: type[BaseModel], path: tuple[str, ...]) -> list[str]:
    """Field names of the model found at ``path`` (for "did you mean")."""
    current: Any = model
    items = iter(path)
    for part in items:
        if not is_model(current) or part not in current.model_fields:
            return []
        ann = current.model_fields[part].annotation
        candidates = [ann, *get_args(ann)]
        nested = [a for a in candidates if is_model(a)]
        dicts = [a for a in candidates if get_origin(a) is dict]
        lists = [a for a in candidates if get_origin(a) is list and is_model(get_args(a)[0])]
        if lists:
            current = get_args(lists[0])[0]
            next(items, None)  # the next path element is a list index
        elif nested:
            current = nested[0]
        elif dicts:
            current = get_args(dicts[0])[1]
            next(items, None)  # the next path element is a dict key
        else:
            return []
    return list(current.model_fields) if is_model(current) else []


def env_var(prefix: str, path: tuple[str, ...]) -> str | None:
    """The environment variable that sets ``path``, if one is set (any case).

    That is ``PREFIX_A__B__C`` itself, or the variable of an enclosing key whose JSON
    value holds the path (``FIREGATE_FAULTS__MQTT='[{"url": ...}]'`` sets
    ``faults.mqtt.0.url``); the longest such name wins, as it does when the values merge.
    """
    for end in range(len(path), 0, -1):
        name = prefix + "__".join(path[:end]).upper()
        var = next((k for k in os.environ if k.upper() == name), None)
        if var is not None and (end == len(path) or _json_holds(os.environ[var], path[end:])):
            return var
    return None


def _json_holds(text: str, path: tuple[str, ...]) -> bool:
    try:
        value: Any = json.loads(text)
    except ValueError:
        return False
    for part in path:
        if isinstance(value, dict):
            key = next((k for k in value if str(k).lower() == part.lower()), None)
            if key is None:
                return False
            value = value[key]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False
    return True


Item = tuple[tuple[str, ...], str, object]
"""One problem before it is located: key path, reason, offending value (or MISSING)."""


def source_of(path: tuple[str, ...], doc: YamlDoc | None, env_prefix: str | None) -> str | None:
    """Where the value at ``path`` comes from: ``env VAR`` or ``file:line`` (None: a default)."""
    var = env_var(env_prefix, path) if env_prefix else None
    if var:
        return f"env {var}"
    line = doc.line_of(path) if doc is not None else None
    return f"{doc.name}:{line}" if doc is not None and line else None


def validation_items(exc: ValidationError, *, model: type[BaseModel]) -> list[Item]:
    """The problems in a pydantic ValidationError, each with its key path and a readable reason."""
    items: list[Item] = []
    for err in exc.errors():
        # pydantic marks an invalid dict key with a trailing "[key]"; the path already names it
        loc = tuple(str(p) for p in err["loc"] if p != "[key]")
        ctx = err.get("ctx") or {}
        if err["type"] == "firegate_config":
            items += [((*loc, *k.split(".")), r, v) for k, r, v in ctx["problems"]]
            continue
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
            close = difflib.get_close_matches(loc[-1], _fields_at(model, loc[:-1]), n=1, cutoff=0.8)
            if close:
                reason += f" (did you mean {close[0]!r}?)"
            # its value is never shown: a misspelled `pasword` holds a secret all the same
            items.append((loc, reason, MISSING))
            continue
        items.append((loc, reason[:1].lower() + reason[1:], err.get("input", MISSING)))
    return items


def located(
    items: Iterable[Item], *, doc: YamlDoc | None, env_prefix: str | None = None
) -> list[tuple[int | None, ConfigProblem]]:
    """Problems with their source (env variable, else file line), keyed by file line for sorting."""
    out: list[tuple[int | None, ConfigProblem]] = []
    for path, reason, value in items:
        line = doc.line_of(path) if doc is not None else None
        where = source_of(path, doc, env_prefix)
        out.append((line, ConfigProblem(".".join(path), reason, _shown(path, value), where)))
    return out


def in_file_order(problems: Iterable[tuple[int | None, ConfigProblem]]) -> ConfigError:
    """One ConfigError, problems in file order (how the operator reads and fixes them), then the rest."""
    ordered = sorted(problems, key=lambda lp: (lp[0] is None, lp[0] or 0))
    return ConfigError(p for _, p in ordered)


def config_error(
    exc: ValidationError, *, model: type[BaseModel], doc: YamlDoc | None, env_prefix: str | None = None
) -> ConfigError:
    """Turn a pydantic ValidationError into a ConfigError with key paths and locations."""
    return in_file_order(located(validation_items(exc, model=model), doc=doc, env_prefix=env_prefix))
