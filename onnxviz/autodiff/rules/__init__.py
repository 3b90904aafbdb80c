"""Gradient rules, one small function per op type; importing this fills ``RULES``.

Each module registers its rules with :func:`onnxviz.autodiff.registry.register`.
"""

from onnxviz.autodiff.rules import passthrough  # noqa: F401
from onnxviz.autodiff.rules import activation  # noqa: F401
from onnxviz.autodiff.rules import elementwise  # noqa: F401
from onnxviz.autodiff.rules import linalg  # noqa: F401
from onnxviz.autodiff.rules import normalization  # noqa: F401
from onnxviz.autodiff.rules import reduce  # noqa: F401
from onnxviz.autodiff.rules import softmax  # noqa: F401
from onnxviz.autodiff.rules import conv  # noqa: F401
from onnxviz.autodiff.rules import pool  # noqa: F401
from onnxviz.autodiff.rules import resample  # noqa: F401
from onnxviz.autodiff.rules import shape  # noqa: F401
from onnxviz.autodiff.rules import quantize  # noqa: F401
