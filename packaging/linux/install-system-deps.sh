#!/bin/sh
# Installs the Debian/Ubuntu packages Rill needs from the system (system-packages.txt beside
# this script, the same list as the README's quick start), and any package names given as
# arguments. Only what is missing is installed; it uses sudo when not run as root.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
packages="$(sed 's/#.*//' "$here/system-packages.txt") $*"

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
  echo "install-system-deps.sh: this system has no apt-get; install the equivalents of:" >&2
  echo "  $(echo $packages)" >&2
  echo "(\`rill\` names any library it is missing, with the command for Fedora and openSUSE)" >&2
  exit 1
fi

missing=""
for pkg in $packages; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -z "$missing" ]; then
  echo "install-system-deps.sh: every package is installed"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-system-deps.sh: installing$missing"
$sudo apt-get update -qq
# shellcheck disable=SC2086 # one word per package
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
