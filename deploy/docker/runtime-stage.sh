#!/bin/sh
# The runtime stage of the CAP images, as one script: the non-root user, its home (the
# CAP_HOME or CAP_CONSOLE_HOME volume) and the files the image holds. The Dockerfiles run
# it with ROOT=/ (the build stage's files bind-mounted); tests/integration/
# test_docker_images.py runs it into a temporary root and starts what it installed.
#
#   runtime-stage.sh agent ROOT BIN_DIR          cap-agent and capctl, home /var/lib/cap
#   runtime-stage.sh console ROOT BIN_DIR UI_DIR cap-console and capctl, the web UI,
#                                                home /var/lib/cap-console
#
# BIN_DIR holds the built binaries; UI_DIR the built console UI (web/console/dist). With a
# ROOT other than /, ROOT/etc must hold passwd, group, shadow and gshadow (useradd
# --prefix writes there). Needs root (useradd, chown). Exits non-zero at the first failure.
set -eu

usage() {
  echo "usage: $0 agent ROOT BIN_DIR | $0 console ROOT BIN_DIR UI_DIR" >&2
  exit 2
}

[ $# -ge 3 ] || usage
role=$1
root=${2%/}
bin=$3
case $role in
  agent)
    [ $# -eq 3 ] || usage
    home=/var/lib/cap
    binaries="cap-agent capctl"
    ;;
  console)
    [ $# -eq 4 ] || usage
    home=/var/lib/cap-console
    binaries="cap-console capctl"
    ui=$4
    [ -f "$ui/index.html" ] || { echo "$0: $ui/index.html is missing: build the console UI" >&2; exit 1; }
    ;;
  *) usage ;;
esac

# The user and group cap (10001), whose home is the state volume; no login shell.
prefix=""
[ -z "$root" ] || prefix="--prefix $root"
# shellcheck disable=SC2086  # $prefix is zero or two words
groupadd $prefix --system --gid 10001 cap
# shellcheck disable=SC2086
useradd $prefix --system --uid 10001 --gid 10001 --home-dir "$home" --shell /usr/sbin/nologin cap

# The binaries, and the UI where cap-console looks for it (<bin>/../share/cap/console).
install -d -m 0755 "$root/usr/local/bin"
for b in $binaries; do
  install -m 0755 "$bin/$b" "$root/usr/local/bin/$b"
done
if [ "$role" = console ]; then
  install -d -m 0755 "$root/usr/local/share/cap/console"
  cp -R "$ui/." "$root/usr/local/share/cap/console/"
  chmod -R u=rwX,go=rX "$root/usr/local/share/cap/console"
fi

# The state folder: the user's own, closed to others (numeric ids: ROOT's user database
# is not this machine's).
install -d -o 10001 -g 10001 -m 0750 "$root$home"
