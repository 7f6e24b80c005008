"""The DMP bridge: anonymous cookie profiles holding third-party segments for a short time.

Feeds (Audience Manager's format, CSV, JSON Lines; files or HTTP) add and remove segment ids per
cookie or device id; each row lives for a TTL (per segment, per source, or 90 days) and is
refreshed when sent again; expiry deletes what ran out. A taxonomy names the segment ids; ID sync
pairs a partner's ids with our cookies so partner-keyed feeds can be read. No personal data enters
a cookie profile.

    from klantbeeld.dmp import apply_feed, read_feed, expire, cookie_profile

    report = apply_feed(ws.engine, "dmp", read_feed(Path("feed.tsv.gz")))
    print(report.added, report.rejected, report.unknown_segments)
"""

from .config import DMPConfig, DMPConfigError, load_dmp_config, workspace_config
from .feeds import FeedChunk, FeedError, Rejection, read_feed
from .idsync import load_pairs, load_sync_file, lookup
from .store import (CookieNotFound, DMPError, FeedReport, apply_feed, cookie_profile, dmp_source,
                    expire, stats)
from .taxonomy import (Taxonomy, TaxonomyError, ancestors, load_taxonomy_file, parse_taxonomy,
                       replace_taxonomy)

__all__ = ["CookieNotFound", "DMPConfig", "DMPConfigError", "DMPError", "FeedChunk", "FeedError",
           "FeedReport", "Rejection", "Taxonomy", "TaxonomyError", "ancestors", "apply_feed",
           "cookie_profile", "dmp_source", "expire", "load_dmp_config", "load_pairs",
           "load_sync_file", "load_taxonomy_file", "lookup", "parse_taxonomy", "read_feed",
           "replace_taxonomy", "stats", "workspace_config"]
