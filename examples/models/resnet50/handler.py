"""TorchServe handler for ResNet-50: an image (JPEG/PNG) in, top-5 classes out.

Two routes:
- plain `/predictions/resnet50`: the body is the image; the answer is a list
  of `{"class", "score"}`;
- `/predictions/resnet50/1.0/v1/chat/completions` (what a TensorZero
  gateway's OpenAI provider calls): the last user message carries exactly
  one image as an `image_url` data URI (`data:image/jpeg;base64,…`); the
  answer is a chat completion whose content is that list as JSON text.

Images are resized to 224x224 and normalised as torchvision's ImageNet
recipe does. Batching is supported (a bad request fails its whole batch).
One class per handler module.
"""
import io
import json

import torch
from PIL import Image
from torchvision import transforms
from ts.torch_handler.base_handler import BaseHandler

import openai_route
import runtimes

PREPARE = transforms.Compose(
    [
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]
)


def image_bytes(route, row) -> bytes:
    if route == openai_route.CHAT:
        _, images = openai_route.chat_parts(openai_route.json_of(row))
        if len(images) != 1:
            raise ValueError(f"resnet50 classifies one image per request, got {len(images)}")
        return images[0]
    if route is None:
        body = openai_route.raw_body(row)
        return body.encode("utf-8") if isinstance(body, str) else bytes(body)
    raise ValueError("resnet50 answers chat completions, not embeddings")


def image_of(route, row) -> torch.Tensor:
    image = Image.open(io.BytesIO(image_bytes(route, row))).convert("RGB")
    return PREPARE(image)


class ResNetHandler(BaseHandler):
    """Serves the eager, TorchScript and ONNX archives alike (runtimes.py)."""

    def initialize(self, context):
        super().initialize(context)
        runtimes.prepare(self)

    def inference(self, data, *args, **kwargs):
        return runtimes.infer(self.model, data)

    def preprocess(self, data):
        self.routes = [openai_route.route_of(self.context, i) for i in range(len(data))]
        return torch.stack([image_of(r, row) for r, row in zip(self.routes, data)]).to(self.device)

    def postprocess(self, data):
        scores, classes = torch.softmax(data, dim=1).topk(5, dim=1)
        answers = []
        for route, cl, sc in zip(self.routes, classes.tolist(), scores.tolist()):
            top5 = [{"class": int(c), "score": round(float(s), 6)} for c, s in zip(cl, sc)]
            if route == openai_route.CHAT:
                answers.append(openai_route.chat_reply("resnet50", json.dumps(top5)))
            else:
                answers.append(top5)
        return answers
