"""featviz's studies: one folder each, its experiment config (experiment/NAME), README and record."""
