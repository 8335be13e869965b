"""data stage."""

from lmm_concepts.data.synthetic import SyntheticWorld, WorldSample, parse_caption, shape_nouns

__all__ = ["SyntheticWorld", "WorldSample", "parse_caption", "shape_nouns"]
