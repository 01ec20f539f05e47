"""The embedded, SIMULATED benchmark of the study (design: docs/benchmark.md).

The real images of seed 002 (StyleGAN2, StyleGAN3, Latent Diffusion, Taming Transformers, LSGM and Guided
Diffusion over horses, faces, cars...) are not public, so the study generates its own, locally and
deterministically: procedural content subclasses (`content`), six simulated generator families that add
architecture-inspired high-frequency fingerprints (`families`), seed 002's biased generator x subclass
training matrix, a test pool for every subclass and the unbiased and instance-matched oracles' training sets
(`synth`), a variant whose files look like a real folder's (`realistic`: sizes, formats, unequal counts), and
the image statistics behind the checks that make the simulation trustworthy (`stats`; the checks that train live in `attrlib.study.checks`). Nothing here is an
image from a real generator.
"""
from .synth import (DEFAULT_STRENGTH, GENERATOR_VERSION, GENERATORS, HELDOUT, SEED002_MATRIX, SEED002_TEST_COUNTS,
                    SUBCLASSES, VARIANTS, cell_counts, files_digest, instance_counts, read_benchmark, synthesize)

# every table and figure made on this benchmark says so
SIMULATED_NOTE = "simulated benchmark (not real generator images)"

__all__ = ["SIMULATED_NOTE", "DEFAULT_STRENGTH", "GENERATOR_VERSION", "GENERATORS", "HELDOUT", "SEED002_MATRIX",
           "SEED002_TEST_COUNTS", "SUBCLASSES", "VARIANTS", "cell_counts", "files_digest", "instance_counts",
           "read_benchmark", "synthesize"]
