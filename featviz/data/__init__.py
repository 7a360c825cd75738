"""Files that ship with featviz: the learned priors' defaults (docs/learned_priors.md says from which photos)."""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
