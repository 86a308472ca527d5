"""Build small.mar, served by tiny's handler (the same 3x32x32 input; see ../common/build_archive.py)."""
import pathlib
import sys

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent / "common"))

from build_archive import build  # noqa: E402

build("small", here, handler=here.parent / "tiny" / "handler.py")
