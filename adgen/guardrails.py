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

# Linear time: a match can only start at an "@" (the local part is checked by the lookbehind),
# and the domain's runs cannot overlap, so a long value without an e-mail is one quick pass.
EMAIL = re.compile(r"(?<=[\w.+-])@[\w-]+(?:\.[\w-]+)+")
PROMPT_FIELDS = frozenset({"prompt", "negative_prompt"})
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


def has_phone_number(text: str, region: str | None) -> bool:
    """Whether ``text`` holds a valid phone number (the ``phonenumbers`` parser: dates, prices,
    decimals and order numbers are not phone numbers). Numbers without a ``+`` country code are
    read as numbers of ``region``."""
    import phonenumbers

    if sum(c.isdigit() for c in text) < 7:
        return False
    matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
    return matcher.has_next()


def text_problem(
    texts: Mapping[str, str], blocked: Sequence[tuple[str, re.Pattern[str]]], *,
    allow_pii: bool, max_prompt_chars: int = 2000, max_caption_chars: int = 500,
    phone_region: str | None = "US",
) -> str | None:
    """Why a variant's text is refused (``"blocked word 'x' in headline"``), or None. Lengths
    are checked first, so patterns only ever run on bounded text."""
    for field, text in texts.items():
        limit, name = ((max_prompt_chars, "max_prompt_chars") if field in PROMPT_FIELDS
                       else (max_caption_chars, "max_caption_chars"))
        if len(text) > limit:
            return (f"{field} is {len(text):,} characters, over guardrails.{name} ({limit:,}); "
                    "shorten the template or the values it uses")
    for field, text in texts.items():
        for label, pattern in blocked:
            if pattern.search(text):
                return f"blocked word '{label}' in {field}"
        if not allow_pii:
            if EMAIL.search(text):
                return f"an e-mail address in {field} (personal data; set guardrails.allow_pii)"
            if has_phone_number(text, phone_region):
                return f"a phone number in {field} (personal data; set guardrails.allow_pii)"
    return None


OVER_SUBJECT = 0.02
"""Share of the product's box that text or the logo may cover before it is a violation."""


def over_subject(checks: Mapping[str, Any]) -> dict[str, float]:
    """How much of the product's box (``subject_box``) each caption (its button plate, for
    buttons) and the logo (its plate, if any) cover, as shares of that box; only those that
    cover some of it. Empty when the subject is unknown."""
    subject = checks.get("subject_box")
    if not subject:
        return {}
    area = max(1, (subject[2] - subject[0]) * (subject[3] - subject[1]))
    boxes = {role: checks.get(f"plate_{role}") or box
             for role, box in dict(checks.get("caption_boxes") or {}).items()}
    if checks.get("logo_box"):
        boxes["logo"] = checks["logo_box"]
    out = {}
    for role, box in boxes.items():
        width = min(box[2], subject[2]) - max(box[0], subject[0])
        height = min(box[3], subject[3]) - max(box[1], subject[1])
        if width > 0 and height > 0:
            out[role] = round(width * height / area, 4)
    return out


def brand_violations(checks: Mapping[str, Any], placement: Placement, *, has_logo: bool,
                     min_contrast: float) -> list[str]:
    """Brand-rule violations of one asset, from what post-processing recorded in ``checks``:
    logo missing, caption contrast below ``min_contrast``, captions outside the safe area or
    on the logo, and text or the logo over the product (more than :data:`OVER_SUBJECT` of
    its box, measured by :func:`over_subject`)."""
    problems = []
    for role, share in over_subject(checks).items():
        if share > OVER_SUBJECT:
            what = "logo" if role == "logo" else f"{role} text"
            problems.append(f"{what} over the product ({share:.0%} of it covered)")
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
