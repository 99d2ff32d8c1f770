"""YAML that refuses what plain `yaml.safe_load` lets pass, and remembers where everything stood.

A duplicate key is an error (safe_load keeps the last one silently), and every mapping comes back as a `YamlMap`
that knows its file and the line of each key, so that whoever checks the keys afterwards can point at the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlError(ValueError):
    """A file or text that is not valid YAML, or holds a duplicate key. The message starts with `file:line:`."""


class YamlMap(dict):
    """A mapping read from YAML: a plain dict that also knows where it and each of its keys stood."""

    def __init__(
        self, data: Any = (), *, source: str = "<yaml>", line: int = 0, key_lines: dict[Any, int] | None = None
    ):
        super().__init__(data)
        self.source, self.line, self.key_lines = source, line, dict(key_lines or {})

    def where(self, key: Any = None) -> str:
        """`file:line` of `key`, or of the mapping itself."""
        line = self.key_lines.get(key, self.line) if key is not None else self.line
        return f"{self.source}:{line}"


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> YamlMap:
    loader.flatten_mapping(node)
    out = YamlMap(source=loader.name, line=node.start_mark.line + 1)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise YamlError(f"{loader.name}:{line}: a mapping key must be a scalar, got {key!r}") from None
        if key in out:
            raise YamlError(f"{loader.name}:{line}: duplicate key {key!r} (first at line {out.key_lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_text(text: str, source: str = "<yaml>") -> Any:
    """The YAML document in `text`; `source` names it in errors."""
    loader = _Loader(text)
    loader.name = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise YamlError(f"{source}: not valid YAML: {e}") from None
    finally:
        loader.dispose()


def load_file(path: str | Path, source: str | None = None) -> Any:
    """The YAML document in the file at `path`; `source` (default: the path) names it in errors."""
    p = Path(path)
    return load_text(p.read_text(encoding="utf-8"), source or str(p))
