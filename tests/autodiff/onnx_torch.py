"""A small float64 ONNX interpreter in torch: the independent reference for whole-model
gradient checks (the zoo CNNs and the shipped EfficientNet-Lite0 use only these ops).

Test-only: torch is never a dependency of onnxviz.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.tensor(array.astype(np.float64) if array.dtype.kind == "f" else array)


def _pool(op: str, x: torch.Tensor, a: dict) -> torch.Tensor:
    k = a["kernel_shape"]
    s = a.get("strides", [1, 1])
    pads = a.get("pads", [0, 0, 0, 0])
    ceil = bool(a.get("ceil_mode", 0))
    torch_pads = [pads[1], pads[3], pads[0], pads[2]]
    if op == "MaxPool":
        out = F.max_pool2d(F.pad(x, torch_pads, value=-float("inf")), k, s, 0, ceil_mode=ceil)
        # onnxruntime (like torch) drops a last window that would start in the end padding
        keep = [min(o, (h + pb - 1) // ss + 1) if ceil else o
                for o, h, pb, ss in zip(out.shape[2:], x.shape[2:], pads[:2], s)]
        return out[..., : keep[0], : keep[1]]
    if pads[:2] == pads[2:]:
        return F.avg_pool2d(x, k, s, pads[:2], ceil_mode=ceil,
                            count_include_pad=bool(a.get("count_include_pad", 0)))
    if ceil or a.get("count_include_pad", 0):
        raise NotImplementedError("asymmetric AveragePool with ceil_mode/count_include_pad")
    total = F.avg_pool2d(F.pad(x, torch_pads), k, s, 0)
    count = F.avg_pool2d(F.pad(torch.ones_like(x), torch_pads), k, s, 0)
    return total / count


def run(model: onnx.ModelProto, x: torch.Tensor, output: str) -> torch.Tensor:
    """Evaluate ``output`` of ``model`` (opset >= 13 forms) for input ``x`` in float64."""
    env = {i.name: _tensor(numpy_helper.to_array(i)) for i in model.graph.initializer}
    initializers = set(env)
    env[next(i.name for i in model.graph.input if i.name not in initializers)] = x
    for n in model.graph.node:
        a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
        i = [env[name] if name else None for name in n.input]
        op = n.op_type
        if op == "Constant":
            out = _tensor(numpy_helper.to_array(a["value"]))
        elif op == "Conv":
            pads = a.get("pads", [0, 0, 0, 0])
            xp = F.pad(i[0], [pads[1], pads[3], pads[0], pads[2]])
            out = F.conv2d(xp, i[1], i[2] if len(i) > 2 else None, stride=a.get("strides", 1),
                           dilation=a.get("dilations", 1), groups=a.get("group", 1))
        elif op == "Relu":
            out = F.relu(i[0])
        elif op == "Clip":
            out = torch.clamp(i[0], float(i[1]), float(i[2]))
        elif op == "Pad":
            p = [int(v) for v in i[1].tolist()]
            out = F.pad(i[0], [p[3], p[7], p[2], p[6]])
            assert p[:2] == [0, 0] and p[4:6] == [0, 0] and a.get("mode", b"constant") in (b"constant", "constant")
        elif op == "LRN":
            out = F.local_response_norm(i[0], a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))
        elif op in ("MaxPool", "AveragePool"):
            out = _pool(op, i[0], a)
        elif op == "GlobalAveragePool":
            out = i[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Reshape":
            shape = [int(v) for v in i[1].tolist()]
            out = i[0].reshape([i[0].shape[k] if v == 0 else v for k, v in enumerate(shape)])
        elif op == "Flatten":
            axis = a.get("axis", 1)
            out = i[0].reshape(int(np.prod(i[0].shape[:axis])), -1)
        elif op == "Shape":
            out = torch.tensor(list(i[0].shape))
        elif op == "Gemm":
            A = i[0].T if a.get("transA", 0) else i[0]
            B = i[1].T if a.get("transB", 0) else i[1]
            out = a.get("alpha", 1.0) * A @ B + (a.get("beta", 1.0) * i[2] if len(i) > 2 and i[2] is not None else 0)
        elif op in ("Dropout", "Identity"):
            out = i[0]
        elif op == "Softmax":
            out = F.softmax(i[0], dim=a.get("axis", -1))
        elif op == "BatchNormalization":
            out = F.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get("epsilon", 1e-5))
        elif op == "Unsqueeze":
            out = i[0]
            for axis in sorted(int(v) for v in i[1].tolist()):
                out = out.unsqueeze(axis)
        elif op == "Mul":
            out = i[0] * i[1]
        elif op in ("Add", "Sum"):
            out = sum(i)
        elif op == "Concat":
            out = torch.cat(i, dim=a["axis"])
        elif op == "Transpose":
            out = i[0].permute(*a["perm"])
        else:
            raise NotImplementedError(op)
        env[n.output[0]] = out
        if n.output[0] == output:
            return out
    return env[output]
