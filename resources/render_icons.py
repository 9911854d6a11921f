"""Render the app icon (icons/hearth.svg) into the bitmaps desktops and installers want.

    .venv/bin/python resources/render_icons.py            # after editing icons/hearth.svg
    .venv/bin/python resources/render_icons.py --icns build/hearth.icns   # at macOS bundle time

Writes icons/hicolor/<N>x<N>/apps/hearth.png (the freedesktop icon-theme layout, so the Linux
installer can copy the tree into ~/.local/share/icons/hicolor as it is) and icons/hearth.ico
(Windows: one file holding every size the shell asks for). The bitmaps are committed, so
neither the app nor the bundle build needs an SVG renderer at run time; this script is the
only thing that makes them, and tests/test_resources.py checks their sizes.

Each size is rendered from the vector at that size rather than scaled down from a large
bitmap: a 16 px icon scaled from 512 px is a blur, rendered directly its edges stay sharp.

The .icns for macOS is not committed (nothing on Linux or Windows uses it): the macOS bundle
step runs `render_icons.py --icns PATH` and passes PATH to PyInstaller's BUNDLE(icon=...).
(`iconutil -c icns` on a .iconset folder of the hicolor PNGs, on a Mac, gives the same.)
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

# Render without a display (CI, build machines): Qt needs a platform plugin even for QImage
# work once a QGuiApplication exists.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

HERE = Path(__file__).resolve().parent
APP_SVG = HERE / "icons" / "hearth.svg"
HICOLOR = HERE / "icons" / "hicolor"
ICO = HERE / "icons" / "hearth.ico"

# The sizes freedesktop launchers and docks ask for (hicolor's common set).
HICOLOR_SIZES = (16, 32, 48, 64, 128, 256, 512)
# What Windows asks an .ico for: 16/20/24/32/40/48 for lists and taskbars at 100–250 % scale,
# 64/128/256 for Explorer's large views. 256 is the largest an .ico entry can describe.
ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 128, 256)
# .icns entry types that hold PNG data -> pixel size. "@2x" types share a size with a 1x
# one (ic11 is 16 pt at 2x = 32 px); macOS picks by type, so both are written.
ICNS_TYPES = {
    b"ic11": 32, b"ic12": 64, b"ic07": 128, b"ic13": 256, b"ic08": 256,
    b"ic14": 512, b"ic09": 512, b"ic10": 1024,
}  # fmt: skip


def hicolor_png(size: int) -> Path:
    """Where the app icon of one size lives in the committed hicolor tree."""
    return HICOLOR / f"{size}x{size}" / "apps" / "hearth.png"


def render(svg: Path, size: int) -> QImage:
    """Render an SVG into a transparent square image of `size` pixels."""
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    # Straight (non-premultiplied) alpha is what PNG stores; converting here keeps the
    # edge pixels' colours exact instead of letting the encoder round them.
    return image.convertToFormat(QImage.Format.Format_ARGB32)


def png_bytes(image: QImage) -> bytes:
    """Encode an image as PNG in memory."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise OSError("PNG encoding failed")
    buffer.close()
    return bytes(data.data())


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """Pack square PNG images (size -> PNG data) into one .ico file.

    Qt's ICO writer stores a single image per file, so this writes the container itself:
    a 6-byte header, a 16-byte directory entry per image, then the images. Every entry is
    PNG-compressed, which Windows reads since Vista; a width or height of 256 is written as 0,
    as the format requires.
    """
    count = len(pngs)
    header = struct.pack("<HHH", 0, 1, count)  # reserved, type 1 = icon, image count
    offset = len(header) + 16 * count
    entries, blobs = [], []
    for size, data in sorted(pngs.items()):
        if not 1 <= size <= 256:
            raise ValueError(f"an .ico entry is 1–256 px, not {size}")
        # width, height, palette size, reserved, colour planes, bits per pixel, bytes, offset
        entries.append(
            struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(data), offset)
        )
        blobs.append(data)
        offset += len(data)
    return header + b"".join(entries) + b"".join(blobs)


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """Pack PNG images (size -> PNG data) into a macOS .icns file.

    Qt's ICNS writer stores one image and its own reader then warns about the file, so this
    writes the container itself: "icns" and the file length, then per entry its type, its
    length (8 + data) and the PNG. All integers are big-endian.
    """
    body = b"".join(
        kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size]
        for kind, size in ICNS_TYPES.items()
    )
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def write_icns(path: Path, svg: Path = APP_SVG) -> None:
    """Write the macOS .icns for the app bundle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = set(ICNS_TYPES.values())
    path.write_bytes(icns_bytes({size: png_bytes(render(svg, size)) for size in sizes}))


def render_all(svg: Path = APP_SVG) -> list[Path]:
    """Write every hicolor PNG and the .ico from the SVG; return the files written."""
    written = []
    for size in HICOLOR_SIZES:
        target = hicolor_png(size)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png_bytes(render(svg, size)))
        written.append(target)
    ICO.write_bytes(ico_bytes({size: png_bytes(render(svg, size)) for size in ICO_SIZES}))
    written.append(ICO)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--icns", type=Path, metavar="PATH", help="only write a macOS .icns here")
    args = parser.parse_args(argv)
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    if args.icns:
        write_icns(args.icns)
        print(args.icns)
        return 0
    for path in render_all():
        print(path.relative_to(HERE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
