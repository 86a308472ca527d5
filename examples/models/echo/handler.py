"""TorchServe handler that answers without a model: the gateway's own cost,
measured apart from any model's.

- plain `/predictions/echo`: the body comes back as text;
- `…/1.0/v1/chat/completions`: a chat completion whose content is the last
  user message's text;
- `…/1.0/v1/embeddings`: one two-number vector per input (its length, 1.0).

No weights, no torch work: what a request costs here is TorchServe's
frontend, the worker's Python loop and, through the gateway, the gateway.
One class per handler module.
"""
from ts.torch_handler.base_handler import BaseHandler

import openai_route


def answer(route, row):
    if route is None:
        return openai_route.text_of(row)
    request = openai_route.json_of(row)
    if route == openai_route.CHAT:
        texts, _ = openai_route.chat_parts(request)
        return openai_route.chat_reply("echo", " ".join(texts))
    inputs = openai_route.embedding_inputs(request)
    return openai_route.embeddings_reply("echo", [[float(len(text)), 1.0] for text in inputs])


class EchoHandler(BaseHandler):
    def initialize(self, context):
        self.context = context
        self.initialized = True

    def handle(self, data, context):
        self.context = context
        return [answer(openai_route.route_of(context, i), row) for i, row in enumerate(data)]
