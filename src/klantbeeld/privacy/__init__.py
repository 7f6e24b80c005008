"""Privacy: consent, data-subject requests, suppression, retention, audit, hashing."""
