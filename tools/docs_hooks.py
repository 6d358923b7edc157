"""MkDocs hooks of adgen's documentation site (``mkdocs.yml`` names this file under ``hooks:``).

- The campaign reference is generated from the campaign spec's pydantic models, so it cannot
  drift: each ``<!-- keys: PATH -->`` marker in a page, followed by a table of
  ``| key | meaning | example |`` rows, becomes a section with the model's docstring and a table
  whose type and default columns come from the model. The build fails when a field has no row,
  a row names no field, a section of the campaign has no marker, or a key has no example (the
  example column, else the first value a shipped campaign in ``campaigns/`` gives it).
- The API reference (``::: adgen``) misses the public names that share their name with a
  submodule (``adgen.export``: griffe documents the submodule); ``<!-- api: shadowed -->`` becomes
  a directive for each of them, and the build fails when a name of ``adgen.__all__`` is not on
  the page.
- Sphinx roles in docstrings (``:class:`X```) are shown as code, linked on the API page.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

REPO = Path(__file__).resolve().parents[1]
ROOT = "campaign"  # the marker path of the campaign's top level
_KEYS = re.compile(r"^<!-- keys: (\S+) -->\n((?:\|.*\|\n)+)", re.MULTILINE)
_SHADOWED = "<!-- api: shadowed -->"
API_PAGE = "api.md"


class DocsError(ValueError):
    """The documentation source disagrees with the code; the message says where and how."""


# ---- the campaign's sections -------------------------------------------------------------


def _args(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _model_in(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The model a field holds, and the suffix of its section's path: ``""`` for the model
    itself, ``[]`` for a list of them, ``.<name>`` for a map of them."""
    if _is_union(annotation):
        found = [m for m in map(_model_in, _args(annotation)) if m is not None]
        return found[0] if found else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    origin = typing.get_origin(annotation)
    if origin is list:
        inner = _model_in(_args(annotation)[0])
        return (inner[0], "[]" + inner[1]) if inner else None
    if origin is dict:
        inner = _model_in(_args(annotation)[1])
        return (inner[0], ".<name>" + inner[1]) if inner else None
    return None


@functools.cache
def sections(model: type[BaseModel] | None = None, path: str = ROOT
             ) -> dict[str, type[BaseModel]]:
    """Every section of a campaign, by path (``audience``, ``creatives[].video``), in order."""
    if model is None:
        from adgen.spec import CampaignSpec

        model = CampaignSpec
    found = {path: model}
    for name, field in model.model_fields.items():
        inner = _model_in(field.annotation)
        if inner is not None:
            child = (name if path == ROOT else f"{path}.{name}") + inner[1]
            found.update(sections(inner[0], child))
    return found


def anchor(path: str) -> str:
    """The HTML id of a section's heading."""
    return "top-level" if path == ROOT else re.sub(r"[^a-z0-9_]+", "-", path).strip("-")


# ---- the columns taken from the models ---------------------------------------------------

_SCALARS = {bool: "true/false", int: "integer", float: "number", str: "text", Path: "path"}


def type_text(annotation: Any) -> str:
    """A field's type in words: ``integer``, ``list of text``, ``one of `a`, `b```."""
    inner = _model_in(annotation)
    if inner is not None and not _is_union(annotation):
        path_suffix = inner[1]
        kind = "list of" if path_suffix.startswith("[]") else "map of names to"
        return "section" if not path_suffix else f"{kind} sections"
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if annotation is Any:
        return "any value"
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in _args(annotation))
    if _is_union(annotation):
        parts = [a for a in _args(annotation) if a is not type(None)]
        text = " or ".join(
            " or ".join(f"`{v}`" for v in _args(a)) if typing.get_origin(a) is Literal
            else _grouped(type_text(a)) for a in parts)
        return text + (" or `null`" if len(parts) < len(_args(annotation)) else "")
    if origin is list:
        return "list of " + _grouped(type_text(_args(annotation)[0]))
    if origin is dict:
        key, value = (type_text(a) for a in _args(annotation))
        return f"map of {key} to {_grouped(value)}"
    raise DocsError(f"docs hook: no words for the type {annotation!r}; add it to type_text")


def _grouped(text: str) -> str:
    return f"({text})" if " or " in text else text


def bounds_text(field: FieldInfo) -> str:
    """A field's limits: ``≥ 1, ≤ 100``, ``at least 1 item``, ``matching `^[A-Z]{2}$```."""
    words = []
    for item in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            if isinstance(item, getattr(annotated_types, attr.capitalize())):
                words.append(f"{sign} {getattr(item, attr):g}")
        if isinstance(item, annotated_types.MinLen):
            words.append(f"at least {item.min_length} item")
        if getattr(item, "pattern", None):
            words.append(f"matching `{item.pattern}`")
    return ", ".join(words)


def flow(value: Any) -> str:
    """A value as one line of YAML."""
    text = yaml.safe_dump(_plain(value), default_flow_style=True, allow_unicode=True,
                          width=10_000, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _plain(value: Any) -> Any:
    """``value`` as what YAML writes: models by their keys that differ from the defaults."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    inner = _model_in(field.annotation)
    if inner is not None and inner[1] == "" and not _is_union(field.annotation):
        return "see its keys"  # a section: its keys have the defaults
    return _code(flow(field.get_default(call_default_factory=True)))


def _code(text: str, limit: int = 70) -> str:
    """``text`` as a code span fit for a table cell (cut at ``limit`` characters)."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"`` {text} ``" if "`" in text else f"`{text}`"


# ---- examples from the shipped campaigns -------------------------------------------------


def campaign_examples(folder: Path = REPO / "campaigns") -> dict[str, Any]:
    """The first value each key has in the campaigns of ``folder`` (northwind-spring first),
    by key path: ``audience.segment_by``, ``creatives[].captions``."""
    found: dict[str, Any] = {}
    files = sorted(folder.glob("*.yaml"), key=lambda p: (p.stem != "northwind-spring", p.name))
    for path in files:
        for key, value in _leaves(yaml.safe_load(path.read_text(encoding="utf-8")), ROOT):
            found.setdefault(key, value)
    return found


def _leaves(data: Any, path: str) -> Iterator[tuple[str, Any]]:
    model = sections()[path]
    if not isinstance(data, dict):
        if model.__name__ == "PlacementSpec" and isinstance(data, str):  # the short form
            yield f"{path}.placement", data
        return
    for name, value in data.items():
        field = model.model_fields.get(name)
        if field is None:
            continue
        key = name if path == ROOT else f"{path}.{name}"
        inner = _model_in(field.annotation)
        if inner is None:
            yield key, value
        elif inner[1] == "" and value is not None:
            yield from _leaves(value, key)
        elif inner[1] == "[]":
            for item in value or []:
                yield from _leaves(item, key + "[]")
        elif inner[1] == ".<name>":
            for item in (value or {}).values():
                yield from _leaves(item, key + ".<name>")


# ---- the page ------------------------------------------------------------------------------


def table_cells(line: str) -> list[str]:
    """A table row's cells; a ``|`` inside a code span is text, as Markdown reads it."""
    cells, cell, ticks = [], "", ""
    for part in re.split(r"(`+|\|)", line.strip()):
        if part == "|" and not ticks:
            cells.append(cell.strip())
            cell = ""
            continue
        if part.startswith("`"):
            ticks = "" if part == ticks else ticks or part
        cell += part
    return cells[1:]


def render_section(path: str, table: str, examples: dict[str, Any], where: str) -> str:
    """The section of ``path``: its heading, the model's docstring and the full key table."""
    known = sections()
    if path not in known:
        raise DocsError(f"{where}: <!-- keys: {path} --> names no section of a campaign; "
                        f"the sections are: {', '.join(known)}")
    model = known[path]
    lines = table.strip().splitlines()
    if table_cells(lines[0]) != ["key", "meaning", "example"]:
        raise DocsError(f"{where}: the table after <!-- keys: {path} --> must start with "
                        "| key | meaning | example |")
    rows: dict[str, tuple[str, str]] = {}
    for line in lines[2:]:
        cells = table_cells(line)
        if len(cells) != 3:
            raise DocsError(f"{where}: {path}: this row needs 3 cells (key, meaning, example): "
                            f"{line}")
        key = cells[0].strip("`")
        if key in rows:
            raise DocsError(f"{where}: {path}: key `{key}` has two rows")
        rows[key] = (cells[1], cells[2])
    fields = model.model_fields
    problems = []
    unknown = [key for key in rows if key not in fields]
    if unknown:
        problems.append(f"{', '.join(unknown)} is not a field of {model.__name__}: remove the "
                        "row or fix its spelling")
    missing = [name for name in fields if name not in rows]
    if missing:
        problems.append(f"no row for {', '.join(missing)} (of {model.__name__}): add "
                        f"| `{missing[0]}` | what it does | example |")
    if problems:
        raise DocsError(f"{where}: {path}: " + "; ".join(problems))
    out = ["| key | type | default | example | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, field in fields.items():
        meaning, example = rows[name]
        key = name if path == ROOT else f"{path}.{name}"
        inner = _model_in(field.annotation)
        kind = type_text(field.annotation)
        if inner is not None:
            word = re.search(r"\bsections?\b", kind)
            if word:  # the word "section(s)" links to the section's own table
                link = f"[{word.group(0)}](#{anchor(key + inner[1])})"
                kind = kind[: word.start()] + link + kind[word.end():]
        limits = bounds_text(field)
        if limits:
            kind += f" ({limits})"
        if not example:
            if key in examples:
                example = _code(flow(examples[key]))
            elif inner is not None:
                example = "—"
            else:
                raise DocsError(f"{where}: {key} has no example and no campaign in campaigns/ "
                                "sets it: fill the row's example cell")
        out.append(f"| `{name}` | {kind} | {default_text(field)} | {example} | {meaning} |")
    title = "Top level" if path == ROOT else f"`{path}`"
    doc = " ".join((model.__doc__ or "").split())
    return f"## {title} {{#{anchor(path)}}}\n\n{doc}\n\n" + "\n".join(out) + "\n"


def render_keys(markdown: str, where: str) -> str:
    """``markdown`` with each keys marker and its table replaced by the generated section;
    every section of a campaign must have its marker when any does."""
    found = [m.group(1) for m in _KEYS.finditer(markdown)]
    if not found:
        return markdown
    missing = [path for path in sections() if path not in found]
    if missing:
        raise DocsError(f"{where}: no <!-- keys: {missing[0]} --> section"
                        f"{' (and ' + str(len(missing) - 1) + ' more)' if missing[1:] else ''};"
                        " each section of a campaign needs one")
    examples = campaign_examples()
    return _KEYS.sub(lambda m: render_section(m.group(1), m.group(2), examples, where),
                     markdown)


# ---- the API page ------------------------------------------------------------------------


def shadowed() -> dict[str, str]:
    """Public names that a submodule of the same name hides from griffe, with the path of the
    object itself: ``{"export": "adgen.export.export"}``."""
    import adgen

    found = {}
    for name in adgen.__all__:
        if (REPO / "adgen" / f"{name}.py").exists() or (REPO / "adgen" / name).is_dir():
            found[name] = f"{getattr(adgen, name).__module__}.{name}"
    return found


def api_directives() -> str:
    return "\n".join(
        f"::: {target}\n    options:\n      heading: \"{name}\"\n      show_root_heading: true\n"
        for name, target in shadowed().items()
    )


def check_api(html: str) -> None:
    """Every name of ``adgen.__all__`` has its entry on the API page."""
    import adgen

    ids = set(re.findall(r'id="([^"]+)"', html))
    targets = shadowed()
    missing = [name for name in adgen.__all__
               if f"adgen.{name}" not in ids and targets.get(name) not in ids]
    if missing:
        raise DocsError(f"docs/{API_PAGE}: no entry for adgen.{', adgen.'.join(missing)}: "
                        "give it a docstring, or see tools/docs_hooks.py")


_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>~?([^<]+)</code>")


def clean_roles(html: str, link: bool) -> str:
    """Sphinx roles (``:class:`X```) as code; on the API page, public names link to their
    entry. A reST ``::`` before a literal block becomes ``:``."""
    import adgen

    def code(match: re.Match[str]) -> str:
        name = match.group(1).removeprefix("adgen.")
        if link and name in adgen.__all__ and name not in shadowed():
            return f'<a href="#adgen.{name}"><code>{name}</code></a>'
        return f"<code>{match.group(1)}</code>"

    return _ROLE.sub(code, html).replace("::</p>", ":</p>")


# ---- MkDocs ------------------------------------------------------------------------------


def _plugin_error(exc: DocsError) -> Exception:
    from mkdocs.exceptions import PluginError

    return PluginError(str(exc))


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    try:
        markdown = render_keys(markdown, f"docs/{page.file.src_uri}")
    except DocsError as exc:
        raise _plugin_error(exc) from None
    if page.file.src_uri == API_PAGE:
        markdown = markdown.replace(_SHADOWED, api_directives())
    return markdown


def on_page_content(html: str, page: Any, **_: Any) -> str:
    if page.file.src_uri == API_PAGE:
        try:
            check_api(html)
        except DocsError as exc:
            raise _plugin_error(exc) from None
    return clean_roles(html, link=page.file.src_uri == API_PAGE)
