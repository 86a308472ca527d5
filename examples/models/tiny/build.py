"""Build tiny.mar and its TorchScript and ONNX exports (see ../common/build_archive.py)."""
import pathlib
import sys

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent / "common"))

from build_archive import build  # noqa: E402

build("tiny", here, example_shape=(1, 3, 32, 32))
