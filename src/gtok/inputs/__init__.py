"""Readers of what users have: BED text, `.h5ad` matrices, label sheets."""
