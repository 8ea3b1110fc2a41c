#!/usr/bin/env bash
# Build PgBouncer UPSTREAM_VERSION into PREFIX from Debian trixie's source package (the upstream
# tarball plus Debian's security patches). Bookworm's own package is 1.18, which cannot pool
# prepared statements; the pods run 1.26. Usage: build_pgbouncer.sh UPSTREAM_VERSION PREFIX
set -euo pipefail
upstream=$1 prefix=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private apt state: the machine's own sources (bookworm) are left untouched.
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb-src http://deb.debian.org/debian trixie main" > "$work/sources.list"
apt=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Sandbox::User=root)
apt-get "${apt[@]}" update -qq
(cd "$work" && apt-get "${apt[@]}" source --download-only -qq pgbouncer/trixie)
tarball="$work/pgbouncer_${upstream}.orig.tar.gz"
if [[ ! -f $tarball ]]; then
  echo "build_pgbouncer: trixie no longer ships PgBouncer $upstream ($(ls "$work"/*.dsc))." \
       "Set PGBOUNCER_VERSION in the Makefile to the version it ships." >&2
  exit 1
fi
tar xzf "$tarball" -C "$work"
src="$work/pgbouncer-$upstream"
tar xJf "$work"/pgbouncer_"$upstream"-*.debian.tar.xz -C "$src"
while read -r patch; do
  [[ -z $patch || $patch == \#* ]] || patch -d "$src" -p1 -s < "$src/debian/patches/$patch"
done < "$src/debian/patches/series"
(cd "$src" && ./configure --prefix="$prefix" --without-cares --without-systemd --without-pam \
   > configure.log && make -j2 > make.log && make install > /dev/null)
"$prefix/bin/pgbouncer" --version | head -1
