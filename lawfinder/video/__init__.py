"""Neural Noether embeddings for video prediction, tailored through :mod:`lawfinder.tailoring`."""
