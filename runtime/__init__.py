"""vcam runtime: the real-time engine (audio in, features, ONNX graphs, clock, stats).

Needs only numpy, onnxruntime and sounddevice. Nothing happens at import time.
"""
