#!/usr/bin/env bash
# Builds the Debian packages (sluice-agent, sluice-mux, sluice-snatd, sluicectl) from an already built CMake
# tree, without compiling anything:
#
#   deploy/debian/build-debs.sh BUILD_DIR [OUT_DIR]     (or: ninja -C BUILD_DIR deb)
#
# Copies this directory as debian/ into BUILD_DIR/deb-stage/sluice/ and runs
# dpkg-buildpackage there; debian/rules installs the tree with `cmake --install` and the dh
# tools add conffiles, maintainer scripts for the units and Depends from dpkg-shlibdeps.
# The .debs end up in OUT_DIR (default BUILD_DIR/deb), replacing any older ones there.
set -euo pipefail

if (($# < 1 || $# > 2)); then
  echo "usage: $0 BUILD_DIR [OUT_DIR]" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(realpath "$1")
out=$(realpath -m "${2:-$build/deb}")

for bin in sluice-agent sluice-mux sluice-snatd sluicectl sluice-libvirt-hook; do
  if [[ ! -x "$build/bin/$bin" ]]; then
    echo "build-debs: $build/bin/$bin is missing: build first (ninja -C $build)" >&2
    exit 1
  fi
done

stage=$build/deb-stage
rm -rf "$stage"
mkdir -p "$stage/sluice/debian" "$out"
cp -a "$here/." "$stage/sluice/debian/"
rm -f "$stage/sluice/debian/build-debs.sh"

# noautodbgsym: no -dbgsym packages (the build tree keeps the unstripped binaries).
(cd "$stage/sluice" &&
  SLUICE_BUILD=$build DEB_BUILD_OPTIONS="noautodbgsym ${DEB_BUILD_OPTIONS:-}" \
    dpkg-buildpackage -b -us -uc --no-pre-clean >"$stage/dpkg-buildpackage.log" 2>&1) || {
  echo "build-debs: dpkg-buildpackage failed; last lines of $stage/dpkg-buildpackage.log:" >&2
  tail -n 40 "$stage/dpkg-buildpackage.log" >&2
  exit 1
}
rm -f "$out"/*.deb
mv "$stage"/*.deb "$out/"
ls -1 "$out"/*.deb
