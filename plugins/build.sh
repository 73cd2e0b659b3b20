#!/bin/sh
# Builds the example plugins for wasm32 and puts each, with its manifest, in plugins/dist/<name>/
# (ready to copy into a server's plugins directory). Uses rustup's wasm32 target when it is
# installed, else Debian's Rust with -Zbuild-std (apt: rustc-web cargo-web rust-web-src lld).
set -eu
cd "$(dirname "$0")"
TARGET=wasm32-unknown-unknown
if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    cargo build --release --target "$TARGET"
elif [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] && command -v wasm-ld >/dev/null; then
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld \
        /usr/bin/cargo build -Zbuild-std=std,panic_abort --release --target "$TARGET"
else
    echo "build.sh: no wasm32 toolchain: run 'rustup target add $TARGET', or on Debian" >&2
    echo "  apt-get install rustc-web cargo-web rust-web-src lld" >&2
    exit 1
fi
# CARGO_TARGET_DIR (CI keeps one outside the clone) or this workspace's own target/.
out=${CARGO_TARGET_DIR:-target}/$TARGET/release
for dir in examples/*/; do
    name=$(basename "$dir")
    lib=$(echo "$name" | tr - _)
    mkdir -p "dist/$name"
    cp "$out/$lib.wasm" "dist/$name/plugin.wasm"
    cp "$dir/plugin.toml" "dist/$name/plugin.toml"
    echo "built dist/$name ($(wc -c < "dist/$name/plugin.wasm") bytes)"
done
