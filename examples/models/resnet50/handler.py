"""TorchServe handler for ResNet-50: an image (JPEG/PNG) in, top-5 classes out.

Images are resized to 224x224 and normalised as torchvision's ImageNet
recipe does. Batching is supported. One class per handler module.
"""
import io

import torch
from PIL import Image
from torchvision import transforms
from ts.torch_handler.base_handler import BaseHandler

PREPARE = transforms.Compose(
    [
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]
)


def image_of(request) -> torch.Tensor:
    body = request.get("data") or request.get("body")
    if isinstance(body, str):
        body = body.encode("utf-8")
    image = Image.open(io.BytesIO(bytes(body))).convert("RGB")
    return PREPARE(image)


class ResNetHandler(BaseHandler):
    def preprocess(self, data):
        return torch.stack([image_of(row) for row in data]).to(self.device)

    def postprocess(self, data):
        scores, classes = torch.softmax(data, dim=1).topk(5, dim=1)
        return [
            [{"class": int(c), "score": round(float(s), 6)} for c, s in zip(cl, sc)]
            for cl, sc in zip(classes.tolist(), scores.tolist())
        ]
