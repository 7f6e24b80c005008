"""A synthetic event history for the identity benchmark, generated set-based inside DuckDB.

Per person ``i`` (all derived from hashes of ``i``, so a run is reproducible):

- one ``user_id`` (``u{i}``), one e-mail (``klant{i}@bench-mail.nl``), 2–4 cookies (``c{i}_{j}``,
  ``anonymous_id``), and for a quarter of the people one ``device_id`` (``d{i}``, an app install);
- one login ``identify`` per cookie: ``user_id`` + that cookie + the e-mail in ``traits``;
- 8–14 anonymous ``page``/``track`` events, each with one cookie (and the device id on the app's
  cookie for people with a device);
- for 1 % of the people, one more login on another person's first cookie (a shared household
  computer): their components hold two ``user_id`` values, break the limit of 1 and go through the
  rebuild's replay path.

About 14.5 events, 5.3 identifiers and 21 links (event × identifier) per person. Events are
interleaved over time: ``seq = slot × N + i + 1`` (slot = the event's place in its person's
timeline), so every person's history spreads over the whole run, as in real traffic.
"""

from __future__ import annotations

MAX_SLOTS = 19  # 4 cookies + 14 anonymous events + 1 shared login
SHARE_PERCENT = 1
DEVICE_PERCENT = 25
EMAIL_DOMAIN = "bench-mail.nl"

_PEOPLE = """
    SELECT i,
           2 + hash(i, 'cookies') % 3 AS c,              -- cookies: 2, 3 or 4
           8 + hash(i, 'anon') % 7 AS a,                 -- anonymous events: 8..14
           hash(i, 'device') % 100 < {device} AS has_device,
           hash(i, 'share') % 100 < {share} AS shares,
           (i + 1 + hash(i, 'partner') % ({n} - 1)) % {n} AS partner
    FROM range({n}) t(i)
"""

_EVENTS = """
WITH people AS ({people}),
slots AS (
    SELECT p.*, s,
           CASE WHEN s >= p.c AND s < 2 * p.c THEN 'login'
                WHEN s = p.c + p.a THEN 'shared_login'
                ELSE 'anon' END AS kind,
           s % p.c AS cookie
    FROM people p, range({max_slots}) r(s)
    WHERE s < p.c + p.a OR (p.shares AND s = p.c + p.a)
),
rows AS (
    SELECT s * {n} + i + 1 AS seq, i, kind, cookie, has_device, partner, c,
           hash(i, s, 'kind') % 4 = 0 AS is_track
    FROM slots
)
SELECT seq,
       'm' || seq AS message_id,
       'bench' AS source_id,
       'web' AS channel,
       'http' AS origin,
       CASE WHEN kind = 'anon' THEN (CASE WHEN is_track THEN 'track' ELSE 'page' END)
            ELSE 'identify' END AS type,
       CASE WHEN kind = 'anon' AND is_track THEN 'Product Viewed' END AS event,
       CASE WHEN kind = 'anon' AND NOT is_track THEN 'Home' END AS name,
       CASE WHEN kind <> 'anon' THEN 'u' || i END AS user_id,
       CASE WHEN kind = 'shared_login' THEN 'c' || partner || '_0'
            ELSE 'c' || i || '_' || cookie END AS anonymous_id,
       CASE WHEN kind = 'anon' AND has_device AND cookie = c - 1 THEN 'd' || i END AS device_id,
       CAST(NULL AS VARCHAR) AS group_id,
       CAST(NULL AS VARCHAR) AS previous_id,
       TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(seq * {step_us}) AS "timestamp",
       TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(seq * {step_us}) AS original_timestamp,
       TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(seq * {step_us}) AS sent_at,
       TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(seq * {step_us}) AS received_at,
       CASE WHEN kind = 'anon' THEN '{{}}'
            ELSE '{{"type":"identify","traits":{{"email":"klant' || i || '@{domain}"}}}}'
            END AS payload
FROM rows
"""

COLUMNS = ("seq, message_id, source_id, channel, origin, type, event, name, user_id, anonymous_id, "
           "device_id, group_id, previous_id, \"timestamp\", original_timestamp, sent_at, "
           "received_at, payload")


def events_sql(people: int) -> str:
    """The SELECT producing every event of ``people`` people, in the events table's columns."""
    # Spread the history over about ten months whatever N is.
    step_us = max(1, int(300 * 86400 * 1e6 / (people * MAX_SLOTS)))
    p = _PEOPLE.format(n=people, device=DEVICE_PERCENT, share=SHARE_PERCENT)
    return _EVENTS.format(people=p, n=people, max_slots=MAX_SLOTS, step_us=step_us,
                          domain=EMAIL_DOMAIN)


def fill(raw, people: int) -> dict:
    """Insert the events of ``people`` people through a DuckDB connection/cursor ``raw`` (the
    workspace's own, so the migrated ``events`` table gets them); then move ``events_seq`` past the
    largest ``seq``, so events appended later by the default get bigger ones."""
    # The events' source, so that reads joining events to their source (a profile's timeline) find it.
    raw.execute("INSERT INTO sources (source_id, name, channel, created_at) "
                "SELECT 'bench', 'bench', 'web', TIMESTAMPTZ '2026-01-01 00:00:00+00' "
                "WHERE NOT EXISTS (SELECT 1 FROM sources WHERE source_id = 'bench')")
    raw.execute(f"INSERT INTO events ({COLUMNS}) {events_sql(people)}")
    events, max_seq = raw.execute("SELECT count(*), max(seq) FROM events").fetchone()
    # DuckDB cannot restart a sequence that a column default uses: draw it up to max_seq instead.
    raw.execute(f"SELECT max(nextval('events_seq')) FROM range({int(max_seq)})").fetchone()
    return {"events": int(events), "max_seq": int(max_seq)}


def expected(people: int) -> dict:
    """Per-person figures the generator aims at (for the table's sanity column)."""
    return {"identifiers_per_person": 1 + 1 + 3 + DEVICE_PERCENT / 100,
            "shared_people": people * SHARE_PERCENT // 100}


def known_identifiers_sql(people: int, sample: int, seed: int) -> str:
    """``sample`` random (type, value) pairs of identifiers the history holds: e-mails and cookies."""
    return f"""
        SELECT CASE WHEN k = 0 THEN 'email' ELSE 'anonymous_id' END AS id_type,
               CASE WHEN k = 0 THEN 'klant' || i || '@{EMAIL_DOMAIN}'
                    ELSE 'c' || i || '_' || (hash(i, 'pick', {seed}) % (2 + hash(i, 'cookies') % 3))
               END AS id_value
        FROM (SELECT hash(r, {seed}) % {people} AS i, hash(r, {seed}, 'k') % 2 AS k
              FROM range({sample}) t(r))
    """
