"""Readers of what users have: BED text, `.h5ad` matrices, label sheets."""

#: The modality of a MuData (`.h5mu`) read when none is named: the one that holds the peaks.
DEFAULT_MODALITY = "atac"
