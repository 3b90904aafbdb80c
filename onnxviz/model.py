"""``Model``: one loaded ONNX model, its preprocessing, and the arrays methods ask for.

A method says what it needs (tensors, gradients); ``Model`` builds (and caches) one
rewritten model and session for that need and returns numpy arrays. No hooks, no
hidden state beyond those caches.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx

from onnxviz.errors import GradientError, ImageError, MethodError, ModelLoadError, OnnxvizError
from onnxviz.graph._nodes import attrs, tensor_names
from onnxviz.graph.info import FLOAT_TYPES, LABELS_KEY, InputSpec, image_input, labels, preprocessing_dict
from onnxviz.graph.layers import Layer, list_layers
from onnxviz.graph.load import load_model, tensor_shapes
from onnxviz.graph.rewrite import expose, fix_batch, fix_input_dims, fold_pads, require_known, share_padded
from onnxviz.preprocess import PRESETS, Preprocessing, preprocess, seen_image
from onnxviz.runtime.session import Session, check_batch_size, get_session

Target = int | str | Sequence[int | str] | np.ndarray | None

#: Ops that turn logits into probabilities; gradients are taken before them.
_PROBABILITY_OPS = ("Softmax", "LogSoftmax")
_PASS_THROUGH = ("Identity", "Flatten", "Reshape", "Squeeze")
#: Fixed-batch rewrites (and their sessions) a Model keeps.
FIXED_BATCH_MODELS = 8
#: Rewritten models (exposing or gradient graphs, each a full copy of the weights) a Model keeps.
REWRITTEN_MODELS = 8


@dataclass(frozen=True)
class VJP:
    """Result of one forward+backward run.

    Attributes:
        output: the differentiated tensor's value (e.g. logits), shape (N, ...).
        gradients: requested tensor name -> its gradient, each with a leading batch axis.
        exposed: extra forward tensors asked for, by name.
    """

    output: np.ndarray
    gradients: dict[str, np.ndarray]
    exposed: dict[str, np.ndarray]


class Model:
    """An ONNX image model ready to run, expose and differentiate.

    Args:
        source: a path to a ``.onnx`` file, its bytes, or a ``ModelProto``.
        provider: "auto" (CUDA when it really works, else CPU), "cpu" or "cuda".
        preprocessing: a :class:`Preprocessing`, a preset name ("torchvision", "caffe",
            "tf", "raw"), or None to read it from the model's metadata (falling back to
            torchvision-style ImageNet normalisation at the model's input size, or to "raw"
            0..255 pixels for a model taking integer pixels).
        threads: intra-op threads for onnxruntime (None: its default).
        batch_size: largest batch sent to onnxruntime in one call.
    """

    def __init__(
        self,
        source: str | os.PathLike | bytes | onnx.ModelProto,
        provider: str = "auto",
        preprocessing: Preprocessing | str | None = None,
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        self.path = Path(source) if isinstance(source, (str, os.PathLike)) else None
        self.proto = load_model(source)
        self.input: InputSpec = image_input(self.proto)
        self.provider = provider
        self.threads = threads
        self.batch_size = batch_size
        self.labels: list[str] | None = labels(self.proto)
        self.preprocessing = self._preprocessing(preprocessing)
        # key -> rewritten model (and what goes with it), the most recent last (see _cached)
        self._rewritten: OrderedDict[tuple, object] = OrderedDict()
        # Sessions of rewritten models with a fixed batch size, the most recent last (see
        # _fixed); the fixed-batch copy itself goes once its session is built.
        self._fixed_batch: OrderedDict[tuple, Session] = OrderedDict()
        # id(proto) -> (proto, session): get_session hashes the serialized model (~18 ms
        # for the shipped model), far more than a forward pass, so look it up once per proto.
        self._sessions: dict[int, tuple[onnx.ModelProto, Session]] = {}
        self._check_labels()

    def _check_labels(self) -> None:
        """Raise ModelLoadError when the stored labels cannot name the logits' classes."""
        if not self.labels:
            return
        shape = self._shapes.get(self.logit_name)
        if shape and len(shape) > 1 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
            classes = int(np.prod(shape[1:]))
            if classes != len(self.labels):
                raise ModelLoadError(
                    f"metadata {LABELS_KEY!r} has {len(self.labels)} class names but "
                    f"{self.logit_name!r} scores {classes} classes; fix the labels or remove them "
                    f"from the model"
                )

    # ----------------------------------------------------------------- description
    @property
    def name(self) -> str:
        if self.path is not None:
            return self.path.name
        return self.proto.graph.name or "model"

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.proto.graph.output]

    @cached_property
    def layers(self) -> list[Layer]:
        """Every compute tensor with op type, shape and receptive field, in graph order."""
        return list_layers(self.proto)

    @cached_property
    def logit_name(self) -> str:
        """The tensor gradients are taken of: the first output, or the tensor before a
        trailing Softmax/LogSoftmax (through Identity/Flatten/Reshape/Squeeze)."""
        producers = {out: node for node in self.proto.graph.node for out in node.output}
        name = self.output_names[0]
        node = producers.get(name)
        while node is not None and node.op_type in _PASS_THROUGH:
            node = producers.get(node.input[0])
        if node is not None and node.op_type in _PROBABILITY_OPS:
            return node.input[0]
        return name

    @property
    def ends_in_softmax(self) -> bool:
        return self.logit_name != self.output_names[0]

    @cached_property
    def gradient_input(self) -> str:
        """The tensor input gradients are taken with respect to: the image input, or for a
        model taking integer pixels (uint8 images, preprocessing inside the graph) the
        float copy its Cast makes, which has the input's shape and layout."""
        if self.input.dtype in FLOAT_TYPES:
            return self.input.name
        for node in self.proto.graph.node:
            if (node.op_type == "Cast" and node.input[0] == self.input.name
                    and attrs(node).get("to") in FLOAT_TYPES):
                return node.output[0]
        kind = onnx.TensorProto.DataType.Name(self.input.dtype).lower()
        raise GradientError(
            f"the image input {self.input.name!r} takes {kind} pixels and no Cast to float reads "
            f"it, so there is no float copy of it to differentiate; methods without gradients "
            f"(occlusion, Score-CAM, activations) still work"
        )

    @property
    def providers(self) -> list[str]:
        """Execution providers the plain forward session really uses."""
        return self.session(self.proto).providers

    def tensor_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def check_tensor(self, name: str) -> str:
        """Return ``name`` if the model has that tensor, else raise with close matches."""
        if name not in self._tensor_names:
            require_known(self.proto.graph, [name])
        return name

    @cached_property
    def _shapes(self) -> dict:
        """Tensor name -> shape as shape inference left it on the loaded model."""
        return tensor_shapes(self.proto)

    @cached_property
    def _tensor_names(self) -> frozenset[str]:
        return frozenset(tensor_names(self.proto.graph))

    # ----------------------------------------------------------------- sessions
    def session(self, proto: onnx.ModelProto) -> Session:
        hit = self._sessions.get(id(proto))
        if hit is None or hit[0] is not proto:
            hit = self._sessions[id(proto)] = (proto, get_session(proto, self.provider, self.threads))
        return hit[1]

    def _cached(self, key: tuple, build):
        """``build()``, kept under ``key`` among the last :data:`REWRITTEN_MODELS` (a model
        exposing each layer in turn would otherwise hold a copy of the weights per layer);
        an evicted rewrite takes its fixed-batch copies and their sessions with it."""
        if key not in self._rewritten:
            self._rewritten[key] = build()
            while len(self._rewritten) > REWRITTEN_MODELS:
                old, _ = self._rewritten.popitem(last=False)
                for fixed in [k for k in self._fixed_batch if k[:-1] == old]:
                    del self._fixed_batch[fixed]
        self._rewritten.move_to_end(key)
        return self._rewritten[key]

    def call_size(self, n: int) -> int:
        """Samples per onnxruntime call for a batch of ``n``: the input's static batch if
        it has one, else ``batch_size`` evened out over the calls (33 samples at batch
        size 32 run as two calls of 17, the last padded)."""
        static = self.input.shape[0]
        if isinstance(static, int) and static > 0:
            return static
        batch_size = check_batch_size(self.batch_size)
        calls = -(-max(n, 1) // batch_size)
        return -(-max(n, 1) // calls)

    def _fixed(self, key: tuple, proto: onnx.ModelProto, n: int, inputs: Sequence[str],
               order: str = "default") -> Session:
        """A session of ``proto`` with the batch axis of ``inputs`` fixed to
        :meth:`call_size` (n), running its nodes in ``order`` (see
        :func:`~onnxviz.runtime.session.session_options`).

        onnxruntime keeps far more of a static-shape graph in its blocked NCHWc layout
        (a gradient graph runs up to 1.5x faster), at the price of one session per call
        size; the last :data:`FIXED_BATCH_MODELS` are kept. The fixed copy of the model
        is not: its session holds what it needs.
        """
        key = (*key, self.call_size(n))
        hit = self._fixed_batch.get(key)
        if hit is None:
            hit = self._fixed_batch[key] = get_session(
                fix_batch(proto, key[-1], inputs), self.provider, self.threads, order)
            while len(self._fixed_batch) > FIXED_BATCH_MODELS:
                self._fixed_batch.popitem(last=False)
        self._fixed_batch.move_to_end(key)
        return hit

    def _run(self, model: onnx.ModelProto | Session, feeds: dict[str, np.ndarray], outputs,
             progress: bool | str = False) -> dict[str, np.ndarray]:
        session = model if isinstance(model, Session) else self.session(model)
        others = [name for name in session.input_names if name not in feeds]
        if others:  # what a Python caller could feed, a command-line user cannot
            raise ImageError(
                f"this needs model input(s) besides the image {self.input.name!r}: "
                f"{', '.join(map(repr, others))}; onnxviz feeds the image alone: ask for tensors "
                f"computed before them, or export the model with them fixed as constants"
            )
        return session.run_batched(feeds, outputs=outputs, batch_size=self.batch_size, progress=progress)

    def check_batch(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a float32 array if it can be a batch in the model's input layout.

        Raises:
            ImageError: not numbers (an image path: use :meth:`preprocess`), one sample
                without its batch axis, or no sample at all.
        """
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise ImageError(
                f"expected a preprocessed batch of numbers, got an array of {x.dtype}; turn "
                f"images into one with Model.preprocess(paths)"
            )
        if x.ndim == 3:
            raise ImageError(
                f"expected a batch (N, ...) in the model's input layout, got one sample of shape "
                f"{x.shape}: add a batch axis (x[None]) or use Model.preprocess"
            )
        if x.ndim and x.shape[0] == 0:
            raise ImageError(f"empty batch (shape {x.shape}); give at least one sample")
        return x.astype(np.float32, copy=False)

    def _feeds(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = self.check_batch(x)
        if self.input.dtype not in FLOAT_TYPES:  # integer pixels: round and saturate, as a PNG would
            dtype = onnx.helper.tensor_dtype_to_np_dtype(self.input.dtype)
            if np.issubdtype(dtype, np.integer):
                limits = np.iinfo(dtype)
                x = np.clip(np.rint(x), limits.min, limits.max).astype(dtype)
        return {self.input.name: x}

    # ----------------------------------------------------------------- forward
    def run(self, x: np.ndarray, progress: bool | str = False) -> np.ndarray:
        """The first output for a preprocessed batch ``x``, shape (N, classes) for classifiers."""
        name = self.output_names[0]
        return self._run(self.proto, self._feeds(x), [name], progress)[name]

    def logits(self, x: np.ndarray, progress: bool | str = False) -> np.ndarray:
        """Pre-softmax scores, shape (N, classes) (trailing size-1 axes flattened)."""
        out = self.activations(x, [self.logit_name], progress=progress)[self.logit_name]
        self._check_scores(self.logit_name, out.shape, np.shape(x)[0])
        return out.reshape(out.shape[0], -1)

    def _check_scores(self, name: str, shape: tuple[int, ...], n: int) -> None:
        """Raise unless ``shape`` holds one vector of class scores per sample of ``n``."""
        if len(shape) == 0 or shape[0] != n:
            raise MethodError(
                f"output {name!r} has shape {tuple(shape)} for a batch of {n}: no batch axis, so "
                f"there is no class score per image to explain; export the model with a batch axis"
            )
        if sum(d != 1 for d in shape[1:]) > 1:
            raise MethodError(
                f"output {name!r} has shape {tuple(shape)}: a map, not one score per class; "
                f"attribution methods explain a classifier's class scores, (N, classes); look at "
                f"this output with `onnxviz activations --layer {name}`"
            )

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Softmax of :meth:`logits`, shape (N, classes)."""
        z = self.logits(x).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    def activations(self, x: np.ndarray, names: Sequence[str],
                    progress: bool | str = False) -> dict[str, np.ndarray]:
        """Values of any intermediate tensors, from one run of a model exposing them and
        pruned to what they need (early tensors cost a fraction of a forward pass, and
        tensors that do not depend on a model's other inputs need only the image).

        A tensor whose zero-padded copy is asked for too, and read by nothing else, comes
        back as a view of that copy's interior (it is never computed on its own:
        :func:`~onnxviz.graph.rewrite.share_padded`).
        """
        names = list(dict.fromkeys([names] if isinstance(names, str) else names))
        if not names:
            raise OnnxvizError("no tensor names given; `onnxviz inspect` lists them")
        if not self._tensor_names.issuperset(names):
            for name in names:
                self.check_tensor(name)
        feeds = self._feeds(x)
        size, base = self._sized(feeds[self.input.name].shape)
        key = ("expose", size, tuple(names))
        exposed, computed, views = self._cached(key, lambda: self._exposing(base, names))
        session = self._fixed(key, exposed, len(feeds[self.input.name]), [self.input.name], "priority")
        values = self._run(session, feeds, computed, progress)
        for name, (padded, interior) in views.items():
            values[name] = values[padded][interior]
        return {name: values[name] for name in names}

    def _exposing(self, base: onnx.ModelProto, names: list[str]):
        """(model exposing ``names``, the names it computes, {name: (padded copy, index of
        its interior)} for the names read off a padded copy)."""
        shared, views = share_padded(base, names)
        computed = [n for n in names if n not in views]
        exposed = expose(fold_pads(shared, keep=computed, materialize=True), computed, only=True,
                         inputs=[self.input.name])
        return exposed, computed, {name: (padded, _interior(pads)) for name, (padded, pads) in views.items()}

    def predict(self, x: np.ndarray, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Top-k (class index, label, probability) per sample."""
        probs = self.probabilities(x)
        top = np.argsort(-probs, axis=1)[:, :k]
        return [[(int(c), self.label(int(c)), float(p[c])) for c in row] for row, p in zip(top, probs)]

    # ----------------------------------------------------------------- classes
    def label(self, index: int) -> str:
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return f"class {index}"

    def class_index(self, target: int | str) -> int:
        """A class index from an index, a numeric string, or a label: the label itself, else
        the one label equal to it ignoring case, else the one label that contains it."""
        if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer, str)):
            raise OnnxvizError(f"a class is an index (an integer) or a label, got {target!r}")
        if isinstance(target, (int, np.integer)):
            return int(target)
        text = str(target).strip()
        if text.lstrip("-").isdigit():
            return int(text)
        if not self.labels:
            raise OnnxvizError(
                f"class {text!r} given by name but the model has no class labels in its "
                f"metadata; give a class index instead"
            )
        exact = [i for i, lab in enumerate(self.labels) if lab == text]
        if len(exact) > 1:
            raise OnnxvizError(
                f"class {text!r} is the label of {len(exact)} classes: {self._listed(exact[:5])}; "
                f"give its class index"
            )
        if exact:
            return exact[0]
        lowered = [lab.lower() for lab in self.labels]
        matches = [i for i, lab in enumerate(lowered) if lab == text.lower()]  # ImageNet: Cardigan, cardigan
        matches = matches or [i for i, lab in enumerate(lowered) if text.lower() in lab]
        if len(matches) == 1:
            return matches[0]
        if matches:
            more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
            raise OnnxvizError(
                f"class {text!r} matches {len(matches)} labels: {self._listed(matches[:5])}{more}; "
                f"give one label exactly as written or its class index"
            )
        import difflib

        near = difflib.get_close_matches(text.lower(), list(dict.fromkeys(lowered)), n=3)
        close = [i for c in near for i, lab in enumerate(lowered) if lab == c]  # both cardigans
        hint = f"; close: {self._listed(close)}" if close else ""
        raise OnnxvizError(
            f"no class label contains {text!r}{hint}; give a class index or a label "
            f"(`onnxviz inspect --json` lists them under \"labels\")"
        )

    def _listed(self, indices: Sequence[int]) -> str:
        return ", ".join(f"{self.labels[i]!r} ({i})" for i in indices)

    def targets(self, x: np.ndarray, target: Target) -> np.ndarray:
        """One class index per sample: None means each sample's top-1 class."""
        x = self.check_batch(x)
        n = x.shape[0]
        if target is None:
            return np.argmax(self.logits(x), axis=1)
        if isinstance(target, np.ndarray) and target.ndim == 0:
            target = target.item()
        if isinstance(target, str) or np.ndim(target) == 0:
            return np.full(n, self.class_index(target), dtype=np.int64)
        out = np.asarray([self.class_index(t) for t in target], dtype=np.int64)
        if out.shape != (n,):
            raise OnnxvizError(f"got {out.size} targets for a batch of {n}: give one per sample")
        return out

    # ----------------------------------------------------------------- gradients
    def _sized(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...] | None, onnx.ModelProto]:
        """(key part, model) for a batch of ``shape``: the model itself when its image
        input has static non-batch dims, else a copy with them fixed to ``shape``'s.

        Gradient rules of strided convolutions and pools need static spatial sizes
        (models exported with a free image size have none), and onnxruntime keeps more of
        a static graph in its NCHWc layout.
        """
        if all(isinstance(d, int) and d > 0 for d in self.input.shape[1:]):
            return None, self.proto
        size = tuple(int(d) for d in shape[1:])
        return size, self._cached(("sized", size), lambda: fix_input_dims(self.proto, {self.input.name: [None, *size]}))

    def _gradient_graph(self, key: tuple, base: onnx.ModelProto, output: str, wrt: tuple[str, ...],
                        mode: str, exposed: tuple[str, ...]):
        from onnxviz.autodiff import gradient_model

        return self._cached(key, lambda: gradient_model(base, output, list(wrt), mode, exposed))

    def vjp(
        self,
        x: np.ndarray,
        seed: np.ndarray,
        output: str | None = None,
        wrt: Sequence[str] | None = None,
        mode: str = "plain",
        expose_names: Sequence[str] = (),
        progress: bool | str = False,
    ) -> VJP:
        """One run returning ``output``, the gradients of <seed, output> and extra tensors.

        Args:
            x: preprocessed batch in the model's input layout.
            seed: upstream gradient, an array of ``output``'s shape (a one-hot class, a
                channel mask, any weighting).
            output: tensor to differentiate (default: :attr:`logit_name`).
            wrt: tensors to differentiate with respect to (default: the image input).
            mode: "plain", "guided" or "deconvnet" (ReLU-family rules only).
            expose_names: forward tensors to return as well.
        """
        output = self.check_tensor(output or self.logit_name)
        wrt = tuple(self.check_tensor(w) for w in (wrt or [self.gradient_input]))
        exposed = tuple(self.check_tensor(n) for n in expose_names)
        feeds = self._feeds(x)
        size, base = self._sized(feeds[self.input.name].shape)
        key = ("grad", size, output, wrt, mode, exposed)
        gg = self._gradient_graph(key, base, output, wrt, mode, exposed)
        feeds[gg.seed] = np.asarray(seed, dtype=np.float32)
        session = self._fixed(key, gg.model, len(feeds[self.input.name]), [self.input.name, gg.seed])
        names = [output, *[gg.gradients[w] for w in wrt], *exposed]
        res = self._run(session, feeds, list(dict.fromkeys(names)), progress)
        return VJP(
            output=res[output],
            gradients={w: res[gg.gradients[w]] for w in wrt},
            exposed={n: res[n] for n in exposed},
        )

    def one_hot(self, x: np.ndarray, targets: np.ndarray, output: str | None = None) -> np.ndarray:
        """A seed selecting class ``targets[i]`` of sample i in ``output`` (default: logits)."""
        output = output or self.logit_name
        x = self.check_batch(x)
        shape = self._output_shape(output, x.shape[0], x)
        self._check_scores(output, shape, shape[0])
        seed = np.zeros(shape, dtype=np.float32)
        flat = seed.reshape(shape[0], -1)
        if np.any(targets < 0) or np.any(targets >= flat.shape[1]):
            raise OnnxvizError(
                f"class index out of range: the model has {flat.shape[1]} classes, got {targets.tolist()}"
            )
        flat[np.arange(shape[0]), targets] = 1.0
        return seed

    def _output_shape(self, name: str, n: int, x: np.ndarray) -> tuple[int, ...]:
        shape = self._shapes.get(name)
        if shape is not None and all(isinstance(d, int) for d in shape[1:]):
            return (n, *shape[1:])
        sample = self.activations(np.asarray(x)[:1], [name])[name]
        return (n, *sample.shape[1:])

    def gradient(
        self,
        x: np.ndarray,
        target: Target = None,
        wrt: str | None = None,
        mode: str = "plain",
    ) -> np.ndarray:
        """Gradient of the logit of class ``target`` with respect to the input or a tensor.

        The logit is the pre-softmax score: if the model ends in Softmax/LogSoftmax, the
        tensor before it is differentiated (:attr:`logit_name`).

        Args:
            x: preprocessed batch (N, ...) in the model's input layout.
            target: class index or label, one per sample, or None for each top-1 class.
            wrt: tensor name to differentiate with respect to (default: the input).
            mode: "plain", "guided" (guided backprop) or "deconvnet".

        Returns:
            The gradient, shaped like ``x`` (or like the ``wrt`` tensor).
        """
        targets = self.targets(x, target)
        seed = self.one_hot(x, targets)
        name = wrt or self.gradient_input
        return self.vjp(x, seed, wrt=[name], mode=mode).gradients[name]

    def gradient_blockers(self) -> list[tuple[str, str]]:
        """(op type, node name) of ops without a gradient rule between input and logits."""
        from onnxviz.autodiff import blocking_ops

        try:
            start = self.gradient_input
        except GradientError:  # integer pixels, no Cast: the integer ops reading them block
            start = self.input.name
        return blocking_ops(self.proto, self.logit_name, [start])

    # ----------------------------------------------------------------- images
    def _preprocessing(self, given: Preprocessing | str | None) -> Preprocessing:
        if isinstance(given, Preprocessing):
            return given
        if isinstance(given, str):
            if given not in PRESETS:
                raise OnnxvizError(
                    f"unknown preprocessing preset {given!r}; choose one of {', '.join(PRESETS)}"
                )
            base = PRESETS[given]
        else:
            stored = preprocessing_dict(self.proto)
            if stored is not None:
                return Preprocessing.from_dict(stored)
            # integer pixels: the graph normalises them itself
            base = PRESETS["torchvision" if self.input.dtype in FLOAT_TYPES else "raw"]
        size = (self.input.height, self.input.width)
        changes = {"layout": self.input.layout}
        if all(isinstance(d, int) and d > 0 for d in size):
            changes["size"] = size
            if base.resize is not None:
                changes["resize"] = int(round(max(size) * 256 / 224))
        if self.input.channels == 1:  # a grey model: the luma, normalised by the preset's luma
            base = base.to_grey()
        return base.replace(**changes)

    def preprocess(self, images) -> np.ndarray:
        """Image path(s) or array(s) -> float32 batch in the model's input layout.

        Raises:
            ImageError: the preprocessing does not fit the model's input: another channel
                count (an RGB convention for a grey model), image size or layout.
        """
        pre, channels = self.preprocessing, self.input.channels
        if isinstance(channels, int) and channels != pre.channels:
            raise ImageError(
                f"model input {self.input.name!r} takes {channels} channel(s) but the "
                f"preprocessing makes {pre.channels} (channel_order {pre.channel_order}); "
                + ("use channel_order GRAY with one mean and std (drop --rgb/--bgr)" if channels == 1
                   else "use channel_order RGB or BGR" if channels == 3
                   else "photos become 1 (GRAY) or 3 channels: feed the model arrays of your own")
            )
        size = (self.input.height, self.input.width)
        if all(isinstance(d, int) and d > 0 for d in size) and pre.size != size:
            raise ImageError(
                f"model input {self.input.name!r} takes {size[0]}x{size[1]} images but the "
                f"preprocessing makes {pre.size[0]}x{pre.size[1]}; use size {size[0]}x{size[1]} "
                f"(drop --size)"
            )
        if pre.layout != self.input.layout:
            raise ImageError(
                f"model input {self.input.name!r} is {self.input.layout} but the preprocessing "
                f"makes {pre.layout}; use layout {self.input.layout} (drop --layout: it is read "
                f"from the model)"
            )
        return preprocess(images, pre)

    def display_image(self, image) -> np.ndarray:
        """The uint8 RGB image as the model sees it (resized and cropped; grey for a
        GRAY model), for overlays."""
        return seen_image(image, self.preprocessing)


def _interior(pads: Sequence[int]) -> tuple[slice, ...]:
    """The index of the unpadded interior of a padded (N, C, *spatial) array
    (pads: spatial begins then ends, axes 2 on)."""
    spatial = len(pads) // 2
    return (slice(None), slice(None),
            *(slice(b, -e if e else None) for b, e in zip(pads[:spatial], pads[spatial:])))
