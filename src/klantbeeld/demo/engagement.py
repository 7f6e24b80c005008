"""E-mail marketing engagement: sends, opens, clicks, unsubscribes.

Engagement is where churn shows first. Each subscriber has a baseline open
rate (loyal customers open most); for people who will churn, opens fade
over the ~75 days *before* their last purchase and almost stop after it,
and unsubscribes become more likely. A churn model that uses e-mail
engagement should therefore beat one that only looks at recency.
"""

from __future__ import annotations

import random

from .catalog import CATEGORIES
from .clock import DAY, SEND_HOURS, Window, at_local_hour, iso_s
from .people import Person
from .writer import GroundTruth, message_id

EMAIL_COLUMNS = ["message_id", "email", "campaign_id", "event", "occurred_at"]
CAMPAIGN_EVERY_DAYS = 7
AUDIENCE_SHARE = 0.35       # campaigns are segmented: not everyone gets each
FADE_DAYS = 75


def _campaigns(window: Window, py: random.Random) -> list[tuple[str, int, str]]:
    out = []
    t = window.start + 2 * DAY
    while t < window.end - DAY:
        ts = at_local_hour(py, t, SEND_HOURS)
        day = iso_s(ts)[:10].replace("-", "")
        category = py.choice(CATEGORIES)
        out.append((f"nb-{day}-{category}", ts, category))
        t += CAMPAIGN_EVERY_DAYS * DAY
    return out


def _activity(p: Person, ts: int) -> float:
    """Multiplier on the open rate: 1 while engaged, fading before churn."""
    if p.death is None:
        return 1.0
    fade_start = p.death - FADE_DAYS * DAY
    if ts < fade_start:
        return 1.0
    if ts < p.death:
        return 1.0 - 0.8 * (ts - fade_start) / (FADE_DAYS * DAY)
    return 0.08


def email_rows(people: list[Person], window: Window, py: random.Random,
               truth: GroundTruth) -> list[list]:
    campaigns = _campaigns(window, py)
    events: list[tuple[int, int, str, str, str, str]] = []
    for p in people:
        if not p.optin:
            continue
        moments = [t for t in (p.account_at, p.card_at) if t is not None]
        if p.ctype == "lead":
            moments.append(p.acquired)
        if not moments:
            continue
        since = min(moments)
        top = sorted(range(len(CATEGORIES)), key=lambda i: -p.prefs[i])[:2]
        liked = {CATEGORIES[i] for i in top}
        for cid, sent, category in campaigns:
            if sent < since or py.random() >= AUDIENCE_SHARE:
                continue
            events.append((sent + py.randrange(0, 1800), p.idx, p.email, cid, "sent", p.pid))
            act = _activity(p, sent)
            boost = 1.3 if category in liked else 0.85
            opened = py.random() < min(0.95, p.open_rate * act * boost)
            if opened:
                t_open = sent + 60 + int(py.expovariate(1 / (5 * 3600)))
                events.append((t_open, p.idx, p.email, cid, "opened", p.pid))
                click_p = (0.28 if p.ctype == "loyal" else 0.16) * (1.4 if category in liked else 0.8)
                if py.random() < click_p:
                    events.append((t_open + py.randrange(5, 300), p.idx, p.email,
                                   cid, "clicked", p.pid))
            unsub_p = 0.002 if act >= 0.99 else (0.012 if p.alive_at(sent) else 0.03)
            if py.random() < unsub_p:
                t_unsub = sent + 120 + int(py.expovariate(1 / (2 * 3600)))
                events.append((t_unsub, p.idx, p.email, cid, "unsubscribed", p.pid))
                break
    events = [e for e in events if e[0] < window.end]
    events.sort(key=lambda e: (e[0], e[1]))
    rows = []
    for ts, _, email, cid, event, pid in events:
        mid = message_id(py)
        rows.append([mid, email, cid, event, iso_s(ts)])
        truth.add("email_engagement", mid, pid)
    return rows
