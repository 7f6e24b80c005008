"""Synthetic multi-channel retail data with ground truth.

``generate()`` writes a web shop's Segment events, app events, till
receipts, a messy CRM export, e-mail engagement and a DMP feed for a
simulated customer base, plus ``ground_truth.csv`` naming the real person
behind every record. The data carries planted, known signal so identity
resolution, CLV/churn, cross-sell, RFM and look-alike features can be
evaluated against the truth instead of eyeballed.
"""

from .generate import generate

__all__ = ["generate"]
