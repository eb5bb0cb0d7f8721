"""Trained models in use (torch layer): reading any model folder, and vectors from it."""
