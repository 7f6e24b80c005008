"""Bulk import: CSV, JSON Lines and Parquet files, and SQL queries, into a source's events.

    from klantbeeld.workspace import Workspace
    from klantbeeld.collect.importer import import_file, import_sql

    with Workspace.open(home="klantbeeld-data") as ws:
        report = import_file(ws, "contacts.csv", "crm", as_="identify", mapping="contacts.yaml")
        print(report.accepted, report.failed)
        report = import_sql(ws, "postgresql://crm@db/crm", "SELECT * FROM contacts", "crm",
                            as_="identify", cursor="updated_at")

Every row becomes a Segment message and goes through the same writer as HTTP traffic: validated,
de-duplicated by a stable message id, refused rows kept in failed events with their line number.
"""

from .mapping import Field, Mapping, MappingError, default_mapping, load_mapping, parse_mapping
from .readers import ImportInputError
from .run import ImportReport, import_file, import_sql

__all__ = ["Field", "ImportInputError", "ImportReport", "Mapping", "MappingError",
           "default_mapping", "import_file", "import_sql", "load_mapping", "parse_mapping"]
