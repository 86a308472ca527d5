"""Build a TorchServe model archive (.mar) from an example model directory.

Each example directory holds model.py (one nn.Module class), handler.py and a
build.py that calls `build()`. Weights are a seeded random initialisation:
no download is needed or possible.
"""
import argparse
import importlib.util
import pathlib
import subprocess
import sys
import tempfile

import torch


def load_model_class(model_py: pathlib.Path):
    spec = importlib.util.spec_from_file_location("example_model", model_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and value.__module__ == module.__name__
    ]
    if len(classes) != 1:
        sys.exit(f"{model_py}: expected exactly one class, found {len(classes)}")
    return classes[0]


def build(name: str, directory: pathlib.Path, version: str = "1.0") -> None:
    parser = argparse.ArgumentParser(description=f"build {name}.mar")
    parser.add_argument("--archiver", default="torch-model-archiver")
    parser.add_argument("--export-path", required=True)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = load_model_class(directory / "model.py")()
    with tempfile.TemporaryDirectory() as scratch:
        weights = pathlib.Path(scratch) / f"{name}.pt"
        torch.save(model.state_dict(), weights)
        subprocess.run(
            [
                args.archiver,
                "--model-name", name,
                "--version", version,
                "--model-file", str(directory / "model.py"),
                "--serialized-file", str(weights),
                "--handler", str(directory / "handler.py"),
                "--extra-files", str(pathlib.Path(__file__).resolve().parent / "openai_route.py"),
                "--export-path", args.export_path,
                "--force",
            ],
            check=True,
        )
