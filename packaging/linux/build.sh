#!/usr/bin/env bash
# Builds Rill for Linux from the repository root:
#   dist/rill/                               the PyInstaller one-folder build (rill, q)
#   dist/rill-VERSION-linux-ARCH.tar.gz      that build with install.sh, uninstall.sh,
#                                            the .desktop entry and the icons
#   dist/Rill-VERSION-ARCH.AppImage          only where appimagetool is on PATH
#
# Usage: packaging/linux/build.sh [--no-tarball]
# Environment: PYTHON (default .venv/bin/python, else python3) must have Rill installed
# with the `package` extra:  pip install -e '.[package]'
set -euo pipefail

cd "$(dirname "$0")/../.."

tarball=1
for arg in "$@"; do
  case "$arg" in
    --no-tarball) tarball=0 ;;
    -h | --help)
      sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build.sh: unknown option: $arg" >&2
      exit 2
      ;;
  esac
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

echo "== PyInstaller (Rill $version, $arch)"
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
  --workpath build/pyinstaller --distpath dist packaging/rill.spec
if [ ! -x dist/rill/rill ] || [ ! -x dist/rill/q ]; then
  echo "build.sh: PyInstaller did not produce dist/rill/rill and dist/rill/q" >&2
  exit 1
fi
built=$(date +%s)
echo "built dist/rill in $((built - started)) s; unpacked size $(du -sh dist/rill | cut -f1)"

if command -v desktop-file-validate >/dev/null 2>&1; then
  desktop-file-validate --no-hints resources/rill.desktop
fi

if [ "$tarball" = 1 ]; then
  name="rill-$version-linux-$arch"
  stage="build/linux/$name"
  echo "== tarball $name.tar.gz"
  rm -rf "build/linux"
  mkdir -p "$stage/share/applications" "$stage/share/icons"
  cp -a dist/rill "$stage/rill"
  cp -a build/icons/hicolor "$stage/share/icons/hicolor"
  cp resources/rill.desktop "$stage/share/applications/rill.desktop"
  install -m 755 packaging/linux/install.sh packaging/linux/uninstall.sh "$stage/"
  printf '%s\n' "$version" >"$stage/VERSION"
  cat >"$stage/README.txt" <<EOF
Rill $version for Linux ($arch)

Install for yourself (no root needed):   ./install.sh
Install for every user (as root):        ./install.sh --prefix /usr/local
Remove:                                  ~/.local/share/rill/uninstall.sh

Or run it from here without installing:  ./rill/rill    (and ./rill/q for the terminal)
Check that it works on this machine:     ./rill/rill --self-test
EOF
  tar -C build/linux -czf "dist/$name.tar.gz" "$name"
  echo "wrote dist/$name.tar.gz ($(du -h "dist/$name.tar.gz" | cut -f1))"
fi

if command -v appimagetool >/dev/null 2>&1; then
  appdir="build/Rill.AppDir"
  echo "== AppImage"
  rm -rf "$appdir"
  mkdir -p "$appdir/usr/lib" "$appdir/usr/share/applications" "$appdir/usr/share/icons"
  cp -a dist/rill "$appdir/usr/lib/rill"
  cp -a build/icons/hicolor "$appdir/usr/share/icons/hicolor"
  cp resources/rill.desktop "$appdir/usr/share/applications/rill.desktop"
  cp resources/rill.desktop "$appdir/rill.desktop"
  cp build/icons/hicolor/256x256/apps/rill.png "$appdir/rill.png"
  ln -s rill.png "$appdir/.DirIcon"
  cat >"$appdir/AppRun" <<'EOF'
#!/bin/sh
# Starts Rill from the AppImage; started through a link named q, the terminal command.
here=$(dirname "$(readlink -f "$0")")
case "$(basename "${ARGV0:-$0}")" in
  q | q.*) exec "$here/usr/lib/rill/q" "$@" ;;
esac
exec "$here/usr/lib/rill/rill" "$@"
EOF
  chmod 755 "$appdir/AppRun"
  ARCH="$arch" appimagetool --no-appstream "$appdir" "dist/Rill-$version-$arch.AppImage"
  echo "wrote dist/Rill-$version-$arch.AppImage"
else
  echo "AppImage skipped: appimagetool is not on PATH (see packaging/README.md)"
fi

echo "done in $(($(date +%s) - started)) s"
