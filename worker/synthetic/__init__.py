"""Small seeded synthetic shift benchmarks in the real datasets' layouts, and the glyph source task for
pretraining the tiny backbones. Everything is rendered from fonts that ship with matplotlib.

generate_benchmark("synth_style", "/data")   # -> /data/synth_style, read by load_dataset("synth_style", "/data")
generate_all("/data")                         # every synthetic benchmark of the catalog
render_source(40_000, seed=0)                 # pretraining images and labels as arrays
"""

from worker.synthetic.generate import GENERATOR_VERSION, generate_all, generate_benchmark, read_manifest
from worker.synthetic.source import SOURCE_CHARS, SourceTask, render_source

__all__ = [
    "GENERATOR_VERSION",
    "SOURCE_CHARS",
    "SourceTask",
    "generate_all",
    "generate_benchmark",
    "read_manifest",
    "render_source",
]
