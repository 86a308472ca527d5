"""Build bert.mar (see ../common/text_archive.py)."""
import pathlib
import sys

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent / "common"))

from text_archive import build  # noqa: E402

build("bert", here, "word-piece")
