#!/usr/bin/env bash
# Builds Rill for macOS from the repository root:
#   dist/Rill.app                          the app (Contents/MacOS/rill and Contents/MacOS/q)
#   dist/Rill-VERSION-macos-ARCH.dmg       a disk image with Rill.app and a link to
#                                          /Applications
#
# Usage: packaging/macos/build.sh
# Environment:
#   PYTHON             a Python 3.11+ with Rill installed with the `package` extra
#                      (default .venv/bin/python, else python3)
#   CODESIGN_IDENTITY  a "Developer ID Application: …" identity to sign with; without it
#                      the app is signed ad hoc (runs on this Mac; Gatekeeper asks elsewhere)
# Needs the Xcode command line tools (iconutil, codesign, hdiutil).
set -euo pipefail

cd "$(dirname "$0")/../.."

if [ "$(uname -s)" != "Darwin" ]; then
  echo "build.sh: this script builds the macOS app and runs only on macOS" >&2
  exit 1
fi
for tool in iconutil codesign hdiutil; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "build.sh: $tool is missing; install the Xcode command line tools: xcode-select --install" >&2
    exit 1
  }
done
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c 'import PyInstaller, desktop_app' 2>/dev/null; then
  echo "build.sh: $PYTHON lacks PyInstaller or Rill; run: $PYTHON -m pip install -e '.[package]'" >&2
  exit 1
fi

version=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
arch=$(uname -m)
started=$(date +%s)

echo "== icons"
QT_QPA_PLATFORM=offscreen "$PYTHON" packaging/icons.py --out build/icons
iconutil --convert icns --output build/icons/rill.icns build/icons/rill.iconset

echo "== PyInstaller (Rill $version, $arch)"
rm -rf dist/Rill.app dist/rill
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
  --workpath build/pyinstaller --distpath dist packaging/rill.spec
app="dist/Rill.app"
if [ ! -x "$app/Contents/MacOS/rill" ] || [ ! -x "$app/Contents/MacOS/q" ]; then
  echo "build.sh: PyInstaller did not produce $app with rill and q" >&2
  exit 1
fi
/usr/libexec/PlistBuddy -c 'Print :CFBundleIdentifier' -c 'Print :CFBundleShortVersionString' \
  "$app/Contents/Info.plist"

echo "== signing"
identity="${CODESIGN_IDENTITY:--}"
if [ "$identity" = "-" ]; then
  codesign --force --deep --sign - "$app"
else
  codesign --force --deep --options runtime --timestamp \
    --entitlements packaging/macos/entitlements.plist --sign "$identity" "$app"
fi
codesign --verify --deep --strict "$app"

echo "== self-test"
QT_QPA_PLATFORM=offscreen "$app/Contents/MacOS/rill" --self-test
echo "unpacked size $(du -sh "$app" | cut -f1)"

echo "== disk image"
dmg="dist/Rill-$version-macos-$arch.dmg"
stage="build/dmg"
rm -rf "$stage" "$dmg"
mkdir -p "$stage"
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
hdiutil create -volname "Rill $version" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"
if [ "$identity" != "-" ]; then
  codesign --force --timestamp --sign "$identity" "$dmg"
fi
echo "wrote $dmg ($(du -h "$dmg" | cut -f1)) in $(($(date +%s) - started)) s"
