-- What a profile lookup reads by key, so it stays an index lookup as these tables grow:
-- the consent entries of a profile and the identity decisions of its events.
CREATE INDEX consent_ledger_profile ON consent_ledger (profile_id);
CREATE INDEX identity_decisions_seq ON identity_decisions (seq);
