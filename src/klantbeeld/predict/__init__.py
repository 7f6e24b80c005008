"""Predictive behaviour analytics: purchase, spend and lifetime-value models."""
