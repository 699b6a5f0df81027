"""Trainers (xe; later scst, nes, es) and the helpers they share."""
