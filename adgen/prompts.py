"""Prompt and caption templates: a sandboxed Jinja environment, checked before anything renders.

Templates run in Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment` with ``StrictUndefined``
and autoescaping off (the output is a prompt, not HTML). Every variable a template uses is checked
against the segment context up front (``jinja2.meta``), so a missing column is reported once,
with the template and the names that do exist, instead of failing half-way through a run.
Rendered text is plain text: control characters and bidi overrides are removed and whitespace is
collapsed, so a value from customer data cannot smuggle layout or escapes downstream.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from adgen.catalog.locales import FILTERS as LOCALE_FILTERS
from adgen.errors import TemplateError

_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
_NO_BREAK = "\u00a0\u2007\u202f"  # no-break spaces (Babel puts them in "15,00 €") stay
_SPACES = re.compile(r"[^\S\u00a0\u2007\u202f]+")


def clean_text(text: str) -> str:
    """Remove control characters and bidi overrides and collapse all whitespace (newlines
    included) to single spaces: prompts and captions are one line of plain text. No-break
    spaces are kept, so "15,00 €" never wraps between the amount and the currency."""
    text = text.translate(_BIDI_CONTROLS)
    text = "".join(
        ch if ch in _NO_BREAK else " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) != "Cc"
    )
    return _SPACES.sub(" ", text).strip()


def _truncate_words(value: object, count: int = 12, end: str = "…") -> str:
    words = str(value).split()
    return " ".join(words[:count]) + (end if len(words) > count else "")


def _sentence(value: object) -> str:
    text = str(value).strip()
    return text[:1].upper() + text[1:]


def _join_and(values: Iterable[object], last: str = "and") -> str:
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


FILTERS = {"truncate_words": _truncate_words, "sentence": _sentence, "join_and": _join_and}
"""adgen's own filters, on top of Jinja's built-ins (``title``, ``lower``, ``default``, …)."""


def _defaulted_only(ast: nodes.Template) -> set[str]:
    """Names that appear only as ``name | default(...)``: they may be missing."""
    defaulted = [
        f.node.name
        for f in ast.find_all(nodes.Filter)
        if f.name in {"default", "d"} and isinstance(f.node, nodes.Name)
    ]
    loads = [n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"]
    return {name for name in defaulted if loads.count(name) == defaulted.count(name)}


class TemplateSet:
    """Compiled templates of one campaign, by name (e.g. ``hero.prompt``, ``hero.headline``)."""

    def __init__(self, template_dirs: Iterable[Path] = ()) -> None:
        dirs = [str(d) for d in template_dirs if Path(d).is_dir()]
        self.env = SandboxedEnvironment(
            undefined=StrictUndefined,
            autoescape=False,
            loader=jinja2.FileSystemLoader(dirs) if dirs else None,
            keep_trailing_newline=False,
        )
        self.env.filters.update(FILTERS)
        self.env.filters.update(LOCALE_FILTERS)
        self._templates: dict[str, jinja2.Template] = {}
        self._variables: dict[str, set[str]] = {}

    def add(self, name: str, source: str) -> None:
        """Compile an inline template; a syntax error names the template and line."""
        try:
            ast = self.env.parse(source)
            self._variables[name] = self._used_variables(ast)
            self._templates[name] = self.env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"template {name!r}, line {exc.lineno}: syntax error: {exc.message}"
            ) from None

    def add_file(self, name: str, filename: str) -> None:
        """Compile a template file looked up in the template folders."""
        if self.env.loader is None:
            raise TemplateError(
                f"template {name!r}: prompt_file {filename!r} given but no template folder "
                "exists; set template_dirs in the campaign"
            )
        try:
            source, _, _ = self.env.loader.get_source(self.env, filename)
        except jinja2.TemplateNotFound:
            raise TemplateError(
                f"template {name!r}: file {filename!r} not found in the template folders "
                f"{self.env.loader.searchpath}"  # type: ignore[attr-defined]
            ) from None
        self.add(name, source)

    def _used_variables(self, ast: nodes.Template) -> set[str]:
        names = set(meta.find_undeclared_variables(ast)) - _defaulted_only(ast)
        loader = self.env.loader
        for ref in meta.find_referenced_templates(ast):
            if ref is None or loader is None:
                continue
            try:
                source, _, _ = loader.get_source(self.env, ref)
            except jinja2.TemplateNotFound:
                raise TemplateError(f"included template {ref!r} not found") from None
            names |= self._used_variables(self.env.parse(source))
        return names

    def check_variables(self, available: Iterable[str], hint: str = "") -> None:
        """Raise :class:`TemplateError` (one line per template) if templates use variables
        that will not exist."""
        known = set(available)
        problems = []
        for name, used in self._variables.items():
            missing = sorted(used - known - set(self.env.globals))
            if missing:
                problems.append(
                    f"template {name!r} uses {', '.join(map(repr, missing))}, which "
                    f"{'is' if len(missing) == 1 else 'are'} not available; available: "
                    f"{', '.join(sorted(known))}{hint}"
                )
        if problems:  # one line per template, so a user fixes them all in one go
            raise TemplateError("\n".join(problems))

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """Render one template for one context into clean text."""
        try:
            return clean_text(self._templates[name].render(context))
        except SecurityError as exc:
            raise TemplateError(f"template {name!r} tried something unsafe: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {name!r}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {name!r}: {exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise TemplateError(f"template {name!r} failed: {exc}") from None

    def variables_of(self, prefix: str) -> set[str]:
        """Every variable the templates named ``prefix.*`` read (one creative's)."""
        return set().union(*(used for name, used in self._variables.items()
                             if name.startswith(f"{prefix}.")))

    @property
    def used_variables(self) -> set[str]:
        """Every variable any template reads."""
        return set().union(*self._variables.values()) if self._variables else set()

    @property
    def names(self) -> list[str]:
        return list(self._templates)
