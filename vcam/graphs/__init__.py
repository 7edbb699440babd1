"""torch definitions, training and export of the ONNX graphs (the ``export`` extra).

Never imported at run time: the runtime loads the exported files under ``onnx/``.
"""
