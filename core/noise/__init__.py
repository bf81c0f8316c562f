"""Apartment-noise classification with knowledge distillation (mark1-mark3, mark2.5-2.9)."""
