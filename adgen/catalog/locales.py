"""Locales: each customer's language, translated captions, and locale-aware formatting.

- A locale comes from an audience column (``locale.column``), else ``locale.value``, else
  ``locale.default``. Values are BCP 47 or POSIX tags (``de``, ``de-AT``, ``pt_BR``, ``ar``);
  segments are split by locale, so every variant has exactly one.
- A caption is given per locale (``headline: {en: ..., de: ...}``) or as one text whose
  translations come from gettext catalogs (``locale.translations``: ``<locale>.po`` or
  ``<locale>/LC_MESSAGES/*.po``, read with Babel; the caption text is the msgid). A locale is
  looked up as given, then by its language (``de_AT`` → ``de``); when neither has the caption, the
  default locale's is used if ``locale.fallback`` is true, else validation fails naming every
  missing (caption, locale) pair.
- Templates format with Babel for the variant's locale: ``{{ product.price | currency }}``,
  ``{{ 1234.5 | number }}``, ``{{ 0.2 | percent }}``, ``{{ ends | date }}``.
- Right-to-left locales (Arabic, Hebrew, Persian, Urdu, …) get a mirrored layout.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError, dates, numbers
from babel.messages.catalog import Catalog as MessageCatalog
from babel.messages.pofile import read_po
from jinja2 import pass_context
from jinja2.runtime import Context

from adgen.catalog.feeds import Money
from adgen.errors import CampaignError, TemplateError

LOCALE_KEY = "locale"
"""The template variable holding the variant's locale (``de_DE``)."""


@lru_cache(maxsize=1024)
def parse_locale(value: str) -> Locale:
    """A Babel locale from ``de``, ``de-DE``, ``de_DE`` or ``zh-Hant-TW``; :class:`ValueError`
    for anything Babel does not know."""
    text = str(value).strip()
    if not text:
        raise ValueError("empty locale")
    try:
        return Locale.parse(text.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        raise ValueError(f"unknown locale {text[:20]!r}") from None


def normalise_locale(value: str) -> str:
    """The canonical tag of a locale (``de-de`` → ``de_DE``)."""
    return str(parse_locale(value))


def is_rtl(locale: str) -> bool:
    """True for right-to-left scripts (Arabic, Hebrew, …)."""
    return parse_locale(locale).character_order == "right-to-left"


def candidates(locale: str) -> list[str]:
    """Lookup order for a locale's captions: ``de_AT``, then ``de``."""
    parsed = parse_locale(locale)
    return list(dict.fromkeys([str(parsed), parsed.language]))


# -- gettext catalogs ---------------------------------------------------------------------------


class Translations:
    """gettext ``.po`` catalogs of a folder, by locale."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._catalogs: dict[str, MessageCatalog] = {}
        if folder is None:
            return
        if not folder.is_dir():
            raise CampaignError(f"locale.translations: folder not found: {folder}")
        for path in sorted(folder.glob("*.po")) + sorted(folder.glob("*/LC_MESSAGES/*.po")):
            name = path.stem if path.parent == folder else path.parent.parent.name
            try:
                key = normalise_locale(name)
            except ValueError as exc:
                raise CampaignError(f"{path}: {exc}; name catalogs by locale (de.po, "
                                    "pt_BR.po)") from None
            try:
                with path.open("rb") as handle:
                    self._catalogs[key] = read_po(handle, locale=key)
            except Exception as exc:  # babel raises PoFileError and plain ValueErrors
                raise CampaignError(f"{path}: not a readable gettext catalog ({exc})") from None

    def lookup(self, msgid: str, locale: str) -> str | None:
        """The translation of ``msgid`` for ``locale`` (or its language), if any."""
        for key in candidates(locale):
            catalog = self._catalogs.get(key)
            message = catalog.get(msgid) if catalog is not None else None
            if message is not None and message.string and not message.fuzzy:
                return str(message.string)
        return None


def caption_source(source: str | Mapping[str, str], locale: str, *, default: str,
                   translations: Translations, fallback: bool) -> str | None:
    """The template text of a caption for ``locale``, or None when it has no translation
    (and ``fallback`` is off)."""
    lookup = candidates(locale)
    if isinstance(source, Mapping):
        by_locale = {normalise_locale(k): v for k, v in source.items()}
        by_locale |= {parse_locale(k).language: v for k, v in source.items()
                      if parse_locale(k).language not in by_locale}
        for key in lookup:
            if key in by_locale:
                return by_locale[key]
        if fallback:
            for key in candidates(default):
                if key in by_locale:
                    return by_locale[key]
        return None
    if parse_locale(locale).language == parse_locale(default).language or _neutral(source):
        return source
    translated = translations.lookup(source, locale)
    if translated is not None:
        return translated
    return source if fallback else None


_JINJA = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.DOTALL)


def _neutral(source: str) -> bool:
    """True for a caption with no words of its own (``{{ product.price | currency }}``): it
    reads the same in every language and needs no translation."""
    return not any(ch.isalpha() for ch in _JINJA.sub("", source))


def check_translations(missing: Iterable[tuple[str, str]]) -> None:
    """Raise :class:`TemplateError` listing (caption, locale) pairs with no translation."""
    pairs = sorted(set(missing))
    if not pairs:
        return
    lines = [f"caption {name!r} has no {locale!r} translation" for name, locale in pairs[:20]]
    more = len(pairs) - len(lines)
    raise TemplateError(
        "; ".join(lines) + (f" and {more} more" if more > 0 else "")
        + ": add them to the caption (headline: {de: ...}) or the gettext catalog, or set "
        "locale.fallback: true to use the default locale's text")


# -- formatting filters -------------------------------------------------------------------------


def _locale_of(context: Context) -> str:
    return str(context.get(LOCALE_KEY) or "en")


def _amount(value: Any) -> Decimal | float:
    if isinstance(value, Money):
        return value.amount
    if isinstance(value, Decimal | int | float):
        return value
    return Decimal(str(value).strip().replace(",", ""))


@pass_context
def currency_filter(context: Context, value: Any, currency: str | None = None,
                    format: str | None = None) -> str:
    """``{{ product.price | currency }}`` → ``15,00 €`` in ``de_DE``."""
    code = currency or (value.currency if isinstance(value, Money) else None)
    if not code:
        raise ValueError("currency filter: give the currency, e.g. {{ 15 | currency('EUR') }}")
    return numbers.format_currency(_amount(value), code, format=format,
                                   locale=_locale_of(context))


@pass_context
def number_filter(context: Context, value: Any, digits: int | None = None) -> str:
    """``{{ 1234.5 | number }}`` → ``1.234,5`` in ``de``; ``number(0)`` rounds."""
    amount = _amount(value)
    if digits is None:
        return numbers.format_decimal(amount, locale=_locale_of(context))
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
    return numbers.format_decimal(amount, format=pattern, locale=_locale_of(context))


@pass_context
def percent_filter(context: Context, value: Any) -> str:
    """``{{ 0.2 | percent }}`` → ``20 %`` in ``de``."""
    return numbers.format_percent(_amount(value), locale=_locale_of(context))


@pass_context
def date_filter(context: Context, value: Any, format: str = "medium") -> str:
    """``{{ '2026-03-15' | date }}`` → ``15.03.2026`` in ``de``; format ``short``, ``medium``,
    ``long``, ``full`` or a CLDR pattern such as ``d MMMM``."""
    if isinstance(value, str):
        value = dt.date.fromisoformat(value.strip()[:10])
    return dates.format_date(value, format=format, locale=_locale_of(context))


FILTERS = {"currency": currency_filter, "number": number_filter, "percent": percent_filter,
           "date": date_filter}
"""Locale-aware filters every template has."""
