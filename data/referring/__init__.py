"""Referring-segmentation records: one per templated expression of an object.

From any segmentation masks (class masks or instance masks), every object
gets templated expressions ("the small building left of the road") that
describe it alone; each becomes one record with `text` and
`masks["target"]`. The package holds:

  expressions  instances of a mask and the expression grammar
  chipping     LabelledImage and its chips (ids, georeference, shifted chips)
  sources      toyworld, spacenet_buildings, spacenet_roads, levircd, elevation
  builder      Options and build(source, out_dir, opt): the records
  releases     the RefSegRS / RRSIS-D release formats -> records
  __main__     the CLI: python -m data.referring --source NAME --out DIR

The public names of expressions, chipping, sources and builder are importable
from here, e.g. `referring.build("toyworld", out_dir, counts={...})`.
"""

from data.referring.builder import (
    GENERATOR_VERSION,
    Options,
    build,
    generate,
    image_scenes,
)
from data.referring.chipping import (
    LabelledImage,
    chip_id,
    chips,
    crop,
    shifted_train_chips,
    windows,
)
from data.referring.expressions import (
    EXTREMES,
    Instance,
    Query,
    Scene2D,
    instances_from_class_mask,
    instances_from_ids,
    position_phrase,
    position_word,
    referring_expressions,
    relation,
    render,
    size_words,
)
from data.referring.sources import (
    SOURCES,
    TOYWORLD_NAMES,
    rasterise_geojson,
    source_elevation,
    source_levircd,
    source_spacenet_buildings,
    source_spacenet_roads,
    source_toyworld,
)

__all__ = [
    "EXTREMES",
    "GENERATOR_VERSION",
    "SOURCES",
    "TOYWORLD_NAMES",
    "Instance",
    "LabelledImage",
    "Options",
    "Query",
    "Scene2D",
    "build",
    "chip_id",
    "chips",
    "crop",
    "generate",
    "image_scenes",
    "instances_from_class_mask",
    "instances_from_ids",
    "position_phrase",
    "position_word",
    "rasterise_geojson",
    "referring_expressions",
    "relation",
    "render",
    "shifted_train_chips",
    "size_words",
    "source_elevation",
    "source_levircd",
    "source_spacenet_buildings",
    "source_spacenet_roads",
    "source_toyworld",
    "windows",
]
