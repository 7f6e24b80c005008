"""The identity graph in memory: identifiers, profiles, and the merge rules. Pure logic, no I/O.

A profile is a connected component of identifiers that co-occur in events, unless a link would break
a rule. :meth:`IdentityGraph.resolve` takes one event's identifiers (highest priority first) and:

1. finds the profiles they already belong to;
2. checks the union against the per-type limits and the manual separations; while it breaks one, the
   lowest-priority identifier is kept out of this event's links (the decision is recorded with its
   reason) and the check is retried — Segment Unify's rule;
3. creates a profile (no identifier known), joins one, or merges several. On a merge the **oldest
   profile survives** (created by the earliest event); the others become its aliases.

Profile ids are derived from the identifier that created the profile (a hash, no personal data), so
replaying the same events gives the same ids — which is what lets the bulk rebuild check itself against
this incremental path. The graph records what changed since :meth:`drain` for the store to persist.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from .config import IdentityConfig
from .identifiers import Identifier


def profile_id_for(identifier: Identifier, generation: int = 0) -> str:
    """The id of a profile created by ``identifier`` (``generation`` > 0 after a split)."""
    text = f"{identifier[0]}:{identifier[1]}" + (f"#{generation}" if generation else "")
    return "p_" + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


class Profile:
    __slots__ = ("pid", "created_seq", "members", "counts", "origin")

    def __init__(self, pid: str, created_seq: int, origin: int) -> None:
        self.pid = pid
        self.created_seq = created_seq
        self.origin = origin
        self.members: list[int] = []
        self.counts: dict[str, int] = {}   # a plain dict: a Counter per profile costs 6 µs


@dataclass
class Changes:
    """What the graph did since the last drain, in the order it happened."""

    identifiers: list[tuple] = field(default_factory=list)   # (iid, type, value, first_seen)
    profiles: list[tuple] = field(default_factory=list)      # (pid, created_at, created_seq, origin)
    merges: list[tuple] = field(default_factory=list)        # (survivor, merged, at, seq, reason)
    decisions: list[tuple] = field(default_factory=list)     # (seq, at, iid, type, value, reason)
    links: list[tuple] = field(default_factory=list)         # (seq, iid, kept, primary)
    moved: set[int] = field(default_factory=set)             # iids whose profile changed

    def __bool__(self) -> bool:
        return any((self.identifiers, self.profiles, self.merges, self.decisions, self.links,
                    self.moved))


class IdentityGraph:
    def __init__(self, config: IdentityConfig) -> None:
        self.config = config
        self.ids: dict[Identifier, int] = {}
        self.keys: list[Identifier] = []
        self.owner: list[Profile | None] = []
        self.profiles: dict[str, Profile] = {}
        self.aliases: dict[str, str] = {}               # merged pid → survivor pid
        self.separate: dict[int, set[int]] = {}         # iid → iids it must never share a profile with
        self.generations: Counter = Counter()           # identifier → profiles it has created
        self.changes = Changes()
        self._limits = {t: config.limit(t) for t in config.type_names}

    # -- loading -------------------------------------------------------------------------------
    def reserve(self, n: int) -> None:
        """Make room for identifier numbers below ``n`` at once (a bulk load)."""
        if len(self.keys) < n:
            self.keys.extend([("", "")] * (n - len(self.keys)))
            self.owner.extend([None] * (n - len(self.owner)))

    def add_identifier(self, iid: int, ident: Identifier) -> None:
        while len(self.keys) <= iid:
            self.keys.append(("", ""))
            self.owner.append(None)
        self.keys[iid] = ident
        self.ids[ident] = iid

    def add_profile(self, pid: str, created_seq: int, origin: int) -> Profile:
        profile = Profile(pid, created_seq, origin)
        self.profiles[pid] = profile
        return profile

    def assign(self, iid: int, profile: Profile | None) -> None:
        old = self.owner[iid]
        if old is profile:
            return
        if old is not None:
            old.members.remove(iid)
            old.counts[self.keys[iid][0]] -= 1
        self.owner[iid] = profile
        if profile is not None:
            profile.members.append(iid)
            id_type = self.keys[iid][0]
            profile.counts[id_type] = profile.counts.get(id_type, 0) + 1

    # -- lookups ---------------------------------------------------------------------------------
    def profile_of(self, ident: Identifier) -> Profile | None:
        iid = self.ids.get(ident)
        return None if iid is None else self.owner[iid]

    def survivor(self, pid: str) -> str:
        """The live profile a (possibly merged) profile id resolves to."""
        chain = []
        while pid in self.aliases:
            chain.append(pid)
            pid = self.aliases[pid]
        for alias in chain[:-1]:
            self.aliases[alias] = pid
        return pid

    # -- the rules -------------------------------------------------------------------------------
    def _violation(self, profiles: list[Profile], new: list[int]) -> str | None:
        counts: dict[str, int] = {}
        for p in profiles:
            for id_type, n in p.counts.items():
                counts[id_type] = counts.get(id_type, 0) + n
        for iid in new:
            id_type = self.keys[iid][0]
            counts[id_type] = counts.get(id_type, 0) + 1
        for id_type, n in counts.items():
            limit = self._limits.get(id_type, self.config.default_limit)
            if n > limit:
                return f"would give the profile {n} {id_type} values (limit {limit})"
        if self.separate:
            return self._separated(profiles, new)
        return None

    def _separated(self, profiles: list[Profile], new: list[int]) -> str | None:
        """A manual split forbids two identifiers to share a profile: would this union do it?"""
        together = {id(p) for p in profiles}
        fresh = set(new)
        members = [i for p in profiles for i in p.members if i in self.separate]
        for iid in members + [i for i in new if i in self.separate]:
            home = self.owner[iid]
            for other in self.separate[iid]:
                o = self.owner[other]
                if other in fresh or (o is not None and o is not home and id(o) in together):
                    a, b = self.keys[iid], self.keys[other]
                    return f"{a[0]}:{a[1]} was split from {b[0]}:{b[1]}"
        return None

    def resolve(self, identifiers: list[Identifier], seq: int, at: datetime,
                reason: str = "shared identifier", record_links: bool = True) -> str | None:
        """Resolve one event's identifiers (highest priority first) to a profile id.

        ``record_links`` False for a manual link, which is a rule, not an event."""
        if not identifiers:
            return None
        changes = self.changes
        kept = list(identifiers)
        iids: dict[Identifier, int] = {}
        for ident in kept:
            iid = self.ids.get(ident)
            if iid is None:
                iid = len(self.keys)
                self.add_identifier(iid, ident)
                changes.identifiers.append((iid, ident[0], ident[1], at))
            iids[ident] = iid
        while True:
            profiles: list[Profile] = []
            new: list[int] = []
            for ident in kept:
                p = self.owner[iids[ident]]
                if p is None:
                    new.append(iids[ident])
                elif p not in profiles:
                    profiles.append(p)
            why = self._violation(profiles, new) if len(kept) > 1 else None
            if why is None:
                break
            dropped = kept.pop()
            held = self.owner[iids[dropped]]
            changes.decisions.append((seq, at, iids[dropped], dropped[0], dropped[1],
                                      f"kept out of the merge: {why}"
                                      + (f"; stays in {held.pid}" if held else "")))
        for ident in identifiers if record_links else ():
            changes.links.append((seq, iids[ident], ident in kept, ident == kept[0]))
        if not profiles:
            target = self._create(kept[0], iids[kept[0]], seq, at)
        else:
            profiles.sort(key=lambda p: (p.created_seq, p.pid))
            target = profiles[0]
            ours = next(i for i in kept if self.owner[iids[i]] is target)
            theirs = [next(i for i in kept if self.owner[iids[i]] is other)
                      for other in profiles[1:]]
            for other, via in zip(profiles[1:], theirs):
                pair = f"{ours[0]}:{ours[1]} and {via[0]}:{via[1]}"
                why = (f"{reason}: one event carried {pair}" if reason == "shared identifier"
                       else f"{reason} ({pair})")
                self._merge(target, other, seq, at, why)
        for iid in new:
            self.assign(iid, target)
            changes.moved.add(iid)
        return target.pid

    def _create(self, ident: Identifier, iid: int, seq: int, at: datetime) -> Profile:
        generation = self.generations[ident]
        self.generations[ident] += 1
        pid = profile_id_for(ident, generation)
        profile = self.add_profile(pid, seq, iid)
        self.changes.profiles.append((pid, at, seq, iid))
        return profile

    def _merge(self, survivor: Profile, merged: Profile, seq: int, at: datetime,
               reason: str) -> None:
        moved = self.changes.moved
        for iid in merged.members:
            self.owner[iid] = survivor
            survivor.members.append(iid)
            moved.add(iid)
        for id_type, n in merged.counts.items():
            survivor.counts[id_type] = survivor.counts.get(id_type, 0) + n
        merged.members.clear()
        merged.counts.clear()
        del self.profiles[merged.pid]
        self.aliases[merged.pid] = survivor.pid
        self.changes.merges.append((survivor.pid, merged.pid, at, seq, reason))

    def drain(self) -> Changes:
        changes, self.changes = self.changes, Changes()
        return changes
