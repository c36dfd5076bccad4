#!/bin/bash
# build_series.sh — build a series of real, consecutive Debian 12 (bookworm) root
# filesystems for `python -m benchmarks report` (each neighbouring pair is one update).
# Run as root on a Debian machine that reaches deb.debian.org; about a minute per state.
#
# snapshot.debian.org (pinned historical dates) is not reachable from the build machine,
# so the states are the suites that ARE published today, stacked in the order a host
# receives them:
#   s0  bookworm + bookworm-updates, with openssl/libssl3 and tzdata pinned to the older
#       versions bookworm-updates still carries (the corpus OLD side, without its pip layer)
#   s1  bookworm + bookworm-updates at their newest versions (the current point release)
#   s2  s1 + bookworm-security (the security fixes published since the point release)
#   s3  s2 + bookworm-proposed-updates (what the next point release will bring)
# Each state keeps the .deb files it was built from in $SERIES/debs/<state>/ (the
# "ship packages" strategy sums the ones an update changes).
# Env overrides: SERIES (default /var/tmp/imgdiff-series), MIRROR, SECMIRROR.
set -euo pipefail
SERIES=${SERIES:-/var/tmp/imgdiff-series}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECMIRROR=${SECMIRROR:-http://deb.debian.org/debian-security}
PKGS="python3,openssl,libssl3,ca-certificates,nginx-light,tzdata"
OLD_PINS="libssl3=3.0.17-1~deb12u2,openssl=3.0.17-1~deb12u2,tzdata=2025b-0+deb12u1"
export DEBIAN_FRONTEND=noninteractive
command -v mmdebstrap >/dev/null || apt-get install -y -qq mmdebstrap
mkdir -p "$SERIES/debs"

build() {  # $1=state $2=epoch $3=include $4...=apt source lines
  local name=$1 epoch=$2 include=$3; shift 3
  rm -rf "${SERIES:?}/$name" "$SERIES/$name.tar" "$SERIES/debs/$name"
  mkdir -p "$SERIES/debs/$name"
  # keep the downloaded .debs (outside the image) before mmdebstrap empties the cache
  SOURCE_DATE_EPOCH=$epoch mmdebstrap --mode=root --variant=minbase --format=directory \
      --skip=download/empty --include="$include" \
      --customize-hook="mv \"\$1\"/var/cache/apt/archives/*.deb '$SERIES/debs/$name/'" \
      bookworm "$SERIES/$name" "$@"
  tar --numeric-owner --xattrs --xattrs-include='*' --acls --sort=name \
      -C "$SERIES/$name" -cf "$SERIES/$name.tar" .
  dpkg-query --admindir="$SERIES/$name/var/lib/dpkg" \
      -W -f='${Package}\t${Version}\t${Architecture}\n' | sort > "$SERIES/$name.packages.tsv"
}

MAIN="deb $MIRROR bookworm main"
UPD="deb $MIRROR bookworm-updates main"
SEC="deb $SECMIRROR bookworm-security main"
PU="deb $MIRROR bookworm-proposed-updates main"
states=${*:-s0 s1 s2 s3}
for s in $states; do
  case $s in
    s0) build s0 1735689600 "$PKGS,$OLD_PINS" "$MAIN" "$UPD" ;;
    s1) build s1 1740787200 "$PKGS" "$MAIN" "$UPD" ;;
    s2) build s2 1746057600 "$PKGS" "$MAIN" "$UPD" "$SEC" ;;
    s3) build s3 1751328000 "$PKGS" "$MAIN" "$UPD" "$SEC" "$PU" ;;
    *) echo "unknown state $s" >&2; exit 2 ;;
  esac
done
date -u +%FT%TZ > "$SERIES/built-at.txt"
echo "build_series: done ($states)"
