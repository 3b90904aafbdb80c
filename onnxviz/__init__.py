"""onnxviz: look inside any exported CNN from its .onnx file alone."""

__version__ = "0.1.0"
