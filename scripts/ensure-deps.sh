#!/bin/sh
# Install the Debian packages luaconcurrent needs, only when one is missing,
# so a second run costs nothing. Usage: ensure-deps.sh [extra packages...]
set -e
pkgs="lua5.4 liblua5.4-dev lua-cjson lua-busted make gcc pkg-config procps $*"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "luaconcurrent: installing Debian packages:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
