"""TorchServe handler that answers without a model: the gateway's own cost,
measured apart from any model's.

- plain `/predictions/echo`: the body comes back as text;
- `…/1.0/v1/chat/completions`: a chat completion whose content is the last
  user message's text;
- `…/1.0/v1/embeddings`: one two-number vector per input (its length, 1.0).

No weights, no torch work: what a request costs here is TorchServe's
frontend, the worker's Python loop and, through the gateway, the gateway.
echo-onnx.mar ships a one-node ONNX graph (identity): its worker passes each
answer's numbers through onnxruntime, the smallest real ONNX Runtime model.
One class per handler module.
"""
import os

from ts.torch_handler.base_handler import BaseHandler

import openai_route


def onnx_session(path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def through(session, vector):
    """`vector` through the identity graph, when there is one."""
    if session is None:
        return vector
    import numpy

    (output,) = session.run(None, {"input": numpy.array([vector], dtype=numpy.float32)})
    return [float(x) for x in output[0]]


def answer(session, route, row):
    if route is None:
        return openai_route.text_of(row)
    request = openai_route.json_of(row)
    if route == openai_route.CHAT:
        texts, _ = openai_route.chat_parts(request)
        content = " ".join(texts)
        through(session, [float(len(content)), 1.0])
        return openai_route.chat_reply("echo", content)
    inputs = openai_route.embedding_inputs(request)
    vectors = [through(session, [float(len(text)), 1.0]) for text in inputs]
    return openai_route.embeddings_reply("echo", vectors)


class EchoHandler(BaseHandler):
    def initialize(self, context):
        self.context = context
        serialized = context.manifest["model"].get("serializedFile", "")
        model_dir = context.system_properties.get("model_dir")
        self.session = onnx_session(os.path.join(model_dir, serialized)) if serialized.endswith(".onnx") else None
        self.initialized = True

    def handle(self, data, context):
        self.context = context
        return [answer(self.session, openai_route.route_of(context, i), row) for i, row in enumerate(data)]
