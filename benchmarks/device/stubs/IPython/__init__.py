"""Device stub: no IPython on the GPU machine; notebooks run in-process there (benchmarks/device/gpu_claims.py)."""
def get_ipython():
    return None
version_info = (9, 0, 0, "", 0)
