"""featviz's configs and studies on Hydra's search path (featviz_searchpath.py)."""
