"""Profiles: the single customer view assembled from identities, events and traits."""
