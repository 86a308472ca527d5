"""A small CNN between tiny and ResNet-50: about 2.5 ms of compute per image
on one CPU core (tiny: 0.1 ms, ResNet-50: 60 ms), so its time is spent in
torch rather than in TorchServe's frontend and the handler's Python.

TorchServe's loader instantiates the one class defined in this module.
"""
import torch
from torch import nn

WIDTH = 80


class SmallNet(nn.Module):
    """3x32x32 input (tiny's), 10 classes; about 0.87M parameters."""

    def __init__(self):
        super().__init__()
        w = WIDTH
        self.features = nn.Sequential(
            nn.Conv2d(3, w, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(4 * w, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
