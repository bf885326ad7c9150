#!/usr/bin/env bash
# Development files for a machine without network (the lent GPU machine),
# carried as Debian packages. That machine (Ubuntu 24.04) has the runtime
# libraries of PCRE2 and liblzma but not their headers, pkg-config files and
# unversioned .so links, so the CUDA build cannot configure there (seen
# 2026-12-04); apt cannot fetch them without network.
#
#   launch/offline_packages.sh download [DIR] [PACKAGE...]
#       here, with network: apt-get download the -dev packages into DIR
#       (default .packages, git-ignored; default packages libpcre2-dev liblzma-dev)
#   launch/offline_packages.sh install [DIR] [PACKAGE...]
#       there: from each DIR/PACKAGE_*.deb (every .deb without PACKAGEs), copy its
#       headers and pkg-config files into /usr where no such file is, and link
#       each unversioned lib*.so to the runtime library the machine already has
#       (by its soname, lib*.so.N), never to the package's own version. Runtime
#       libraries are not installed: a package whose library the machine lacks
#       is reported, and the configure then names what is missing.
#
# ROOT=/some/dir installs under that directory instead of / (the tests do).
# Headers of one upstream version suit the runtime of another with the same
# soname: the soname is the library's promise of a compatible interface.
set -euo pipefail
cd "$(dirname "$0")/.."

verb=${1:-}
dir=${2:-.packages}
shift $(( $# >= 2 ? 2 : $# ))
packages=("$@")
ROOT=${ROOT:-}

case "$verb" in
  download)
    [ ${#packages[@]} -gt 0 ] || packages=(libpcre2-dev liblzma-dev)
    mkdir -p "$dir"
    # apt-get download writes into the current directory.
    (cd "$dir" && apt-get download "${packages[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
    for p in "${packages[@]}"; do
      ls "$dir/${p}"_*.deb > /dev/null 2>&1 || { echo "offline_packages: apt-get download $p failed" >&2; exit 1; }
    done
    echo "offline_packages: $(ls "$dir"/*.deb | wc -l) package(s) in $dir; carry it to the machine and run: launch/offline_packages.sh install $dir"
    ;;
  install)
    debs=()
    if [ ${#packages[@]} -eq 0 ]; then
      for f in "$dir"/*.deb; do [ -e "$f" ] && debs+=("$f"); done
    else
      for p in "${packages[@]}"; do
        f=$(ls "$dir/${p}"_*.deb 2>/dev/null | head -1) || true
        if [ -z "$f" ]; then echo "offline_packages: no $dir/${p}_*.deb" >&2; exit 1; fi
        debs+=("$f")
      done
    fi
    [ ${#debs[@]} -gt 0 ] || { echo "offline_packages: no .deb in $dir" >&2; exit 1; }
    command -v dpkg-deb > /dev/null || { echo "offline_packages: dpkg-deb is needed to unpack .deb files" >&2; exit 1; }
    status=0
    for deb in "${debs[@]}"; do
      stage=$(mktemp -d)
      dpkg-deb -x "$deb" "$stage"
      name=$(basename "$deb" | cut -d_ -f1)
      copied=0 linked=0
      # Headers and pkg-config files: never over a file the machine has.
      while IFS= read -r -d '' f; do
        rel=${f#"$stage"}
        if [ ! -e "$ROOT$rel" ]; then
          mkdir -p "$(dirname "$ROOT$rel")"
          cp -p "$f" "$ROOT$rel"
          copied=$((copied + 1))
        fi
      done < <(find "$stage/usr/include" "$stage"/usr/lib/*/pkgconfig -type f -print0 2>/dev/null)
      # Unversioned links, to the machine's own soname.
      missing_runtime=()
      while IFS= read -r -d '' link; do
        rel=${link#"$stage"}
        libdir=$(dirname "$rel")
        base=$(basename "$rel")                   # libpcre2-8.so
        target=$(basename "$(readlink "$link")")  # libpcre2-8.so.0.11.2
        soname=$(echo "$target" | sed -E 's/^(.*\.so\.[0-9]+).*$/\1/')  # libpcre2-8.so.0
        [ -e "$ROOT$rel" ] && continue
        found=""
        for d in "$libdir" "/lib/$(basename "$libdir")"; do
          if [ -e "$ROOT$d/$soname" ]; then found="$ROOT$d/$soname"; break; fi
        done
        if [ -n "$found" ]; then
          mkdir -p "$ROOT$libdir"
          ln -s "$found" "$ROOT$rel"
          linked=$((linked + 1))
        else
          missing_runtime+=("$soname")
        fi
      done < <(find "$stage/usr/lib" -type l -name 'lib*.so' -print0 2>/dev/null)
      echo "offline_packages: $name: $copied header/pkg-config file(s) copied, $linked .so link(s) made" \
           "${missing_runtime[*]:+(no runtime library here for: ${missing_runtime[*]})}"
      rm -rf "$stage"
    done
    exit $status
    ;;
  *)
    echo "usage: launch/offline_packages.sh download|install [DIR] [PACKAGE...]" >&2
    exit 2
    ;;
esac
