"""A resolved store for the segment benchmark, generated set-based inside DuckDB.

Everything derives from hashes of the profile index ``i`` or the event's ``seq`` (DuckDB's
``hash()``), so a run is reproducible and every table can be generated on its own (the events and
their identity links agree on who did what without joining).

- ``profiles``: ``n`` live profiles (``p_`` + 20 hex digits, as the resolver names them) and
  ``n / 100`` more that were merged into a live one (``merged_into`` set);
- ``identifiers``: per live profile a ``user_id`` (``u{i}``) and an ``email``; per merged profile
  the cookie (``anonymous_id``) that now belongs to its survivor;
- ``events``: ``e`` events over the two years before :data:`NOW`, in time order (``seq`` grows
  with the timestamp, as when they arrive). Who: 30 % of the events come from the 10 % most
  active profiles (about 60 events each), 45 % from the next 30 % (about 30), 25 % from the other
  60 % (about 8). What: 55 % of the profiles buy; of their events 11 % are ``Order Completed``
  (``revenue`` 5.00–154.99 in ``properties``), about 6 % of all events; about 45 % are
  ``Product Viewed`` (``category``, ``price``), 6 % ``Product Added`` and 44 % pages. The
  payload is the message as a browser sends it (``context`` included), about 250 bytes;
- ``identity_links``: one primary link per event, to its profile's ``user_id``, so the view
  ``event_profiles`` maps every event to its live profile;
- ``profile_traits``: three sent traits per live profile, as the trait merge stores them:
  ``email``, ``first_name`` and ``city`` (one of :data:`CITIES`, uniformly).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

NOW = datetime(2026, 12, 1, tzinfo=UTC)             # the benchmark's fixed "now"
DAYS = 730                                            # events span the two years before NOW
MERGED_PER_100 = 1
BUYERS_PER_100 = 55
ORDERS_PER_1000 = 110                                 # of a buyer's events
EMAIL_DOMAIN = "bench-mail.nl"
CITIES = ["Amsterdam", "Rotterdam", "Den Haag", "Utrecht", "Eindhoven", "Groningen", "Tilburg",
          "Almere", "Breda", "Nijmegen", "Apeldoorn", "Haarlem", "Arnhem", "Enschede",
          "Amersfoort", "Zaanstad", "Den Bosch", "Haarlemmermeer", "Zwolle", "Zoetermeer",
          "Leiden", "Leeuwarden", "Maastricht", "Dordrecht", "Ede", "Alphen aan den Rijn",
          "Westland", "Alkmaar", "Emmen", "Delft"]
CATEGORIES = ["fashion", "shoes", "sports", "home", "beauty", "electronics", "kids", "garden"]
FIRST_NAMES = ["Anna", "Bram", "Daan", "Emma", "Fleur", "Julia", "Lars", "Lotte", "Noah", "Sanne",
               "Sem", "Tess", "Thijs", "Vera", "Luuk", "Mila"]

START = NOW - timedelta(days=DAYS)


def _ts(expr: str) -> str:
    return f"(TIMESTAMPTZ '{START.isoformat()}' + to_microseconds(CAST({expr} AS BIGINT)))"


def _pick(items: list[str], key: str) -> str:
    """A SQL expression choosing one of ``items`` by hash of ``key``."""
    listed = ", ".join("'" + s.replace("'", "''") + "'" for s in items)
    return f"([{listed}])[CAST(1 + hash({key}) % {len(items)} AS BIGINT)]"


def profile_id(i: str) -> str:
    return f"('p_' || substr(md5('bench:' || {i}), 1, 20))"


def who(n: int, seq: str = "seq") -> str:
    """The profile index of the event ``seq``: 30 % from the 10 % most active profiles, 45 % from
    the next 30 %, 25 % from the remaining 60 %."""
    heavy, medium = n // 10, 3 * n // 10
    light = n - heavy - medium
    return (f"(CASE WHEN hash({seq}, 'tier') % 100 < 30 THEN hash({seq}, 'who') % {heavy} "
            f"WHEN hash({seq}, 'tier') % 100 < 75 THEN {heavy} + hash({seq}, 'who') % {medium} "
            f"ELSE {heavy + medium} + hash({seq}, 'who') % {light} END)")


def profiles_sql(n: int) -> str:
    merged = n * MERGED_PER_100 // 100
    created = _ts(f"i * {DAYS * 86_400_000_000 // (n + merged)}")
    return f"""
        SELECT {profile_id('i')} AS profile_id, {created} AS created_at, i + 1 AS created_seq,
               2 * i + 1 AS origin_identifier,
               CASE WHEN i >= {n} THEN {profile_id(f"hash(i, 'survivor') % {n}")}
               END AS merged_into,
               CASE WHEN i >= {n} THEN TIMESTAMPTZ '{NOW.isoformat()}' - INTERVAL 1 DAY END
                   AS merged_at
        FROM range({n + merged}) t(i)"""


def identifiers_sql(n: int) -> str:
    merged = n * MERGED_PER_100 // 100
    created = _ts(f"i * {DAYS * 86_400_000_000 // (n + merged)}")
    return f"""
        SELECT 2 * i + k + 1 AS identifier_id,
               CASE WHEN i >= {n} THEN 'anonymous_id' WHEN k = 0 THEN 'user_id' ELSE 'email' END
                   AS id_type,
               CASE WHEN i >= {n} THEN 'c' || i WHEN k = 0 THEN 'u' || i
                    ELSE 'klant' || i || '@{EMAIL_DOMAIN}' END AS id_value,
               CASE WHEN i >= {n} THEN {profile_id(f"hash(i, 'survivor') % {n}")}
                    ELSE {profile_id('i')} END AS profile_id,
               {created} AS first_seen
        FROM range({n + merged}) t(i), range(2) r(k)
        WHERE i < {n} OR k = 0"""


def events_sql(n: int, e: int) -> str:
    step = DAYS * 86_400_000_000 // e
    ts = _ts(f"(seq - 1) * {step}")
    cat = _pick(CATEGORIES, "seq, 'cat'")
    return f"""
        WITH x AS (
            SELECT seq, i,
                   CASE WHEN hash(i, 'buyer') % 100 < {BUYERS_PER_100}
                             AND hash(seq, 'what') % 1000 < {ORDERS_PER_1000} THEN 'order'
                        WHEN hash(seq, 'what') % 1000 < 500 THEN 'viewed'
                        WHEN hash(seq, 'what') % 1000 < 560 THEN 'added'
                        ELSE 'page' END AS kind,
                   {ts} AS ts
            FROM (SELECT seq, {who(n)} AS i FROM range(1, {e + 1}) t(seq))
        ),
        y AS (
            SELECT *, strftime(ts, '%Y-%m-%dT%H:%M:%S.000Z') AS iso,
                   CASE kind WHEN 'order' THEN 'Order Completed' WHEN 'viewed' THEN 'Product Viewed'
                             WHEN 'added' THEN 'Product Added' END AS name_of_event,
                   'sku' || (hash(seq, 'sku') % 5000) AS sku
            FROM x
        )
        SELECT seq, 'm' || seq AS message_id, 'web' AS source_id, 'web' AS channel,
               'http' AS origin,
               CASE WHEN kind = 'page' THEN 'page' ELSE 'track' END AS type,
               name_of_event AS event,
               CASE WHEN kind = 'page' THEN 'Home' END AS name,
               'u' || i AS user_id,
               CAST(NULL AS VARCHAR) AS anonymous_id, CAST(NULL AS VARCHAR) AS device_id,
               CAST(NULL AS VARCHAR) AS group_id, CAST(NULL AS VARCHAR) AS previous_id,
               ts AS "timestamp", ts AS original_timestamp, ts AS sent_at, ts AS received_at,
               '{{"messageId":"m' || seq || '","userId":"u' || i || '","timestamp":"' || iso ||
               '","context":{{"library":{{"name":"analytics.js","version":"5.2.0"}},'
               || '"locale":"nl-NL","page":{{"path":"/p/' || sku || '"}}}},' ||
               CASE kind
                 WHEN 'order' THEN '"type":"track","event":"Order Completed","properties":'
                      || '{{"order_id":"o' || seq || '","revenue":'
                      || printf('%.2f', (500 + hash(seq, 'rev') % 15000) / 100.0)
                      || ',"currency":"EUR"}}}}'
                 WHEN 'page' THEN '"type":"page","name":"Home","properties":{{"path":"/"}}}}'
                 ELSE '"type":"track","event":"' || name_of_event || '","properties":'
                      || '{{"product_id":"' || sku || '","category":"' || {cat}
                      || '","price":' || printf('%.2f', (199 + hash(seq, 'price') % 20000) / 100.0)
                      || '}}}}'
               END AS payload
        FROM y"""


EVENT_COLUMNS = ("seq, message_id, source_id, channel, origin, type, event, name, user_id, "
                 "anonymous_id, device_id, group_id, previous_id, \"timestamp\", "
                 "original_timestamp, sent_at, received_at, payload")


def links_sql(n: int, e: int) -> str:
    return f"""
        SELECT seq, 2 * ({who(n)}) + 1 AS identifier_id, TRUE AS kept, TRUE AS is_primary
        FROM range(1, {e + 1}) t(seq)"""


def traits_sql(n: int) -> str:
    city = _pick(CITIES, "i, 'city'")
    first = _pick(FIRST_NAMES, "i, 'first'")
    return f"""
        WITH v AS (
            SELECT i, k, CASE k WHEN 0 THEN 'email' WHEN 1 THEN 'first_name' ELSE 'city' END
                       AS name,
                   CASE k WHEN 0 THEN 'klant' || i || '@{EMAIL_DOMAIN}' WHEN 1 THEN {first}
                          ELSE {city} END AS txt
            FROM range({n}) t(i), range(3) r(k)
        )
        SELECT {profile_id('i')} AS profile_id, name, 'trait' AS kind, to_json(txt) AS value,
               CAST(NULL AS DOUBLE) AS num, txt, CAST(NULL AS TIMESTAMPTZ) AS ts,
               FALSE AS is_list, TIMESTAMPTZ '{NOW.isoformat()}' AS computed_at
        FROM v ORDER BY i, k"""


TABLES = {
    "profiles": ("profile_id, created_at, created_seq, origin_identifier, merged_into, merged_at",
                 lambda n, e: profiles_sql(n)),
    "identifiers": ("identifier_id, id_type, id_value, profile_id, first_seen",
                    lambda n, e: identifiers_sql(n)),
    "events": (EVENT_COLUMNS, events_sql),
    "identity_links": ("seq, identifier_id, kept, is_primary", links_sql),
    "profile_traits": ("profile_id, name, kind, value, num, txt, ts, is_list, computed_at",
                       lambda n, e: traits_sql(n)),
}

SOURCE = ("INSERT INTO sources (source_id, name, channel, created_at) VALUES "
          f"('web', 'web', 'web', TIMESTAMPTZ '{START.isoformat()}')")


def fill(con, n: int, e: int) -> dict[str, float]:
    """Insert the whole store through a DuckDB connection ``con`` on a migrated workspace file
    (its indexes in place, as in use); return the row count per table and the seconds the events
    took (``events_s``)."""
    con.execute(SOURCE)
    counts: dict[str, float] = {}
    for table, (columns, select) in TABLES.items():
        started = time.perf_counter()
        con.execute(f"INSERT INTO {table} ({columns}) {select(n, e)}")
        if table == "events":
            counts["events_s"] = time.perf_counter() - started
        counts[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return counts


def export_csv(con, n: int, e: int, folder) -> dict[str, str]:
    """Write every table as CSV (header, NULL as an empty field) for PostgreSQL's COPY."""
    paths = {}
    for table, (columns, select) in TABLES.items():
        path = folder / f"{table}.csv"
        con.execute(f"COPY ({select(n, e)}) TO '{path.as_posix()}' (HEADER, DELIMITER ',')")
        paths[table] = str(path)
    return paths
