"""The CRM contact export, with the mess real exports have.

Who is in the CRM: everyone with a webshop account or a loyalty card, and
all leads (newsletter and lead-form sign-ups). The export is a snapshot
at the end of the window, one row per contact -- plus duplicate contacts
for about 3% of people who registered twice (a new e-mail address or a
different spelling of their name). E-mail case and spacing vary, a few
addresses have typos, phone numbers come in half a dozen formats and
fields are missing here and there. Normalisation and fuzzy matching are
meant to be tested against this.
"""

from __future__ import annotations

import random

from . import names
from .clock import DAY, Window, plain
from .people import Person, ascii_fold
from .writer import GroundTruth, message_id

CRM_COLUMNS = ["message_id", "customer_id", "first_name", "last_name",
               "email", "phone", "street", "house_number", "postcode", "city",
               "birth_date", "loyalty_card", "webshop_user_id", "created_at",
               "updated_at"]
DUPLICATE_SHARE = 0.035     # a few late registrations cannot get a duplicate
EMAIL_TYPO_SHARE = 0.02

PHONE_FORMATS = [
    lambda d: f"06-{d}",
    lambda d: f"+31 6 {d[:4]} {d[4:]}",
    lambda d: f"00316{d}",
    lambda d: f"6{d}",
    lambda d: f"+316{d}",
    lambda d: f"06{d}",
    lambda d: f"06 {d[:2]} {d[2:4]} {d[4:6]} {d[6:]}",
]
PHONE_WEIGHTS = [25, 15, 8, 7, 20, 20, 5]


def phone_variant(py: random.Random, canonical: str) -> str:
    """Render ``+316XXXXXXXX`` in one of the formats people type."""
    digits = canonical[4:]
    return py.choices(PHONE_FORMATS, weights=PHONE_WEIGHTS)[0](digits)


def email_variant(py: random.Random, email: str) -> str:
    """Same address, different case or stray spaces."""
    local, _, domain = email.partition("@")
    r = py.random()
    if r < 0.35:
        local = ".".join(part.capitalize() for part in local.split("."))
        return f"{local}@{domain}"
    if r < 0.55:
        return email.upper()
    if r < 0.75:
        return f"{local}@{domain.capitalize()}"
    return py.choice([f" {email}", f"{email} ", f"  {email} "])


def email_typo(py: random.Random, email: str) -> str:
    local, _, domain = email.partition("@")
    if domain in names.DOMAIN_TYPOS and py.random() < 0.7:
        return f"{local}@{py.choice(names.DOMAIN_TYPOS[domain])}"
    i = py.randrange(1, max(2, len(local) - 1))
    if py.random() < 0.5:
        local = local[:i] + local[i + 1:]            # dropped letter
    else:
        local = local[:i] + local[i] + local[i:]     # doubled letter
    return f"{local}@{domain}"


def _messy_last_name(py: random.Random, last: str) -> str:
    r = py.random()
    if r < 0.05 and last[0].islower():
        return last[0].upper() + last[1:]             # "Van der Meer"
    if r < 0.07:
        return last.upper()
    return last


def _row(py: random.Random, p: Person, created: int, updated: int) -> dict:
    email = p.email
    if py.random() < EMAIL_TYPO_SHARE:
        email = email_typo(py, email)
    if py.random() < 0.15:
        email = email_variant(py, email)
    no_address = py.random() < (0.6 if p.ctype == "lead" else 0.05)
    return {
        "first_name": "" if py.random() < 0.01 else p.first_name,
        "last_name": _messy_last_name(py, p.last_name),
        "email": email,
        "phone": "" if py.random() < 0.12 else phone_variant(py, p.phone),
        "street": "" if no_address else p.street,
        "house_number": "" if no_address else p.house_number,
        "postcode": "" if no_address else p.postcode,
        "city": "" if no_address else p.city,
        "birth_date": "" if py.random() < 0.2 else p.birth_date.isoformat(),
        "loyalty_card": p.loyalty_card,
        "webshop_user_id": "" if (not p.user_id or py.random() < 0.02) else p.user_id,
        "created": created, "updated": updated, "person": p,
    }


def _duplicate(py: random.Random, p: Person, original: dict, window: Window,
               taken_emails: set[str]) -> dict | None:
    """A second registration of the same person, later in time."""
    lo = original["created"] + 30 * DAY
    if lo >= window.end - DAY:
        return None
    created = py.randrange(lo, window.end - DAY)
    dup = dict(original)
    dup.update(created=created, updated=created + py.randrange(0, 3 * DAY),
               loyalty_card="", webshop_user_id="")
    dup["updated"] = min(dup["updated"], window.end - 60)
    if p.first_name in names.FIRST_NAME_VARIANTS and py.random() < 0.5:
        dup["first_name"] = names.FIRST_NAME_VARIANTS[p.first_name]
    if p.last_name in names.LAST_NAME_VARIANTS and py.random() < 0.6:
        dup["last_name"] = names.LAST_NAME_VARIANTS[p.last_name]
    elif py.random() < 0.3:
        dup["last_name"] = p.last_name.lower()
    if py.random() < 0.5:
        local = ascii_fold(p.first_name).lower() + ascii_fold(p.last_name).lower().replace(" ", "")
        domain = py.choice(names.EMAIL_DOMAINS)
        new = f"{local}{py.randrange(1, 100)}@{domain}"
        while new in taken_emails:
            new = f"{local}{py.randrange(100, 10_000)}@{domain}"
        taken_emails.add(new)
        dup["email"] = new
    else:
        dup["email"] = email_variant(py, p.email)
    dup["phone"] = phone_variant(py, p.phone) if py.random() < 0.7 else ""
    if py.random() < 0.2:
        for k in ("street", "house_number", "postcode", "city"):
            dup[k] = ""
    if py.random() < 0.5:
        dup["birth_date"] = ""
    return dup


def crm_rows(people: list[Person], window: Window, py: random.Random,
             truth: GroundTruth) -> list[list]:
    records = []
    taken = {p.email for p in people}
    for p in people:
        moments = [t for t in (p.account_at, p.card_at) if t is not None]
        if p.ctype == "lead":
            moments.append(p.acquired)
        if not moments:
            continue                  # anonymous store shopper: not in the CRM
        created = min(moments)
        last_activity = max([created] + [o.ts for o in p.orders])
        updated = min(window.end - py.randrange(60, 3 * DAY),
                      last_activity + py.randrange(0, 30 * DAY))
        row = _row(py, p, created, max(created, updated))
        records.append(row)
        if py.random() < DUPLICATE_SHARE:
            dup = _duplicate(py, p, row, window, taken)
            if dup is not None:
                records.append(dup)
    records.sort(key=lambda r: (r["created"], r["person"].idx))
    first_id = py.randrange(100_000, 300_000)
    out = []
    for n, r in enumerate(records):
        mid = message_id(py)
        out.append([mid, f"C{first_id + n:07d}", r["first_name"], r["last_name"],
                    r["email"], r["phone"], r["street"], r["house_number"],
                    r["postcode"], r["city"], r["birth_date"], r["loyalty_card"],
                    r["webshop_user_id"], plain(r["created"]), plain(r["updated"])])
        truth.add("crm_contacts", mid, r["person"].pid)
    return out
