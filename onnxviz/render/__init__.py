"""Pictures from arrays: heatmaps, overlays, grids, plots, the HTML report (numpy + OpenCV only).

Images are uint8 H×W×3 RGB arrays throughout.
"""

from onnxviz.render.grid import channel_grid, filter_grid, label, tile
from onnxviz.render.heatmap import COLORMAPS, colorize, gradient_image, normalize, overlay, upsample
from onnxviz.render.io import write_npy, write_png, write_text
from onnxviz.render.plot import bar_chart
from onnxviz.render.report import Report, View

__all__ = [
    "COLORMAPS",
    "Report",
    "View",
    "bar_chart",
    "channel_grid",
    "colorize",
    "filter_grid",
    "gradient_image",
    "label",
    "normalize",
    "overlay",
    "tile",
    "upsample",
    "write_npy",
    "write_png",
    "write_text",
]
