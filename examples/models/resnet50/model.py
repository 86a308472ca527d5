"""ResNet-50 as torchvision builds it (Bottleneck blocks 3-4-6-3), random weights.

No pretrained weights can be downloaded, so the archive carries a state dict
made from a seeded random initialisation; the compute is the real ResNet-50.
"""
from torchvision.models.resnet import Bottleneck, ResNet


class ResNet50(ResNet):
    def __init__(self):
        super().__init__(Bottleneck, [3, 4, 6, 3], num_classes=1000)
