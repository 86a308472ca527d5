"""TorchServe handler for TinyNet.

A request body is any bytes: they are read as pixel values of a 3x32x32 image
(cycled or cut to 3072 bytes), so a load generator can send small binary
files. Batching is supported: one tensor per request, stacked. torch's
intra-op threads follow OMP_NUM_THREADS (unset: one per core), which
servetune's CPU space tunes.
A handler module may define exactly one class: helpers are functions.
"""
import torch
from ts.torch_handler.base_handler import BaseHandler

import runtimes

PIXELS = 3 * 32 * 32


def body_of(request) -> bytes:
    body = request.get("data") or request.get("body") or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    if not isinstance(body, bytes):
        body = str(body).encode("utf-8")
    return body or b"\x00"


def pixels_of(body: bytes) -> torch.Tensor:
    repeated = (body * (PIXELS // len(body) + 1))[:PIXELS]
    values = torch.frombuffer(bytearray(repeated), dtype=torch.uint8)
    return values.to(torch.float32).div_(255.0).view(3, 32, 32)


class TinyHandler(BaseHandler):
    """Serves the eager, TorchScript and ONNX archives alike (runtimes.py)."""

    def initialize(self, context):
        super().initialize(context)
        runtimes.prepare(self)

    def inference(self, data, *args, **kwargs):
        return runtimes.infer(self.model, data)

    def preprocess(self, data):
        return torch.stack([pixels_of(body_of(row)) for row in data])

    def postprocess(self, data):
        probabilities = torch.softmax(data, dim=1)
        scores, classes = probabilities.max(dim=1)
        return [
            {"class": int(c), "score": round(float(s), 6)}
            for c, s in zip(classes.tolist(), scores.tolist())
        ]
