-- What a profile lookup reads by key (consent_ledger is indexed by profile since 0007):
-- the identity decisions of a profile's events.
CREATE INDEX identity_decisions_seq ON identity_decisions (seq);
