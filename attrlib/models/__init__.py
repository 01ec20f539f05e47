"""Models: backbones by name, input stems, the single/dual-head attribution model, a head selector for CAMs."""
from .backbones import CompactNet, TorchvisionResNet, build_backbone
from .heads import AttributionModel, HeadSelector, build_model
from .stems import NPRStem, Normalize, SRMStem, Stem
from .weights import check_pretrained, load_local_weights, pretrained_path

__all__ = ["AttributionModel", "CompactNet", "HeadSelector", "NPRStem", "Normalize", "SRMStem", "Stem",
           "TorchvisionResNet", "build_backbone", "build_model", "check_pretrained", "load_local_weights",
           "pretrained_path"]
