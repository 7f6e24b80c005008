"""The latent population: who the customers really are.

Nothing here is written to disk directly. Every channel module renders
these people through its own, lossy lens (cookies, loyalty cards, a messy
CRM export), and only the ground-truth files reveal who is who.

Purchase behaviour follows the assumptions of the BG/NBD and Gamma-Gamma
models on purpose, so those models can be checked against a known truth:
each buyer has a Poisson purchase rate (Gamma distributed across people),
a dropout probability after every purchase (Beta distributed), and an
average order value (Gamma distributed). Category taste is a Dirichlet
draw nudged by age and gender, which is the signal cross-sell and
look-alike models can pick up.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate

import numpy as np

from . import names
from .catalog import CATEGORIES
from .clock import DAY, Window

CUSTOMER_TYPES = ["lead", "one_time", "repeat", "loyal"]
TYPE_SHARES = [0.18, 0.27, 0.42, 0.13]
HOUSEHOLD_SHARE = 0.30  # share of people living with a partner in the data


@dataclass(slots=True, eq=False)
class Person:
    idx: int
    pid: str
    ctype: str
    gender: str
    age: int
    birth_date: date
    first_name: str
    last_name: str
    street: str
    house_number: str
    postcode: str
    city: str
    home_ip: str
    phone: str = ""
    email: str = ""
    partner: "Person | None" = None
    household: str = ""
    acquired: int = 0              # first purchase (buyers) or sign-up (leads)
    lam: float = 0.0               # purchases per year while alive
    p_drop: float = 0.0            # dropout probability after each purchase
    mean_spend: float = 0.0        # average order value in EUR
    tier: int = 1                  # 0 budget, 1 mid, 2 premium
    prefs: list[float] = field(default_factory=list)
    cat_cum: list[float] = field(default_factory=list)
    w_web: float = 0.0             # channel mix of purchases
    w_app: float = 0.0
    w_store: float = 0.0
    uses_web: bool = False
    uses_app: bool = False
    open_rate: float = 0.0         # baseline e-mail open probability
    optin: bool = False
    # filled in by the purchase simulation
    orders: list = field(default_factory=list)
    death: int | None = None       # time of last purchase if the person churned
    account_at: int | None = None  # webshop account created
    user_id: str = ""
    card_at: int | None = None     # loyalty card issued
    loyalty_card: str = ""
    home_store: str = ""

    @property
    def is_buyer(self) -> bool:
        return self.ctype != "lead"

    def alive_at(self, ts: int) -> bool:
        return self.death is None or ts <= self.death


@dataclass(slots=True, eq=False)
class Prospect:
    """Someone seen only as an anonymous visitor or a third-party cookie."""

    pid: str
    age: int
    gender: str
    tier: int
    cat_cum: list[float]
    prefs: list[float]
    seed_like: bool                # hidden loyal-alike
    web_visitor: bool


def ascii_fold(text: str) -> str:
    text = text.replace("ı", "i")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _email_for(py: random.Random, first: str, last: str, birth_year: int,
               taken: set[str]) -> str:
    f = ascii_fold(first).lower().replace(" ", "")
    parts = ascii_fold(last).lower().split()
    core = parts[-1]
    full = "".join(parts)
    pattern = py.randrange(7)
    local = [f"{f}.{full}", f"{f}{full}", f"{f[0]}.{core}", f"{f}_{core}",
             f"{f}{core}{py.randrange(1, 99)}", f"{f}.{core}{birth_year}",
             f"{core}.{f}"][pattern]
    domain = py.choices(names.EMAIL_DOMAINS, weights=names.EMAIL_DOMAIN_WEIGHTS)[0]
    email = f"{local}@{domain}"
    while email in taken:
        email = f"{local}{py.randrange(1, 999)}@{domain}"
    taken.add(email)
    return email


def _address(py: random.Random) -> tuple[str, str, str, str]:
    city = py.choices(list(names.CITIES), weights=names.CITY_WEIGHTS)[0]
    lo, hi = names.CITIES[city]
    letters = py.choice(names.POSTCODE_LETTERS) + py.choice(names.POSTCODE_LETTERS)
    postcode = f"{py.randint(lo, hi)} {letters}"
    number = str(py.choices([py.randint(1, 40), py.randint(41, 250)],
                            weights=[3, 1])[0])
    if py.random() < 0.1:
        number += py.choice(["A", "B", "-1", "-2", "-hs", " bis"])
    return py.choice(names.STREETS), number, postcode, city


def _ip(py: random.Random) -> str:
    first = py.choice([77, 84, 86, 145, 62, 83, 94, 217, 31, 195])
    return f"{first}.{py.randrange(256)}.{py.randrange(256)}.{py.randrange(1, 255)}"


def _prefs(rng: np.random.Generator, age: int, gender: str) -> np.ndarray:
    alpha = np.full(len(CATEGORIES), 0.45)
    idx = {c: i for i, c in enumerate(CATEGORIES)}
    if gender == "F":
        alpha[idx["beauty"]] *= 3.0
        alpha[idx["fashion"]] *= 1.5
    elif gender == "M":
        alpha[idx["electronics"]] *= 2.5
        alpha[idx["sports"]] *= 1.5
    alpha[idx["kids"]] *= 3.0 if 27 <= age <= 48 else 0.35
    if age >= 50:
        alpha[idx["garden"]] *= 2.5
        alpha[idx["home"]] *= 1.5
    return rng.dirichlet(alpha)


def build_population(n: int, window: Window, rng: np.random.Generator,
                     py: random.Random) -> list[Person]:
    """Draw ``n`` known people (leads and buyers) with latent behaviour."""
    types = rng.choice(len(CUSTOMER_TYPES), size=n, p=TYPE_SHARES)
    span = window.end - window.start
    people: list[Person] = []
    emails: set[str] = set()
    phones: set[str] = set()
    for i in range(n):
        ctype = CUSTOMER_TYPES[int(types[i])]
        r = py.random()
        gender = "F" if r < 0.56 else ("M" if r < 0.99 else "X")
        age = int(min(85, max(18, rng.normal(46 if ctype == "loyal" else 42, 14))))
        birth = (window.end_date - timedelta(days=int(age * 365.25)
                                             + py.randrange(365)))
        pool = (names.FEMALE_FIRST if gender == "F" else names.MALE_FIRST
                if gender == "M" else names.FEMALE_FIRST + names.MALE_FIRST)
        street, number, postcode, city = _address(py)
        p = Person(idx=i, pid=f"person-{i + 1:06d}", ctype=ctype, gender=gender,
                   age=age, birth_date=birth, first_name=py.choice(pool),
                   last_name=py.choice(names.LAST_NAMES), street=street,
                   house_number=number, postcode=postcode, city=city,
                   home_ip=_ip(py))
        # latent purchase process (rates per day internally via lam / YEAR)
        if ctype == "loyal":
            p.acquired = window.start + int(rng.beta(1.0, 2.2) * (span - 30 * DAY))
            p.lam = float(rng.gamma(4.0, 2.8))
            p.p_drop = float(rng.beta(1.0, 45.0))
        elif ctype == "repeat":
            p.acquired = window.start + int(rng.random() * (span - 3 * DAY))
            p.lam = float(rng.gamma(1.3, 3.0)) + 0.3
            p.p_drop = float(rng.beta(1.3, 5.0))
        elif ctype == "one_time":
            p.acquired = window.start + int(rng.random() * (span - 3 * DAY))
            p.lam, p.p_drop = 0.0, 1.0
        else:
            p.acquired = window.start + int(rng.random() * (span - DAY))
        p.tier = int(rng.choice(3, p=[0.35, 0.45, 0.20]))
        p.mean_spend = float(rng.gamma(3.0, [35, 60, 110][p.tier] / 3.0))
        if ctype == "loyal":
            p.mean_spend *= 1.15
        prefs = _prefs(rng, age, gender)
        p.prefs = prefs.tolist()
        p.cat_cum = list(accumulate(p.prefs))
        _channel_mix(p, rng, py)
        p.open_rate = float({"loyal": rng.beta(6, 4), "repeat": rng.beta(3, 5),
                             "one_time": rng.beta(2, 7),
                             "lead": rng.beta(2, 6)}[ctype])
        p.optin = py.random() < {"loyal": 0.9, "repeat": 0.7,
                                 "one_time": 0.55, "lead": 0.8}[ctype]
        people.append(p)
    _pair_households(people, py)
    for p in people:
        p.email = _email_for(py, p.first_name, p.last_name, p.birth_date.year,
                             emails)
        phone = f"+316{py.randrange(10**8):08d}"
        while phone in phones:
            phone = f"+316{py.randrange(10**8):08d}"
        phones.add(phone)
        p.phone = phone
    return people


def _channel_mix(p: Person, rng: np.random.Generator, py: random.Random) -> None:
    """Decide where a person shops and browses.

    Roughly a third buy online only, a quarter in store only, the rest both.
    App adoption is higher for loyal customers, which is what makes the app
    data skew towards high-value people in real shops too.
    """
    r = py.random()
    store = 0.0 if r < 0.32 else (1.0 if r < 0.57 else float(rng.beta(2, 2)))
    app_p = {"loyal": 0.45, "repeat": 0.22, "one_time": 0.12, "lead": 0.08}[p.ctype]
    p.uses_app = store < 1.0 and py.random() < app_p
    app_share = float(rng.beta(3, 2)) if p.uses_app else 0.0
    online = 1.0 - store
    p.w_store, p.w_app, p.w_web = store, online * app_share, online * (1 - app_share)
    if p.ctype == "lead":
        p.uses_web = py.random() < 0.85
    else:
        p.uses_web = p.w_web > 0 or py.random() < 0.65


def _pair_households(people: list[Person], py: random.Random) -> None:
    """Put a share of people in two-person households (same address, same
    home IP, often the same surname) -- the classic false-merge trap."""
    order = list(range(len(people)))
    py.shuffle(order)
    n_pairs = int(len(people) * HOUSEHOLD_SHARE / 2)
    for h in range(n_pairs):
        a, b = people[order[2 * h]], people[order[2 * h + 1]]
        a.partner, b.partner = b, a
        a.household = b.household = f"household-{h + 1:05d}"
        b.street, b.house_number, b.postcode, b.city = (
            a.street, a.house_number, a.postcode, a.city)
        b.home_ip = a.home_ip
        if py.random() < 0.45:
            b.last_name = a.last_name
        if abs(a.age - b.age) > 12:
            b.age = max(18, a.age + py.randint(-5, 5))
            b.birth_date = a.birth_date + timedelta(days=(a.age - b.age) * 365
                                                    + py.randint(-150, 150))


def build_prospects(n_visitors: int, n_dmp_only: int,
                    rng: np.random.Generator, py: random.Random) -> list[Prospect]:
    """People who never become known: anonymous site visitors and cookies
    that only the DMP has seen. About one in ten is a hidden loyal-alike."""
    out = []
    for i in range(n_visitors + n_dmp_only):
        seed_like = py.random() < 0.10
        r = py.random()
        gender = "F" if r < 0.52 else ("M" if r < 0.99 else "X")
        age = int(min(85, max(16, rng.normal(46 if seed_like else 38, 15))))
        prefs = _prefs(rng, age, gender).tolist()
        tier = int(rng.choice(3, p=[0.25, 0.45, 0.30] if seed_like
                              else [0.4, 0.45, 0.15]))
        out.append(Prospect(pid=f"prospect-{i + 1:06d}", age=age, gender=gender,
                            tier=tier, prefs=prefs,
                            cat_cum=list(accumulate(prefs)), seed_like=seed_like,
                            web_visitor=i < n_visitors))
    return out
