# Shared by .ci/run and .ci/release (sourced, not run): the installs, the build cache, the
# phase clock, static-binary checks and the aarch64 cross-build settings.

# A failure inside $(...) fails the substitution too.
shopt -s inherit_errexit

# ---- the phase clock: each phase's duration, printed as a table when the script ends -------
ci_started=$SECONDS
ci_phase_name=""
ci_phase_start=0
ci_phases=()
# Starts a phase (and ends the one before it).
phase() {
  ci_phase_end
  ci_phase_name=$*
  ci_phase_start=$SECONDS
  echo "== [$((SECONDS - ci_started)) s] $*"
}
ci_phase_end() {
  if [ -n "$ci_phase_name" ]; then
    ci_phases+=("$((SECONDS - ci_phase_start))|$ci_phase_name")
    ci_phase_name=""
  fi
}
# The table, on success and on failure alike (an EXIT trap).
ci_report() {
  local status=$?
  ci_phase_end
  echo
  echo "== where the time went ($( [ "$status" = 0 ] && echo passed || echo "FAILED, status $status"))"
  printf '%8s  %s\n' seconds phase
  local row
  for row in "${ci_phases[@]}"; do
    printf '%8s  %s\n' "${row%%|*}" "${row#*|}"
  done
  printf '%8s  %s\n' "$((SECONDS - ci_started))" total
  return "$status"
}
trap ci_report EXIT

# ---- installs: one apt-get update and one install for everything missing --------------------
# Usage: ci_need COMMAND PACKAGE...  (queues the packages when COMMAND is not on PATH, with
# their recommended packages: Chromium's fonts, say); ci_need_bare: without them.
ci_missing=()
ci_missing_bare=()
ci_need() {
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 || ci_missing+=("$@")
}
ci_need_bare() {
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 || ci_missing_bare+=("$@")
}
ci_apt_install() {
  [ "${#ci_missing[@]}" -gt 0 ] || [ "${#ci_missing_bare[@]}" -gt 0 ] || return 0
  echo "== installing ${ci_missing[*]} ${ci_missing_bare[*]}"
  apt-get update -qq
  export DEBIAN_FRONTEND=noninteractive
  if [ "${#ci_missing[@]}" -gt 0 ]; then
    apt-get install -y -qq "${ci_missing[@]}" >/dev/null
  fi
  if [ "${#ci_missing_bare[@]}" -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${ci_missing_bare[@]}" >/dev/null
  fi
  ci_missing=()
  ci_missing_bare=()
}
# Adds rustup targets (a download each); prints the ones that could not be added.
ci_rustup_targets() {
  local installed target
  installed=$(rustup target list --installed 2>/dev/null || true)
  for target in "$@"; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target" >/dev/null 2>&1 \
      || echo "warning: rustup could not add $target" >&2
  done
}
ci_has_target() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }

# ---- the build cache --------------------------------------------------------------------
# Build artifacts live outside the clone (as CI services keep target/ between jobs), in
# $DECENTD_CI_CACHE (default /var/cache/decentd-ci), one folder per script (NAME: run,
# release) because each script's record of sources (below) speaks for the builds it makes. A
# cache from another toolchain, or past its size cap, is emptied; a build that fails with a
# kept cache is retried once from an empty one (ci_build), so a stale or damaged cache can cost
# time but never fail CI. Usage: ci_cache_setup NAME
ci_cache_setup() {
  ci_cache=${DECENTD_CI_CACHE:-/var/cache/decentd-ci}/$1
  mkdir -p "$ci_cache"
  export CARGO_TARGET_DIR="$ci_cache/target"
  local toolchain
  toolchain=$(rustc -vV; cargo -V)
  if [ -d "$CARGO_TARGET_DIR" ] && [ "$(cat "$ci_cache/toolchain" 2>/dev/null)" != "$toolchain" ]; then
    echo "== the build cache is from another toolchain: emptying it"
    ci_cache_clear
  fi
  local cap_gib=${DECENTD_CI_CACHE_GIB:-40}
  if [ -d "$CARGO_TARGET_DIR" ] && [ "$(du -s --block-size=1G "$CARGO_TARGET_DIR" | cut -f1)" -gt "$cap_gib" ]; then
    echo "== the build cache is over ${cap_gib} GiB: emptying it"
    ci_cache_clear
  fi
  echo "$toolchain" > "$ci_cache/toolchain"
  ci_cache_restore_mtimes
  echo "== build cache: $CARGO_TARGET_DIR ($(du -sh "$CARGO_TARGET_DIR" 2>/dev/null | cut -f1 || echo empty))"
}
ci_cache_clear() {
  rm -rf "$CARGO_TARGET_DIR" "$ci_cache/sources"
}
# Cargo decides what to rebuild of our own crates by file times, and a fresh clone makes every
# file new: each run would recompile the workspace. So the cache records the content of every
# tracked file it was built from ($ci_cache/sources, written only once every build of a run
# succeeded, so that it speaks for every artifact in the folder, and removed when a run
# starts), and a file whose content is unchanged gets an old time again; a changed or new file
# keeps its new one and is rebuilt. Only in a clone without a
# target/ of its own: a working copy's own build must never see a file's time go back.
ci_cache_restore_mtimes() {
  local record="$ci_cache/sources" current
  current=$(mktemp)
  git ls-files -z | xargs -0 sha1sum > "$current"
  if [ -f "$record" ] && [ ! -e target ]; then
    # Lines present in both lists: same path, same content.
    local unchanged
    unchanged=$(comm -12 <(sort "$record") <(sort "$current") | cut -c43- | wc -l)
    comm -12 <(sort "$record") <(sort "$current") | cut -c43- | tr '\n' '\0' \
      | xargs -0 -r touch -h -d @946684800 --
    echo "== build cache: $unchanged of $(wc -l < "$current") tracked files unchanged since it was built"
  fi
  rm -f "$record"
  mv "$current" "$ci_cache/sources.pending"
}
# After every build of the run succeeded: the cache now holds builds of exactly these sources.
ci_cache_commit() {
  mv "$ci_cache/sources.pending" "$ci_cache/sources"
}
# Runs a build command; when it fails with a kept cache, empties the cache and runs it again.
ci_build() {
  "$@" && return 0
  if [ -d "$CARGO_TARGET_DIR" ]; then
    echo "== the build failed with a kept cache: emptying it and building again from scratch" >&2
    ci_cache_clear
    "$@"
  else
    return 1
  fi
}

# ---- static binaries ----------------------------------------------------------------------
# Fails unless BINARY is statically linked (no program interpreter in its headers).
ci_check_static() {
  local bin=$1 readelf=${2:-readelf} headers
  headers=$("$readelf" -lW "$bin") || { echo "cannot read $bin" >&2; return 1; }
  if grep -q 'Requesting program interpreter' <<<"$headers"; then
    echo "$bin is not statically linked" >&2
    return 1
  fi
  echo "static: ok ($bin)"
}

# The aarch64 cross build: Debian's cross compiler links and builds the C sources (jemalloc,
# ring); jemalloc is built for 64 KiB pages too (some aarch64 kernels use them; it then works
# with 4 KiB ones).
ci_aarch64_env() {
  export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export JEMALLOC_SYS_WITH_LG_PAGE=16
}

# Builds decentd statically for TARGET (x86_64 or aarch64) with cargo's PROFILE; prints the
# binary's path on the last line. musl when rustup has the target, else static glibc.
ci_static_build() {
  local arch=$1 profile=$2 target dir
  if ci_has_target "$arch-unknown-linux-musl"; then
    target=$arch-unknown-linux-musl
    ci_build cargo build --profile "$profile" --target "$target" >&2 || return 1
  else
    echo "warning: the $arch musl target is unavailable; building a static glibc binary instead" >&2
    target=$arch-unknown-linux-gnu
    [ "$arch" = x86_64 ] || ci_rustup_targets "$target"
    RUSTFLAGS="-C target-feature=+crt-static" ci_build cargo build --profile "$profile" --target "$target" >&2 || return 1
  fi
  dir=$profile
  [ "$profile" = dev ] && dir=debug
  echo "$CARGO_TARGET_DIR/$target/$dir/decentd"
}
