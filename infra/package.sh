#!/usr/bin/env bash
# Build the transformer Lambda for arm64 (provided.al2023) and zip it:
#   dist/bootstrap-arm64.zip  (one executable named `bootstrap`, mode 755)
#
# Usage: infra/package.sh            (from anywhere; honours CARGO_TARGET_DIR, and
#                                      AUDITLAKE_DIST_DIR for the output folder)
# Needs: rustup, cargo; installs the aarch64 target and Debian's gcc-aarch64-linux-gnu
# cross linker when they are missing (apt-get needs root). A full build of the AWS SDKs,
# arrow and parquet takes several minutes.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target=aarch64-unknown-linux-gnu
linker=aarch64-linux-gnu-gcc

if ! rustup target list --installed | grep -qx "$target"; then
  echo "package.sh: adding Rust target $target" >&2
  rustup target add "$target"
fi

if ! command -v "$linker" >/dev/null 2>&1; then
  echo "package.sh: installing the $linker cross linker" >&2
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq gcc-aarch64-linux-gnu
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$linker"
export CC_aarch64_unknown_linux_gnu="$linker"
# the package carries no symbols (the host release keeps them for profiling)
export CARGO_PROFILE_RELEASE_STRIP=symbols
cargo build --release --target "$target" -p auditlake --bin bootstrap

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
binary="$target_dir/$target/release/bootstrap"
[ -x "$binary" ] || { echo "package.sh: $binary was not built" >&2; exit 1; }

dist="${AUDITLAKE_DIST_DIR:-$repo/dist}"
mkdir -p "$dist"
zip_path="$dist/bootstrap-arm64.zip"
# Python's zipfile instead of the zip binary, which is not always installed. The file is
# stored as `bootstrap` with Unix mode 0755 so Lambda can execute it.
python3 - "$binary" "$zip_path" <<'PY'
import sys, zipfile
binary, out = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))  # reproducible
info.external_attr = (0o100755 << 16)  # regular file, rwxr-xr-x
info.compress_type = zipfile.ZIP_DEFLATED
info.create_system = 3  # Unix, so the mode bits are honoured
with open(binary, "rb") as f, zipfile.ZipFile(out, "w") as z:
    z.writestr(info, f.read(), compresslevel=9)
PY

size=$(wc -c <"$zip_path")
echo "$zip_path: $size bytes ($(( (size + 1048575) / 1048576 )) MiB; Lambda allows 50 MiB zipped)"
