"""A workspace: one store with its schema, sources and keys — the object the CLI, the server and the
Python API all start from.

    from klantbeeld.workspace import Workspace
    from klantbeeld.collect.status import source_status

    with Workspace.open(home="klantbeeld-data") as ws:
        print(source_status(ws.engine))
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable

from .collect.sources import CHANNELS, create_key, create_source, list_sources
from .collect.writer import Ingestor
from .identity.config import IdentityConfig, load_identity_config
from .identity.follower import Follower
from .identity.resolver import Resolver
from .segments.service import Segments
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from .predict.service import Predictions
    from .privacy.config import PrivacyConfig
from .store import Engine, migrate, open_engine


class Workspace:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    @classmethod
    def open(cls, settings: Settings | None = None, **overrides: Any) -> "Workspace":
        """Open (and migrate) the store the settings name."""
        settings = settings or load_settings(**overrides)
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = open_engine(settings.resolved_database_url(), settings.postgres_pool_size)
        try:
            migrate(engine)
        except Exception:
            engine.close()
            raise
        return cls(settings, engine)

    @cached_property
    def ingestor(self) -> Ingestor:
        ingestor = Ingestor(
            self.engine,
            timedelta(hours=self.settings.dedup_window_hours),
            max_rows=self.settings.commit_max_rows,
            max_message_bytes=self.settings.max_message_bytes,
        )
        if self.settings.resolve_identities:
            ingestor.after_commit.append(self.follower.poke)
        # Erased people stay erased: events carrying their identifiers are dropped and counted.
        from .identity.identifiers import Normaliser
        from .privacy.suppression import SuppressionGate

        ingestor.suppression = SuppressionGate(self.engine, Normaliser(self.identity_config))
        return ingestor

    @cached_property
    def identity_config(self) -> IdentityConfig:
        return load_identity_config(self.settings.identity_config_path())

    @cached_property
    def resolver(self) -> Resolver:
        return Resolver(self.engine, self.identity_config)

    @cached_property
    def follower(self) -> Follower:
        """The resolver's thread in a server (started by the first commit of the writer thread)."""
        return Follower(self.resolver, after=self.update_segments,
                        share=self.settings.resolve_share,
                        busy=lambda: self.ingestor.busy_seconds,
                        poll=1.0 if self.engine.name == "postgres" else None)

    @cached_property
    def privacy_config(self) -> "PrivacyConfig":
        from .privacy.config import load_privacy_config

        return load_privacy_config(self.settings.privacy_config_path())

    @cached_property
    def segments(self) -> Segments:
        """Computed traits and segments (``ws.segments.traits`` holds the trait definitions)."""
        segments = Segments(self)
        segments.sync()
        return segments

    @cached_property
    def predict(self) -> "Predictions":
        """Predictive models (CLV, RFM, churn, affinity, look-alike) and their cards."""
        from .predict.service import Predictions

        return Predictions(self)

    def resolve(self, progress: Callable[[int], object] | None = None) -> int:
        """Resolve every stored event not resolved yet to a profile, then bring traits and
        segment memberships up to date; return how many events were resolved. ``progress`` is
        called with each step's number of events."""
        done = self.resolver.catch_up(progress=progress)
        self.update_segments()
        return done

    def update_segments(self) -> dict[str, Any]:
        """Recompute the traits and memberships of the profiles resolved since the last call."""
        from .segments.realtime import catch_up

        return catch_up(self.segments)

    def init(self, channels: list[str]) -> dict[str, Any]:
        """Make the admin key and one source per channel asked for (named after the channel).

        Channels that already have a source of that name are skipped, so ``init`` can be re-run.
        """
        for channel in channels:
            if channel not in CHANNELS:
                raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
        with self.engine.transaction() as tx:
            admin_key = create_key(tx, "admin", label="admin key made by init")
        existing = {s.name for s in list_sources(self.engine)}
        made = []
        for channel in channels:
            if channel in existing:
                continue
            source, key = create_source(self.engine, channel, channel)
            made.append({"name": source.name, "channel": source.channel, "write_key": key,
                         "source_id": source.source_id})
        return {"admin_key": admin_key, "sources": made,
                "database": self.engine.url if self.engine.name == "duckdb" else "postgresql"}

    def close(self) -> None:
        if "ingestor" in self.__dict__:
            self.ingestor.close()
        if "follower" in self.__dict__:
            self.follower.stop()
        if "resolver" in self.__dict__:
            self.resolver.close()
        self.engine.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
