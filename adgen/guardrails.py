"""Guardrails: blocked words, personal data in prompts, and brand rules on finished assets.

- ``blocked``: words or phrases (case-insensitive, whole words) or ``re:<pattern>`` regular
  expressions; a variant whose prompt, negative prompt or captions hit one is not rendered.
- personal data: e-mail addresses and phone numbers in a prompt or caption block the variant
  unless ``allow_pii: true``; audience columns whose names look personal (name, e-mail, phone,
  address, birth date) may reach templates only when listed in ``prompt_columns``.
- brand rules, checked on every asset from what post-processing recorded: the logo is present
  and not covered by text, every caption meets the contrast minimum, text is inside the safe area.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from adgen.errors import CampaignError, TemplateError
from adgen.placements import Placement

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"(?<!\w)(?!\d{4}-\d\d-\d\d(?!\d))\+?\d[\d ().-]{7,}\d(?!\w)")
"""A phone number: 9+ digits and separators (an ISO date such as 2026-03-01 is not one)."""
PERSONAL_COLUMN = re.compile(
    r"(^|_)(first|last|full|given|family|sur)?_?name$|e_?mail|phone|mobile|address|street|"
    r"birth|dob|ssn|passport", re.IGNORECASE)


def compile_blocked(patterns: Iterable[str]) -> list[tuple[str, re.Pattern[str]]]:
    """``(label, regex)`` for each blocked word, phrase or ``re:`` pattern."""
    compiled = []
    for item in patterns:
        if item.startswith("re:"):
            try:
                compiled.append((item, re.compile(item[3:], re.IGNORECASE)))
            except re.error as exc:
                raise CampaignError(f"guardrails.blocked: {item!r} is not a valid regular "
                                    f"expression ({exc})") from None
        else:
            words = r"\s+".join(re.escape(w) for w in item.split())
            compiled.append((item, re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)))
    return compiled


def check_columns(used: Iterable[str], columns: Sequence[str], allowed: Iterable[str]) -> None:
    """Refuse templates that use a personal-looking audience column not explicitly allowed."""
    allowed = set(allowed)
    personal = sorted(c for c in set(used) & set(columns)
                      if PERSONAL_COLUMN.search(c) and c not in allowed)
    if personal:
        raise TemplateError(
            f"templates use personal data column(s) {personal}; names, e-mails and the like "
            "reach prompts only when listed in guardrails.prompt_columns"
        )


def text_problem(
    texts: Mapping[str, str], blocked: Sequence[tuple[str, re.Pattern[str]]], *,
    allow_pii: bool,
) -> str | None:
    """Why a variant's text is refused (``"blocked word 'x' in headline"``), or None."""
    for field, text in texts.items():
        for label, pattern in blocked:
            if pattern.search(text):
                return f"blocked word '{label}' in {field}"
        if not allow_pii:
            if EMAIL.search(text):
                return f"an e-mail address in {field} (personal data; set guardrails.allow_pii)"
            if PHONE.search(text):
                return f"a phone number in {field} (personal data; set guardrails.allow_pii)"
    return None


def brand_violations(checks: Mapping[str, Any], placement: Placement, *, has_logo: bool,
                     min_contrast: float) -> list[str]:
    """Brand-rule violations of one asset, from what post-processing recorded in ``checks``."""
    problems = []
    logo = checks.get("logo_box")
    if has_logo and not logo:
        problems.append("logo missing")
    safe = placement.safe.box(placement.width, placement.height)
    for role, box in dict(checks.get("caption_boxes") or {}).items():
        contrast = checks.get(f"contrast_{role}")
        if isinstance(contrast, int | float) and contrast < min_contrast:
            problems.append(f"{role} contrast {contrast:.2f} < {min_contrast}")
        left, top, right, bottom = box
        if left < safe[0] or top < safe[1] or right > safe[2] or bottom > safe[3]:
            problems.append(f"{role} outside the safe area")
        if logo and not (right <= logo[0] or logo[2] <= left or bottom <= logo[1]
                         or logo[3] <= top):
            problems.append(f"{role} covers the logo")
    return problems
