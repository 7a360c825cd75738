"""featviz's configs: the primary configs and every config group (Hydra reads them as pkg://featviz.conf)."""
