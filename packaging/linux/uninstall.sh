#!/bin/sh
# Removes what install.sh installed: the program, the command links, the menu entry and
# the icons. Conversations, settings, the cache and API keys are left where they are.
set -eu

usage() {
  cat <<'EOF'
Usage: uninstall.sh [--prefix DIR]

Removes Rill installed by install.sh under DIR (~/.local by default): DIR/share/rill/,
the links DIR/bin/rill and DIR/bin/q, the menu entry and the icons. Run from an installed
Rill folder (DIR/share/rill/uninstall.sh) it removes that installation.
Your conversations, settings and cache are kept.
EOF
}

fail() {
  echo "uninstall.sh: $*" >&2
  exit 1
}

marker=".rill-install"
prefix=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix)
      [ $# -ge 2 ] || { usage >&2; exit 2; }
      prefix=$2
      shift 2
      ;;
    --prefix=*)
      prefix=${1#--prefix=}
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "uninstall.sh: unknown option: $1" >&2
      usage >&2
      exit 2
      ;;
  esac
done

if [ -n "$prefix" ]; then
  case "$prefix" in
    /*) ;;
    *) prefix="$(pwd -P)/$prefix" ;;
  esac
  appdir="${prefix%/}/share/rill"
else
  here=$(cd "$(dirname "$0")" && pwd -P)
  if [ -f "$here/$marker" ]; then
    appdir=$here
  else
    appdir="${HOME:?HOME is not set}/.local/share/rill"
  fi
fi

[ -f "$appdir/$marker" ] || fail "no Rill installed by install.sh in $appdir"
share=$(dirname "$appdir")

while IFS= read -r path; do
  [ -n "$path" ] || continue
  if [ -L "$path" ]; then
    case "$(readlink "$path")" in
      "$appdir"/*) rm -f "$path" ;;
    esac
  elif [ -f "$path" ]; then
    rm -f "$path"
  fi
done <"$appdir/$marker"

rm -rf "$appdir"

if command -v update-desktop-database >/dev/null 2>&1 && [ -d "$share/applications" ]; then
  update-desktop-database -q "$share/applications" 2>/dev/null || true
fi
if [ -d "$share/icons/hicolor" ]; then
  touch "$share/icons/hicolor"
  if command -v gtk-update-icon-cache >/dev/null 2>&1; then
    gtk-update-icon-cache -q -f -t "$share/icons/hicolor" 2>/dev/null || true
  fi
fi

echo "Rill is removed from $appdir."
echo "Your conversations, settings and cache are kept (in ~/.config/Rill, ~/.local/share/Rill"
echo "and ~/.cache/Rill unless RILL_HOME says otherwise), and API keys stay in the keychain."
