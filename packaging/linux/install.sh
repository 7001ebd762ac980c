#!/bin/sh
# Installs Rill from the unpacked Linux tarball: the program, the `rill` and `q` commands,
# the application menu entry and the icon. Run it again to upgrade; uninstall.sh removes it.
set -eu

usage() {
  cat <<'EOF'
Usage: ./install.sh [--prefix DIR]

Installs Rill from this folder into:
  DIR/share/rill/                         the program (rill, q and their files)
  DIR/bin/rill, DIR/bin/q                 links to the two commands
  DIR/share/applications/rill.desktop     the entry in the desktop's application menu
  DIR/share/icons/hicolor/*/apps/rill.*   the icon

DIR is ~/.local by default (for you only, no root needed). Use --prefix /usr/local, as
root, to install for every user. Running it again replaces an earlier installation.
To remove Rill: DIR/share/rill/uninstall.sh (same --prefix).
EOF
}

fail() {
  echo "install.sh: $*" >&2
  exit 1
}

prefix="${HOME:?HOME is not set}/.local"
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
      echo "install.sh: unknown option: $1" >&2
      usage >&2
      exit 2
      ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd -P)
case "$prefix" in
  /*) ;;
  *) prefix="$(pwd -P)/$prefix" ;;
esac
prefix=${prefix%/}
case "$prefix" in
  *'"'* | *'`'* | *'$'* | *\\* | *'%'*)
    fail "the folder $prefix has a character (\" \` \$ \\ %) a menu entry cannot point to; choose another --prefix"
    ;;
esac

appdir="$prefix/share/rill"
bindir="$prefix/bin"
appsdir="$prefix/share/applications"
iconsdir="$prefix/share/icons/hicolor"
marker=".rill-install"

if [ ! -x "$here/rill/rill" ] || [ ! -x "$here/rill/q" ]; then
  fail "$here/rill/rill is missing: run install.sh from the unpacked Rill folder"
fi
[ -f "$here/share/applications/rill.desktop" ] || fail "$here/share/applications/rill.desktop is missing"
if [ -e "$appdir" ] && [ ! -f "$appdir/$marker" ]; then
  fail "$appdir exists and was not made by this installer; move it away first"
fi

version=$(cat "$here/VERSION" 2>/dev/null || echo "")
mkdir -p "$prefix/share" "$bindir" "$appsdir" "$iconsdir"

# the program: copied next to the old one, then swapped in
staging="$appdir.new.$$"
rm -rf "$staging"
trap 'rm -rf "$staging"' EXIT
cp -R "$here/rill" "$staging"
cp "$here/uninstall.sh" "$staging/uninstall.sh"
chmod 755 "$staging/uninstall.sh"
[ -n "$version" ] && printf '%s\n' "$version" >"$staging/VERSION"
manifest="$staging/$marker"
: >"$manifest"

# the commands
for cmd in rill q; do
  link="$bindir/$cmd"
  if [ -L "$link" ]; then
    case "$(readlink "$link")" in
      "$appdir/$cmd") ;;
      *)
        echo "install.sh: $link points to $(readlink "$link"), not Rill; it is left alone" >&2
        continue
        ;;
    esac
  elif [ -e "$link" ]; then
    echo "install.sh: $link exists and is not a link; it is left alone (run $appdir/$cmd)" >&2
    continue
  fi
  printf '%s\n' "$link" >>"$manifest"
done

# the menu entry, pointing at the installed program (quoted where the path has a space)
escaped=$(printf '%s' "$appdir" | sed 's/[|&]/\\&/g')
case "$appdir" in
  *' '*) exec_line="\"$escaped/rill\"" ;;
  *) exec_line="$escaped/rill" ;;
esac
sed -e "s|^Exec=.*|Exec=$exec_line|" \
  -e "s|^TryExec=.*|TryExec=$escaped/rill|" \
  "$here/share/applications/rill.desktop" >"$staging/rill.desktop"
printf '%s\n' "$appsdir/rill.desktop" >>"$manifest"

# the icons
icons=$(cd "$here/share/icons/hicolor" && find . -type f -name 'rill.*' | sed 's|^\./||' | sort)
for icon in $icons; do
  printf '%s\n' "$iconsdir/$icon" >>"$manifest"
done

if [ -e "$appdir" ]; then
  rm -rf "$appdir"
fi
mv "$staging" "$appdir"
trap - EXIT

while IFS= read -r path; do
  case "$path" in
    "$bindir"/*) ln -sfn "$appdir/${path##*/}" "$path" ;;
    "$appsdir/rill.desktop")
      mv "$appdir/rill.desktop" "$path"
      chmod 644 "$path"
      ;;
    "$iconsdir"/*)
      mkdir -p "$(dirname "$path")"
      cp "$here/share/icons/hicolor/${path#"$iconsdir"/}" "$path"
      chmod 644 "$path"
      ;;
  esac
done <"$appdir/$marker"

if command -v update-desktop-database >/dev/null 2>&1; then
  update-desktop-database -q "$appsdir" 2>/dev/null || true
fi
touch "$iconsdir"
if command -v gtk-update-icon-cache >/dev/null 2>&1; then
  gtk-update-icon-cache -q -f -t "$iconsdir" 2>/dev/null || true
fi

echo "Rill ${version:+$version }is installed in $appdir."
echo "Start it from the application menu, or run rill; q is the terminal command."
case ":${PATH:-}:" in
  *":$bindir:"*) ;;
  *) echo "Note: $bindir is not in your PATH; add it to run rill and q by name." ;;
esac
data_dirs="${XDG_DATA_HOME:-$HOME/.local/share}:${XDG_DATA_DIRS:-/usr/local/share:/usr/share}"
case ":$data_dirs:" in
  *":$prefix/share:"* | *":$prefix/share/:"*) ;;
  *) echo "Note: $prefix/share is not one of the folders desktops read menu entries from ($data_dirs)." ;;
esac
echo "To remove it: $appdir/uninstall.sh"
