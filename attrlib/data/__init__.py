"""The data layer: a folder or manifest of images (the benchmark's or a user's) to labelled, split,
model-ready tensors.

    data = load_study_data("data/benchmark", heldout=config.heldout)
    print(format_bias_table(data.bias_table()))
    train = ImageDataset(data.split("train"), data, policy="crop", size=64, train=True)

Modules: `images` (safe decoding), `sources` (folder / manifest discovery and validation), `splits`
(train / val / validation-subclass / test / fine-tuning splits, the rotations a data set allows), `study_data` (`load_study_data`, `StudyData`), `bias` (the bias
table), `datasets` (`ImageDataset`, input policies, in-memory cache, `verify_images`), `augment` (blur and JPEG
training augmentation), `pixels` (what the pixels say of an image's history: a perceptual hash for the
near-duplicate groups every split keeps whole, JPEG blockiness), `audit` (file metadata
from headers and the shortcut audit: can a generator be told apart by format, size, mode, JPEG history or
content alone?).
"""
from .augment import AUGMENTATIONS, BlurJPEG, build_augment
from .audit import Audit, ShortcutWarning, file_metadata, shortcut_audit
from .bias import bias_table, format_bias_table
from .datasets import CACHE_LIMIT_BYTES, POLICIES, ImageDataset, collate_patches, grid_shape, verify_images
from .fingerprint import data_fingerprint
from .images import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, image_size, is_image_path, load_image, load_mask
from .pixels import JPEG_HISTORY, blockiness, near_duplicate_groups, perceptual_hash, pixel_statistics
from .sources import list_images
from .splits import (FT_FRACTION, FT_SEED, MIN_ROTATION_GENERATORS, MIN_TEST_IMAGES, MIN_TRAIN_IMAGES, assign_splits,
                     choose_val_subclass, cross_fit_folds, eligible_rotations)
from .study_data import (SPLIT_NAMES, SPLIT_SEED, StudyData, label_codes, load_config_data, load_study_data,
                         resolve_rotation)

__all__ = [
    "AUGMENTATIONS", "BlurJPEG", "build_augment",
    "collate_patches", "grid_shape", "load_study_data", "load_config_data", "label_codes", "data_fingerprint", "StudyData", "SPLIT_SEED", "ImageDataset", "verify_images", "load_image", "load_mask", "image_size",
    "is_image_path", "bias_table", "format_bias_table", "assign_splits", "choose_val_subclass", "cross_fit_folds", "eligible_rotations", "resolve_rotation", "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS", "CACHE_LIMIT_BYTES", "POLICIES", "SPLIT_NAMES", "FT_FRACTION", "FT_SEED",
    "list_images", "file_metadata", "shortcut_audit", "Audit", "ShortcutWarning",
    "JPEG_HISTORY", "blockiness", "near_duplicate_groups", "perceptual_hash", "pixel_statistics",
    "MIN_ROTATION_GENERATORS", "MIN_TEST_IMAGES", "MIN_TRAIN_IMAGES",
]
