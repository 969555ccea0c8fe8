"""Models out of fastmlp and into it: ONNX for serving, PyTorch modules, safetensors files.

* :func:`to_onnx` writes an ONNX graph (opset 13 or later) that computes ``predict``:
  ``Gemm`` per dense layer, the hidden activations, and the loss's output activation
  (softmax for cross-entropy and the distribution losses, sigmoid for binary
  cross-entropy, exp for Poisson). Batch normalization and classic dropout's inference scaling
  are folded into the dense layers (inference form), in float64 before casting.
  Needs the ``onnx`` package (``pip install 'fastmlp[onnx]'``, which also brings
  onnxruntime to run it).
* :func:`to_torch` / :func:`from_torch` convert to and from ``torch.nn.Sequential``
  (``Linear``, ``BatchNorm1d``, ``Dropout``, ``ReLU``, ``LeakyReLU``, ``Sigmoid``,
  ``Tanh``, ``Identity``); the module outputs the logits, as PyTorch's losses expect.
  Exact in float64: the same arithmetic on the same values.
* :func:`save_safetensors` / :func:`load_safetensors` store the parameters and batch-norm
  statistics in the safetensors format (readable by ``safetensors``, PyTorch, JAX, ...),
  with the model's configuration in the metadata, so :func:`load_safetensors` rebuilds
  the model. Names: ``dense.{l}.weight`` ``(n_l, n_{l+1})``, ``dense.{l}.bias``,
  ``batch_norm.{l}.{weight,bias,running_mean,running_var}``.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from fastmlp import serialization
from fastmlp.model.base import BaseMLP
from fastmlp.model.losses import get_loss

_ONNX_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh",
                     "leaky_relu": "LeakyRelu", "identity": None}
_OUTPUT_ACTIVATIONS = {"softmax": "Softmax", "sigmoid": "Sigmoid", "exp": "Exp"}


def _check_model(model: object) -> BaseMLP:
    if not isinstance(model, BaseMLP):
        raise TypeError(f"expected a fastmlp model, got {type(model).__name__}")
    if model.heads:
        raise ValueError("exporting a model with multitask heads is not supported (ONNX, "
                         "torch, safetensors); save it with model.save(path)")
    return model


def inference_layers(model: BaseMLP) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The model in inference form: ``[(W, b, activation), ...]`` in float64, one per dense
    layer (the last one's activation ``"identity"``: its output is the logits), with batch
    normalization (running statistics), classic dropout's ``(1 - p)`` scaling and the
    model's input transform (``input_scale``, ``input_shift``) folded into the weights and
    biases. ``act(x @ W + b)`` layer after layer equals
    ``predict_logits`` up to rounding."""
    model = _check_model(model)
    weights, biases = model.get_params()
    Ws = [w.astype(np.float64) for w in weights]
    bs = [b.astype(np.float64) for b in biases]
    classic = model.config()["dropout_mode"] == "classic"
    eps = model.config()["bn_eps"]
    drops = model.dropout
    states = model.batch_norm_state()
    acts = list(model.activation) + ["identity"]
    out = []
    # pending input transform x -> x * scale + shift, applied to layer l's input: first the
    # model's own (input_scale, input_shift)
    scale, shift = np.ones(Ws[0].shape[0]), np.zeros(Ws[0].shape[0])
    if model._transform is not None:
        scale, shift = (v.astype(np.float64) for v in model._transform)
    for l, (W, b) in enumerate(zip(Ws, bs)):
        if classic and drops[l] > 0:
            scale, shift = scale * (1 - drops[l]), shift * (1 - drops[l])
        W, b = scale[:, None] * W, b + shift @ W
        st = states[l] if l < len(states) else None
        bn = model.batch_norm[l] if l < len(states) else None
        n_out = W.shape[1]
        scale, shift = np.ones(n_out), np.zeros(n_out)
        if st is not None:
            s = st["gamma"].astype(np.float64) / np.sqrt(st["running_var"].astype(np.float64)
                                                         + eps)
            c = st["beta"].astype(np.float64) - st["running_mean"].astype(np.float64) * s
            if bn == "before":
                W, b = W * s, b * s + c
            else:  # after the activation: the next layer's input transform
                scale, shift = s, c
        out.append((W, b, acts[l]))
    return out


# -- ONNX --------------------------------------------------------------------------------------
def to_onnx(model: BaseMLP, path: str | os.PathLike, *, opset: int = 17,
            logits: bool = False) -> None:
    """Write `model` as an ONNX file computing ``predict`` (``predict_logits`` with
    `logits`): input ``"X"`` of shape ``(batch, n_inputs)``, output ``"Y"``, in the model's
    dtype. The file is written atomically."""
    model = _check_model(model)
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise ImportError("to_onnx needs the onnx package: pip install 'fastmlp[onnx]'") \
            from exc
    if not 13 <= int(opset) <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset must be 13 ... {onnx.defs.onnx_opset_version()}, got {opset}")
    dtype = model.dtype
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    nodes, inits = [], []
    x = "X"
    for l, (W, b, act) in enumerate(inference_layers(model)):
        inits += [numpy_helper.from_array(W.astype(dtype), f"W{l}"),
                  numpy_helper.from_array(b.astype(dtype), f"b{l}")]
        nodes.append(helper.make_node("Gemm", [x, f"W{l}", f"b{l}"], [f"z{l}"]))
        x = f"z{l}"
        op = _ONNX_ACTIVATIONS[act]
        if op is not None:
            extra = {"alpha": model.leaky_slope} if op == "LeakyRelu" else {}
            nodes.append(helper.make_node(op, [x], [f"a{l}"], **extra))
            x = f"a{l}"
    final = None if logits else _OUTPUT_ACTIVATIONS.get(model.output_activation)
    if final is None:
        nodes.append(helper.make_node("Identity", [x], ["Y"]))
    else:
        nodes.append(helper.make_node(final, [x], ["Y"], **({"axis": 1} if final == "Softmax"
                                                              else {})))
    sizes = model.layer_sizes
    graph = helper.make_graph(
        nodes, "fastmlp", [helper.make_tensor_value_info("X", elem, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("Y", elem, ["batch", sizes[-1]])], inits)
    opsets = [helper.make_opsetid("", int(opset))]
    # the oldest IR version that the opset allows, so that older runtimes load the file
    # (onnx writes its newest by default: onnxruntime 1.19 refused IR 12)
    proto = helper.make_model(graph, producer_name="fastmlp", opset_imports=opsets,
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(proto)
    serialization.write_atomic(path, proto.SerializeToString())


# -- PyTorch -----------------------------------------------------------------------------------
def to_torch(model: BaseMLP):
    """A ``torch.nn.Sequential`` (in eval mode, the model's dtype) that computes
    ``predict_logits``: ``Linear`` layers, ``BatchNorm1d`` with the running statistics,
    ``Dropout`` for inverted dropout, the hidden activations. Classic dropout, which
    PyTorch does not have, is folded into the next ``Linear`` as its inference scaling, and
    the model's input transform (``input_scale``, ``input_shift``) into the first one."""
    model = _check_model(model)
    import torch

    cfg = model.config()
    tdtype = torch.float32 if model.dtype == np.float32 else torch.float64
    weights, biases = model.get_params()
    states = model.batch_norm_state()
    classic = cfg["dropout_mode"] == "classic"
    modules = []
    acts = {"relu": lambda: torch.nn.ReLU(), "sigmoid": lambda: torch.nn.Sigmoid(),
            "tanh": lambda: torch.nn.Tanh(), "identity": lambda: torch.nn.Identity(),
            "leaky_relu": lambda: torch.nn.LeakyReLU(model.leaky_slope)}
    if model._transform is not None:  # the input transform, folded into the first Linear
        scale, shift = (v.astype(np.float64) for v in model._transform)
        W0 = weights[0].astype(np.float64)
        keep = 1 - model.dropout[0] if classic else 1.0  # classic dropout scales the shift
        biases[0] = (biases[0] + keep * (shift @ W0)).astype(model.dtype)  # too (the loop: W)
        weights[0] = (scale[:, None] * W0).astype(model.dtype)
    for l, (W, b) in enumerate(zip(weights, biases)):
        p = model.dropout[l]
        if p > 0 and classic:
            W = W * W.dtype.type(1 - p)
        elif p > 0:
            modules.append(torch.nn.Dropout(p))
        lin = torch.nn.Linear(W.shape[0], W.shape[1], dtype=tdtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(b))
        modules.append(lin)
        if l == len(weights) - 1:
            break
        bn = None
        if states[l] is not None:
            bn = torch.nn.BatchNorm1d(W.shape[1], eps=cfg["bn_eps"], momentum=cfg["bn_momentum"],
                                      dtype=tdtype)
            with torch.no_grad():
                for name, key in (("weight", "gamma"), ("bias", "beta"),
                                  ("running_mean", "running_mean"),
                                  ("running_var", "running_var")):
                    getattr(bn, name).copy_(torch.from_numpy(states[l][key]))
        if bn is not None and model.batch_norm[l] == "before":
            modules.append(bn)
        modules.append(acts[model.activation[l]]())
        if bn is not None and model.batch_norm[l] == "after":
            modules.append(bn)
    return torch.nn.Sequential(*modules).eval()


def from_torch(module, *, loss: str = "cross_entropy", dtype: str | None = None,
               **options: object):
    """A :class:`fastmlp.MLP` with the architecture and parameters of ``module``, a
    ``torch.nn.Sequential`` of ``Linear``, ``BatchNorm1d``, ``Dropout``, ``ReLU``,
    ``LeakyReLU``, ``Sigmoid``, ``Tanh`` and ``Identity`` layers that outputs logits (a
    final ``Softmax``/``Sigmoid`` matching `loss` is accepted and dropped). `dtype`
    defaults to the module's; other keyword options go to ``MLP`` (e.g. ``threads``)."""
    import torch

    from fastmlp.model import MLP

    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"expected a torch.nn.Sequential, got {type(module).__name__}")
    layers = list(module)
    final = {"softmax": torch.nn.Softmax, "sigmoid": torch.nn.Sigmoid}.get(
        get_loss(loss).output_activation)
    if layers and final is not None and isinstance(layers[-1], final):
        layers = layers[:-1]
    names = {torch.nn.ReLU: "relu", torch.nn.Sigmoid: "sigmoid", torch.nn.Tanh: "tanh",
             torch.nn.Identity: "identity", torch.nn.LeakyReLU: "leaky_relu"}
    linears, acts, bns, drops, slope = [], [], [], [], 0.01
    pending_drop, pending_bn, seen_act = 0.0, None, False
    for i, m in enumerate(layers):
        if isinstance(m, torch.nn.Linear):
            if linears and not seen_act:
                acts.append("identity")
            if linears:
                bns.append(pending_bn)
            linears.append(m)
            drops.append(pending_drop)
            pending_drop, pending_bn, seen_act = 0.0, None, False
        elif isinstance(m, torch.nn.Dropout):
            pending_drop = float(m.p)
        elif isinstance(m, torch.nn.BatchNorm1d):
            if not linears or pending_bn is not None or pending_drop or not m.affine or \
                    not m.track_running_stats:
                raise ValueError(f"module {i}: BatchNorm1d must follow a Linear layer (or its "
                                 "activation), once, before any Dropout, with affine=True "
                                 "and running statistics")
            pending_bn = ("after" if seen_act else "before", m)
        elif type(m) in names:
            if not linears or seen_act:
                raise ValueError(f"module {i}: an activation must follow a Linear layer, once")
            acts.append(names[type(m)])
            if isinstance(m, torch.nn.LeakyReLU):
                slope = float(m.negative_slope)
            seen_act = True
        else:
            raise ValueError(f"module {i}: {type(m).__name__} is not supported")
    if not linears:
        raise ValueError("the module has no Linear layer")
    if seen_act or pending_bn is not None or pending_drop:
        raise ValueError("the module must end with a Linear layer (it outputs logits)")
    sizes = [linears[0].in_features] + [m.out_features for m in linears]
    for a, b in zip(linears, linears[1:]):
        if a.out_features != b.in_features:
            raise ValueError(f"Linear layers do not chain: {a.out_features} -> {b.in_features}")
    tdtype = linears[0].weight.dtype
    dtype = dtype or {torch.float32: "float32", torch.float64: "float64"}.get(tdtype)
    if dtype is None:
        raise ValueError(f"module dtype {tdtype} is not float32/float64; pass dtype=")
    eps = {m.eps for _, m in filter(None, bns)}
    momentum = {m.momentum for _, m in filter(None, bns)}
    if len(eps) > 1 or len(momentum) > 1 or None in momentum:
        raise ValueError("BatchNorm1d layers must share eps and a numeric momentum")
    model = MLP(sizes, activation=acts or "relu", loss=loss, dtype=dtype, leaky_slope=slope,
                input_dropout=drops[0], dropout=drops[1:] or 0.0,
                batch_norm=[None if b is None else b[0] for b in bns] or False,
                bn_eps=eps.pop() if eps else 1e-5,
                bn_momentum=momentum.pop() if momentum else 0.1, **options)
    to_np = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    model.set_params([to_np(m.weight).T for m in linears], [to_np(m.bias) for m in linears])
    model.set_batch_norm_state([None if b is None else {
        "gamma": to_np(b[1].weight), "beta": to_np(b[1].bias),
        "running_mean": to_np(b[1].running_mean), "running_var": to_np(b[1].running_var)}
        for b in bns])
    return model


# -- safetensors -------------------------------------------------------------------------------
_ST_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_ST_FORMAT = "fastmlp-safetensors-1"
_ST_MAX_HEADER = 1 << 24


def _named_tensors(model: BaseMLP) -> dict[str, np.ndarray]:
    weights, biases = model.get_params()
    tensors = {}
    for l, (W, b) in enumerate(zip(weights, biases)):
        tensors[f"dense.{l}.weight"], tensors[f"dense.{l}.bias"] = W, b
    for l, st in enumerate(model.batch_norm_state()):
        if st is not None:
            for name, key in (("weight", "gamma"), ("bias", "beta"),
                              ("running_mean", "running_mean"), ("running_var", "running_var")):
                tensors[f"batch_norm.{l}.{name}"] = st[key]
    return tensors


def save_safetensors(model: BaseMLP, path: str | os.PathLike) -> None:
    """Write the model's parameters and batch-norm statistics as a safetensors file, with
    ``model.config()`` (JSON) in its metadata under ``"fastmlp_config"``; atomically."""
    model = _check_model(model)
    tensors = _named_tensors(model)
    header: dict[str, object] = {"__metadata__": {
        "format": _ST_FORMAT, "fastmlp_config": json.dumps(model.config())}}
    offset, blobs = 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=model.dtype.newbyteorder("<"))
        blob = a.tobytes()
        header[name] = {"dtype": "F32" if a.dtype.itemsize == 4 else "F64",
                        "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
    serialization.write_atomic(path, struct.pack("<Q", len(text)) + text + b"".join(blobs))


def _read_safetensors(data: bytes, source: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, tensors) of a safetensors file, every size checked against the bytes."""
    if len(data) < 8:
        raise ValueError(f"{source}: not a safetensors file (shorter than its 8-byte header size)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(_ST_MAX_HEADER, len(data) - 8):
        raise ValueError(f"{source}: header size {size} exceeds the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{source}: the header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{source}: the header is not a JSON object")
    meta = header.pop("__metadata__", {})
    body = data[8 + size :]
    tensors = {}
    for name, spec in sorted(header.items(), key=lambda kv: str(kv[1])):
        try:
            dtype = _ST_DTYPES[spec["dtype"]]
            shape = tuple(int(d) for d in spec["shape"])
            lo, hi = (int(o) for o in spec["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: tensor {name!r}: bad entry {spec!r}") from exc
        count = 1
        for d in shape:
            if d < 0:
                raise ValueError(f"{source}: tensor {name!r}: negative dimension")
            count *= d
        if not 0 <= lo <= hi <= len(body) or hi - lo != count * dtype.itemsize:
            raise ValueError(f"{source}: tensor {name!r}: offsets {lo}..{hi} do not fit "
                             f"its shape {shape} or the file")
        tensors[name] = np.frombuffer(body, dtype=dtype, count=count, offset=lo).reshape(shape)
    if not isinstance(meta, dict):
        raise ValueError(f"{source}: __metadata__ is not an object")
    return meta, tensors


def load_safetensors(path: str | os.PathLike, *, threads: int | None = None):
    """A :class:`fastmlp.MLP` from a file written by :func:`save_safetensors`."""
    from fastmlp.model import MLP

    source = str(path)
    meta, tensors = _read_safetensors(serialization.read_file(path), source)
    if meta.get("format") != _ST_FORMAT or "fastmlp_config" not in meta:
        raise ValueError(f"{source}: no fastmlp configuration in the metadata (written by "
                         "another tool?); build the model and copy the tensors in by hand")
    try:
        config = json.loads(meta["fastmlp_config"])
        model = MLP(threads=threads, **config)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{source}: invalid model configuration: {exc}") from exc
    expected = {k: v.shape for k, v in _named_tensors(model).items()}
    got = {k: v.shape for k, v in tensors.items()}
    if expected != got:
        raise ValueError(f"{source}: tensors {sorted(got)} do not match the configuration's "
                         f"{sorted(expected)} (or their shapes differ)")
    L = model.n_layers
    model.set_params([tensors[f"dense.{l}.weight"] for l in range(L)],
                     [tensors[f"dense.{l}.bias"] for l in range(L)])
    model.set_batch_norm_state([
        None if f"batch_norm.{l}.weight" not in tensors else {
            key: tensors[f"batch_norm.{l}.{name}"] for name, key in
            (("weight", "gamma"), ("bias", "beta"), ("running_mean", "running_mean"),
             ("running_var", "running_var"))} for l in range(L - 1)])
    return model


__all__ = ["to_onnx", "to_torch", "from_torch", "save_safetensors", "load_safetensors",
           "inference_layers"]
