"""Identity resolution: identifiers, the identity graph, probabilistic matching."""
