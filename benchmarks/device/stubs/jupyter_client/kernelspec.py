class KernelSpecManager:
    def find_kernel_specs(self):
        return {}
