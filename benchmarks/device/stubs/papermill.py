"""Device stub: papermill is not installed on the GPU machine (notebooks run in-process there)."""
