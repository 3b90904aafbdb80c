"""Write outputs atomically: a temporary file in the destination folder, then ``os.replace``.

A failure at any point (encoder, disk full, interrupted write) leaves the
destination as it was: no half-written file, no stray temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from onnxviz.errors import ImageError, OnnxvizError
from onnxviz.render._image import as_rgb


def _file_mode() -> int:
    """Mode of a newly created file under the current umask (mkstemp gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    Raises:
        OnnxvizError: the destination folder cannot be created or written.
        Whatever ``write`` raises, after the temporary file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OnnxvizError(
            f"cannot write {str(path)!r}: {exc.strerror or exc}; choose a writable output folder"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        # BaseException too: a Ctrl-C mid-write must not leave the temporary file behind.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OnnxvizError(
                f"cannot write {str(path)!r}: {exc.strerror or exc}; check the path and free space"
            ) from exc
        raise
    return path


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an RGB (or grey) uint8 image as PNG bytes.

    Raises:
        ImageError: not a uint8 image, or the encoder failed.
    """
    bgr = cv2.cvtColor(as_rgb(rgb), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ImageError(f"PNG encoding failed for an image of shape {bgr.shape}")
    return buf.tobytes()


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write a uint8 RGB (or grey) image as a PNG, atomically.

    Args:
        path: destination; parent folders are created.
        rgb: H×W×3 RGB, H×W or H×W×1 grey, uint8.

    Returns:
        The destination path.

    Raises:
        ImageError: ``rgb`` is not a uint8 image or cannot be encoded.
        OnnxvizError: the destination cannot be written.
    """
    rgb = as_rgb(rgb)  # a bad array fails before any folder or file is created
    return _atomic_write(path, lambda f: f.write(encode_png(rgb)))


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an array in ``.npy`` format (no pickled objects), atomically.

    Returns:
        The destination path.
    """
    array = np.asarray(array)
    return _atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text as UTF-8, atomically.

    Returns:
        The destination path.
    """
    return _atomic_write(path, lambda f: f.write(text.encode("utf-8")))
