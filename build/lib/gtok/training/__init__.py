"""`gtok train`: the run orchestration, the run's identity and resume, and its Lightning callbacks."""
