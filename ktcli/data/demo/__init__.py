"""The built-in demo dataset: 20 synthetic fine-grained bird species in CUB's layout.

``species`` defines the classes, ``creature`` draws one bird, ``scene`` puts it on a
cluttered background, ``dataset`` writes the whole set to disk.
"""
from .dataset import MANIFEST_NAME, make_demo_dataset
from .species import DEMO_CLASSES, PART_VALUES, species_parts

__all__ = ['DEMO_CLASSES', 'MANIFEST_NAME', 'PART_VALUES', 'make_demo_dataset', 'species_parts']
