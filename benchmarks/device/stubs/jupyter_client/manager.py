class AsyncKernelManager:
    pass
