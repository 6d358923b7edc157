"""Customer lists for ad platforms: e-mails and phone numbers, normalised and SHA-256 hashed.

Written only when the campaign allows it (``export.audiences: true``) and the audience has an
e-mail or phone column; plain values never leave this module. Normalisation follows the
platforms' published rules:

- e-mail: trim, lower-case (Meta "Hashing and normalizing data"; Google Customer Match
  "Formatting guidelines for uploading hashed data");
- phone: digits only with the country code and no leading zeros (Meta), hashed as E.164 with
  the ``+`` for Google. A number without ``+``/``00`` gets ``export.phone_country_code``;
  without one it is left out (neither platform can match it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import pandas as pd

from adgen.errors import AudienceError

EMAIL_NAMES = ("email", "e-mail", "e_mail", "email_address", "mail")
PHONE_NAMES = ("phone", "phone_number", "mobile", "mobile_phone", "telephone", "tel", "msisdn")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalise_email(value: object) -> str | None:
    """Trimmed, lower-case address, or ``None`` if it is not an e-mail address."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if _EMAIL.match(email) else None


def normalise_phone(value: object, country_code: str | None) -> str | None:
    """The number as digits with its country code and no leading zeros (``4915112345678``),
    or ``None`` when it cannot be made international."""
    if isinstance(value, float) and value == value:
        value = f"{value:.0f}"
    if not isinstance(value, str | int):
        return None
    raw = str(value).strip()
    digits = re.sub(r"\D", "", raw)
    if raw.startswith("+"):
        number = digits
    elif raw.startswith("00"):
        number = digits[2:]
    elif country_code:
        number = country_code + digits.lstrip("0")
    else:
        return None
    number = number.lstrip("0")
    return number if 8 <= len(number) <= 15 else None


@dataclass
class CustomerLists:
    """Hashed identifiers of each variant's customers, for one platform."""

    by_variant: dict[str, pd.DataFrame] = field(default_factory=dict)
    left_out: int = 0
    columns: tuple[str | None, str | None] = (None, None)


def find_column(columns: list[str], configured: str | None, names: tuple[str, ...],
                what: str) -> str | None:
    if configured is not None:
        if configured not in columns:
            raise AudienceError(f"export.{what}_column {configured!r} is not a column of the "
                                f"audience ({columns})")
        return configured
    lowered = {c.lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def customer_lists(audience: pd.DataFrame, id_column: str, assignments: pd.DataFrame, *,
                   platform: str, email_column: str | None = None,
                   phone_column: str | None = None, country_code: str | None = None
                   ) -> CustomerLists:
    """Hashed e-mail/phone of each variant's assigned customers, with the platform's headers
    (Meta ``email, phone``; Google ``Email, Phone``). Customers with neither are left out."""
    columns = [str(c) for c in audience.columns]
    email_col = find_column(columns, email_column, EMAIL_NAMES, "email")
    phone_col = find_column(columns, phone_column, PHONE_NAMES, "phone")
    lists = CustomerLists(columns=(email_col, phone_col))
    if email_col is None and phone_col is None:
        return lists
    wanted = [c for c in (email_col, phone_col) if c is not None]
    people = pd.DataFrame({"customer_id": audience[id_column].astype("string"),
                           **{f"_{i}": audience[c] for i, c in enumerate(wanted)}})
    joined = assignments[["customer_id", "variant_id"]].merge(people, on="customer_id")
    headers = ("Email", "Phone") if platform == "google" else ("email", "phone")
    prefix = "+" if platform == "google" else ""
    column = dict(zip(wanted, (f"_{i}" for i in range(len(wanted))), strict=True))
    emails = ([normalise_email(v) for v in joined[column[email_col]]] if email_col
              else [None] * len(joined))
    phones = ([normalise_phone(v, country_code) for v in joined[column[phone_col]]]
              if phone_col else [None] * len(joined))
    frame = pd.DataFrame({
        headers[0]: [sha256(e) if e else "" for e in emails],
        headers[1]: [sha256(prefix + p) if p else "" for p in phones],
        "variant_id": joined["variant_id"].to_numpy(),
    })
    usable = (frame[headers[0]] != "") | (frame[headers[1]] != "")
    lists.left_out = int((~usable).sum())
    keep = [h for h, col in zip(headers, (email_col, phone_col), strict=True) if col]
    for variant_id, group in frame[usable].groupby("variant_id", sort=True):
        lists.by_variant[str(variant_id)] = group[keep].reset_index(drop=True)
    return lists
