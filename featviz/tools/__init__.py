"""Tools around the render loop: diagnostics figures, dataset examples, contact sheets, prior data.

Library functions only; their command lines live in :mod:`featviz.app.commands`.
"""
