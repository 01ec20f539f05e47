class Client: pass
class LocalCluster: pass
def as_completed(*a, **k): raise RuntimeError("no dask on the device")
