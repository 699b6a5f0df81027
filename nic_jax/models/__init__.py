"""Caption decoders (Flax NNX) behind a functional boundary; see `functional.py`."""
