"""The graph layer: pure functions from ModelProto to ModelProto or data.

load (load, check, IR version, shape inference), info (image input, opset,
size, metadata), receptive (receptive fields), layers (the layer list),
rewrite (expose, cut, prune).
"""
