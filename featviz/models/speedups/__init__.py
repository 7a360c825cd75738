"""Speed-ups of a FeatureModel that keep results equal up to float rounding (docs/performance.md).

``options`` switches each alone; ``folding`` folds eval BatchNorms into convolutions,
``fusion`` runs convolution + ReLU/ReLU6 as one oneDNN call, ``memory`` keeps freed memory
for reuse. ``chains`` finds conv -> norm -> activation chains by a probe forward pass, by
what the modules do rather than by the class of the network.
"""

from featviz.models.speedups.folding import FoldedPair, fold_batchnorms, unfold
from featviz.models.speedups.fusion import FusedPair, fuse_conv_activations, unfuse
from featviz.models.speedups.memory import keep_freed_memory
from featviz.models.speedups.options import PerfOptions

__all__ = ["FoldedPair", "FusedPair", "PerfOptions", "fold_batchnorms", "fuse_conv_activations", "keep_freed_memory", "unfold", "unfuse"]
