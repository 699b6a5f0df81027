"""Evaluation: decoding a split to captions and scoring them."""
