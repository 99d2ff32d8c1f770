"""The catalog: models, datasets, methods, sweep presets and the paper's reference numbers, as data.

Nothing here is code that builds things; `worker.catalog` is the one loader that reads these files.
"""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
