"""Online sessions: when people visit the web shop or open the app, on
which browser or device, and why (browse, order, sign-up, support).

Sessions are planned for everybody first and rendered to events later in
global time order, because browser cookies and shared app devices carry
state (who is logged in) across sessions of possibly different people.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from . import names
from .clock import DAY, ONLINE_HOURS, YEAR, Window, at_local_hour
from .orders import Order
from .people import Person, Prospect

SHARED_DEVICE_SHARE = 0.03


@dataclass(slots=True, eq=False)
class Browser:
    """One browser on one machine; its first-party cookie rotates."""

    owner: Person | Prospect
    mobile: bool
    ua: str
    mean_cookie_days: float
    cookie: str = ""
    cookie_until: int = 0
    user: str = ""                      # userId logged in on the current cookie
    cookies: list[str] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Device:
    """One app install. Shared devices are used by two household members."""

    device_id: str
    anon: str
    os_name: str
    manufacturer: str
    model: str
    os_version: str
    app_version: str
    since: int
    user: str = ""
    users: list[str] = field(default_factory=list)   # person ids that used it


@dataclass(slots=True, eq=False)
class Profile:
    browsers: list[Browser] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)   # in order of use
    switch_at: int = 0                  # when the second device replaces the first
    app_pref: float = 0.0
    shared: Device | None = None        # a partner's device this person also uses


@dataclass(slots=True, eq=False)
class Session:
    ts: int
    seq: int
    actor: Person | Prospect
    kind: str                           # browse | order | signup | support
    channel: str                        # web | app
    surface: Browser | Device
    order: Order | None = None
    topic: str = ""


def new_cookie(py: random.Random) -> str:
    return f"c-{py.getrandbits(96):024x}"


def _new_device(py: random.Random, since: int) -> Device:
    os_name, maker, model, versions = py.choice(names.APP_DEVICES)
    if os_name == "iOS":
        raw = f"{py.getrandbits(128):032X}"
        device_id = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
    else:
        device_id = f"{py.getrandbits(64):016x}"
    raw = f"{py.getrandbits(128):032x}"
    anon = f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:]}"
    return Device(device_id=device_id, anon=anon, os_name=os_name,
                  manufacturer=maker, model=model, os_version=py.choice(versions),
                  app_version=py.choice(["4.12.0", "4.13.1", "4.14.0", "5.0.2"]),
                  since=since)


def _browsers(py: random.Random, owner: Person | Prospect, n: int) -> list[Browser]:
    out = []
    kinds = [py.random() < 0.55] if n == 1 else [False, True]
    for mobile in kinds:
        ua = py.choice(names.MOBILE_UAS if mobile else names.DESKTOP_UAS)
        # Safari's tracking prevention makes mobile cookies short-lived
        out.append(Browser(owner=owner, mobile=mobile, ua=ua,
                           mean_cookie_days=45.0 if mobile else 140.0))
    return out


def _browse_times(py: random.Random, person: Person, start: int,
                  window: Window) -> list[int]:
    """Browse sessions: a Poisson process that slows to a trickle after
    the person has churned (dead customers rarely come back)."""
    if person.ctype == "lead":
        alive_rate = 2.5
    elif person.ctype == "one_time":
        alive_rate = 1.5
    else:
        alive_rate = 2.0 + 1.4 * person.lam
    out = []
    t = start
    while True:
        rate = alive_rate if person.alive_at(t) else 0.15 * alive_rate
        t += int(py.expovariate(rate / YEAR))
        if t >= window.end:
            return out
        out.append(window.clamp(at_local_hour(py, t, ONLINE_HOURS)))


def plan_sessions(people: list[Person], prospects: list[Prospect],
                  window: Window, py: random.Random) -> tuple[list[Session], list[Browser], list[Device]]:
    """Plan every online session of known people and anonymous visitors."""
    profiles: dict[int, Profile] = {}
    devices: list[Device] = []
    for p in people:
        if not (p.uses_web or p.uses_app):
            continue
        prof = profiles[p.idx] = Profile()
        if p.uses_web:
            prof.browsers = _browsers(py, p, 2 if py.random() < 0.4 else 1)
        if p.uses_app:
            online_share = p.w_app + p.w_web
            prof.app_pref = (p.w_app / online_share if p.uses_web and online_share
                             else 1.0)
            prof.app_pref = max(prof.app_pref, 0.3)
            first_app = min((o.ts for o in p.orders if o.channel == "app"),
                            default=window.end)
            since = min(first_app, p.acquired + int(py.expovariate(1 / (60 * DAY))))
            since = window.clamp(since - DAY)
            prof.devices = [_new_device(py, since)]
            if py.random() < 0.2 and since < window.end - 30 * DAY:
                prof.switch_at = py.randrange(since, window.end - DAY)
                prof.devices.append(_new_device(py, prof.switch_at))
            devices.extend(prof.devices)
    _share_devices(people, profiles, devices, window, py)

    sessions: list[Session] = []
    for p in people:
        prof = profiles.get(p.idx)
        if prof is None:
            continue
        start = max(window.start, p.acquired - int(py.expovariate(1 / (25 * DAY))))
        for ts in _browse_times(py, p, start, window):
            _add(sessions, py, p, prof, "browse", ts)
        for o in p.orders:
            if o.channel != "pos":
                _add(sessions, py, p, prof, "order",
                     max(window.start, o.ts - py.randrange(120, 1500)), o)
        registered_online = any(o.ts == p.account_at for o in p.orders
                                if o.channel != "pos")
        if p.account_at is not None and not registered_online:
            _add(sessions, py, p, prof, "signup", p.account_at)
        if p.account_at is not None:
            _support(sessions, py, p, prof, window)
        if prof.shared is not None:
            # the household tablet: a few sessions of its own on top of the
            # browse sessions diverted to it
            t = max(p.account_at, prof.shared.since)
            t = min(t + int(py.expovariate(1 / (20 * DAY))), window.end - 2 * DAY)
            while t < window.end:
                _add(sessions, py, p, prof, "browse",
                     window.clamp(at_local_hour(py, t, ONLINE_HOURS)), via_shared=True)
                t += int(py.expovariate(3 / YEAR))
    prospect_browsers: list[Browser] = []
    for pr in prospects:
        if not pr.web_visitor:
            continue
        prof = Profile(browsers=_browsers(py, pr, 1))
        prospect_browsers.extend(prof.browsers)
        first = window.start + py.randrange(window.end - window.start - DAY)
        for n in range(1 + int(py.expovariate(1 / 1.2))):
            ts = first + (int(py.expovariate(1 / (20 * DAY))) if n else 0)
            if ts < window.end:
                sessions.append(Session(ts=window.clamp(at_local_hour(py, ts, ONLINE_HOURS)),
                                        seq=0, actor=pr, kind="browse",
                                        channel="web", surface=prof.browsers[0]))
    sessions.sort(key=lambda s: (s.ts, s.actor.pid, s.kind))
    for i, s in enumerate(sessions):
        s.seq = i
    browsers = [b for prof in profiles.values() for b in prof.browsers]
    browsers.extend(prospect_browsers)
    return sessions, browsers, devices


def _add(sessions: list[Session], py: random.Random, p: Person, prof: Profile,
         kind: str, ts: int, order: Order | None = None, topic: str = "",
         via_shared: bool = False) -> None:
    if order is not None:
        channel = order.channel
    elif prof.devices and prof.browsers:
        channel = "app" if ts >= prof.devices[0].since and py.random() < prof.app_pref else "web"
    else:
        channel = "app" if prof.devices else "web"
    if channel == "web" and not prof.browsers:
        channel = "app"
    if channel == "app" and not prof.devices:
        if not prof.browsers:
            return
        channel = "web"
    if channel == "app":
        surface = prof.devices[-1] if len(prof.devices) > 1 and ts >= prof.switch_at \
            else prof.devices[0]
    else:
        surface = (prof.browsers[0] if len(prof.browsers) == 1 or py.random() < 0.45
                   else prof.browsers[1])
    if (prof.shared is not None and kind == "browse" and ts >= prof.shared.since
            and p.account_at is not None and ts >= p.account_at
            and (via_shared or py.random() < 0.35)):
        channel, surface = "app", prof.shared
    if channel == "app" and p.pid not in surface.users:
        surface.users.append(p.pid)
    sessions.append(Session(ts=ts, seq=0, actor=p, kind=kind, channel=channel,
                            surface=surface, order=order, topic=topic))


def _support(sessions: list[Session], py: random.Random, p: Person,
             prof: Profile, window: Window) -> None:
    """Customer-service contacts. Complaints cluster right after a
    churner's last order -- a signal churn models can use."""
    t = p.account_at
    while True:
        t += int(py.expovariate(0.25 / YEAR))
        if t >= window.end:
            break
        _add(sessions, py, p, prof, "support", t,
             topic=py.choice(["order_status", "returns", "account", "product_question"]))
    if p.death is not None and any(o.channel != "pos" for o in p.orders) \
            and py.random() < 0.35:
        ts = p.death + py.randrange(3 * DAY, 20 * DAY)
        if ts < window.end:
            _add(sessions, py, p, prof, "support", ts,
                 topic=py.choice(["delivery_complaint", "refund", "damaged_item"]))


def _share_devices(people: list[Person], profiles: dict[int, Profile],
                   devices: list[Device], window: Window, py: random.Random) -> None:
    """Let ~3% of app devices also be used by the owner's partner.

    The partner logs in with their own account on the owner's device, so one
    device id and one anonymousId end up tied to two userIds -- a trap for
    identity resolution that naively merges everything sharing a device.
    """
    target = round(SHARED_DEVICE_SHARE * len(devices))
    candidates = [p for p in people
                  if p.idx in profiles and profiles[p.idx].devices
                  and p.partner is not None and p.partner.account_at is not None
                  and max(p.partner.account_at, profiles[p.idx].devices[0].since)
                  < window.end - 60 * DAY
                  and p.partner.idx in profiles]
    py.shuffle(candidates)
    used: set[int] = set()
    for owner in candidates:
        if len(used) >= 2 * target:
            break
        partner = owner.partner
        if owner.idx in used or partner.idx in used:
            continue
        used.update((owner.idx, partner.idx))
        own = profiles[owner.idx]
        start = max(partner.account_at, own.devices[0].since)
        # the phone the owner has when the partner starts borrowing it
        profiles[partner.idx].shared = (own.devices[-1] if len(own.devices) > 1
                                        and start >= own.switch_at else own.devices[0])
