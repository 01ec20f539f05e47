def run_sync(f):
    return f
