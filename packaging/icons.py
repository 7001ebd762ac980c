"""Render Rill's icon (``resources/rill.svg``) for each platform's packages.

    python packaging/icons.py [--svg resources/rill.svg] [--out build/icons]

writes, with Qt's QSvgRenderer (offscreen, no display needed):

- ``hicolor/<N>x<N>/apps/rill.png`` for N in 16 … 512, and ``hicolor/scalable/apps/rill.svg``:
  the freedesktop icon theme layout the Linux tarball installs;
- ``rill.ico``: a Windows icon with 16 … 256 pixel images (PNG-compressed entries);
- ``rill.iconset/``: the PNGs macOS's ``iconutil -c icns`` turns into ``rill.icns``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINUX_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICONSET = {  # iconutil's file names: point size, and @2x for the double-density image
    "icon_16x16.png": 16,
    "icon_16x16@2x.png": 32,
    "icon_32x32.png": 32,
    "icon_32x32@2x.png": 64,
    "icon_128x128.png": 128,
    "icon_128x128@2x.png": 256,
    "icon_256x256.png": 256,
    "icon_256x256@2x.png": 512,
    "icon_512x512.png": 512,
    "icon_512x512@2x.png": 1024,
}


def render_png(svg: Path, size: int) -> bytes:
    """``svg`` drawn at ``size`` x ``size`` pixels, as PNG bytes."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"icons: {svg} is not a valid SVG file")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    # PySide6 takes the format as a str here, whatever its type stubs say
    if not image.save(buffer, "PNG"):  # type: ignore[call-overload]
        raise SystemExit(f"icons: could not encode a {size} px PNG")
    buffer.close()
    return bytes(data.data())


def ico_bytes(images: dict[int, bytes]) -> bytes:
    """A Windows .ico file holding the PNG ``images`` (size -> PNG bytes)."""
    sizes = sorted(images)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    entries = b""
    payload = b""
    for size in sizes:
        png = images[size]
        edge = 0 if size >= 256 else size  # 0 means 256 in an ICONDIRENTRY
        entries += struct.pack("<BBBBHHII", edge, edge, 0, 0, 1, 32, len(png), offset)
        offset += len(png)
        payload += png
    return header + entries + payload


def build(svg: Path, out: Path) -> list[Path]:
    """Write every icon file under ``out``; return what was written."""
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(["icons"])
    assert app is not None
    if out.exists():
        shutil.rmtree(out)
    written: list[Path] = []
    cache: dict[int, bytes] = {}

    def png(size: int) -> bytes:
        if size not in cache:
            cache[size] = render_png(svg, size)
        return cache[size]

    def write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)

    for size in LINUX_SIZES:
        write(out / "hicolor" / f"{size}x{size}" / "apps" / "rill.png", png(size))
    write(out / "hicolor" / "scalable" / "apps" / "rill.svg", svg.read_bytes())
    write(out / "rill.ico", ico_bytes({size: png(size) for size in ICO_SIZES}))
    for name, size in ICONSET.items():
        write(out / "rill.iconset" / name, png(size))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render Rill's icons for packaging.")
    parser.add_argument("--svg", type=Path, default=ROOT / "resources" / "rill.svg")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "icons")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    written = build(args.svg, args.out)
    print(f"icons: wrote {len(written)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
