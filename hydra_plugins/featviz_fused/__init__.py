"""featviz's Hydra launcher plugin: fused sweeps (conf/launcher/fused.yaml)."""
