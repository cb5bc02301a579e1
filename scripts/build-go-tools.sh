#!/usr/bin/env bash
# Build pinned Go tools (toxiproxy, the porcupine checker, helm, containerd, ...) from
# the Go module proxy into the Lockyard cache.
#
# Usage: scripts/build-go-tools.sh <tool>...
#
# Each tool is a folder tools/<tool>/ holding
#   go.mod + go.sum  a wrapper main module that requires the tool's module and lists the
#                    commands in a `tool (...)` block; go.sum pins every dependency, so
#                    the build is reproducible (-mod=readonly). A tool of our own keeps
#                    its Go sources in the same module.
#   build.env        plain KEY=value lines (no quotes, no shell: make, bash and Python
#                    read it):
#                      VERSION      the pinned release, part of the output path
#                      PACKAGES     space-separated import paths to build; NAME=path
#                                   renames a binary (default: the path's last element,
#                                   skipping a /vN major-version suffix, as `go build` does)
#                      TAGS         optional build tags (comma-separated, as -tags takes)
#                      LDFLAGS      optional linker flags
#                      CGO_ENABLED  optional, default 0 (static binaries)
# The binaries land in ${LOCKYARD_CACHE:-~/.cache/lockyard}/tools/<tool>-<VERSION>/bin/.
# A stamp there records a digest of build.env, go.mod, go.sum, the tool's own .go files and
# the Go version: when it matches and every binary exists the script prints nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${LOCKYARD_CACHE:-$HOME/.cache/lockyard}"

# Hermetic Go settings: never switch toolchains behind our back, never let a go.work or
# the caller's GOFLAGS change the module graph; one build cache shared with the control
# plane's script.
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=readonly
export GOCACHE="$CACHE/go-build"

START=$SECONDS
TOOL=""
log() { printf '[go-tools %4ds] %s%s\n' "$((SECONDS - START))" "${TOOL:+$TOOL: }" "$*"; }
die() { log "error: $*" >&2; exit 1; }

[[ $# -gt 0 ]] || die "usage: $0 <tool>...  (tools: $(cd "$ROOT/tools" && ls -d -- */ | tr -d / | tr '\n' ' '))"

TICKER=""
STAGE=""
cleanup() {
  [[ -n "$TICKER" ]] && kill "$TICKER" 2>/dev/null
  [[ -n "$STAGE" ]] && rm -rf "$STAGE"
  return 0
}
trap cleanup EXIT

# A cold build of a large tool is quiet for many minutes: say that it is still alive.
start_ticker() {
  local what="$1" since=$SECONDS
  (while sleep 60; do log "  still building $what ($(((SECONDS - since) / 60))m)"; done) &
  TICKER=$!
}
stop_ticker() { kill "$TICKER" 2>/dev/null || true; wait "$TICKER" 2>/dev/null || true; TICKER=""; }

# Fills the associative array ENV from <file>: KEY=value per line, the value is everything
# after the first '=' (LDFLAGS holds spaces and '='), '#' lines and blank lines skipped.
declare -A ENV
read_build_env() {
  local file="$1" line key
  ENV=()
  [[ -f "$file" ]] || die "missing $file"
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    [[ "$line" == *=* ]] || die "$file: not a KEY=value line: $line"
    key="${line%%=*}"
    case "$key" in
      VERSION | PACKAGES | TAGS | LDFLAGS | CGO_ENABLED) ENV[$key]="${line#*=}" ;;
      *) die "$file: unknown key $key (VERSION, PACKAGES, TAGS, LDFLAGS, CGO_ENABLED)" ;;
    esac
  done <"$file"
  [[ -n "${ENV[VERSION]:-}" ]] || die "$file: VERSION is missing"
  [[ -n "${ENV[PACKAGES]:-}" ]] || die "$file: PACKAGES is missing"
}

# The binary `go build` would name after <import path>: its last element, or the one
# before a /vN major-version suffix.
default_name() {
  local path="$1" last="${1##*/}"
  if [[ "$last" =~ ^v[0-9]+$ && "$path" == */* ]]; then
    path="${path%/*}"
    last="${path##*/}"
  fi
  printf '%s\n' "$last"
}

# Digest of everything that decides the binaries' bytes.
source_digest() {
  local dir="$1"
  {
    go version
    # Sorted, so the digest does not depend on directory order.
    find "$dir" -type f \( -name build.env -o -name go.mod -o -name go.sum -o \
      \( -name '*.go' ! -name '*_test.go' \) \) -print0 | LC_ALL=C sort -z |
      xargs -0 sha256sum | sed "s#  $dir/#  #"
  } | sha256sum | cut -d' ' -f1
}

build_tool() {
  local dir="$ROOT/tools/$TOOL" bin_dir digest entry name pkg t0 missing=0
  local -a names=() pkgs=()
  [[ -d "$dir" ]] || die "no folder tools/$TOOL"
  [[ -f "$dir/go.mod" && -f "$dir/go.sum" ]] || die "tools/$TOOL needs go.mod and go.sum"
  read_build_env "$dir/build.env"

  for entry in ${ENV[PACKAGES]}; do
    if [[ "$entry" == *=* ]]; then
      name="${entry%%=*}" pkg="${entry#*=}"
    else
      name="$(default_name "$entry")" pkg="$entry"
    fi
    # The tool block is the list of what this module builds: keep it honest.
    grep -qE "^(tool)?[[:space:]]+$pkg\$|^tool $pkg\$" "$dir/go.mod" ||
      die "$pkg is not in the tool block of tools/$TOOL/go.mod"
    names+=("$name") pkgs+=("$pkg")
  done

  bin_dir="$CACHE/tools/$TOOL-${ENV[VERSION]}/bin"
  digest="$(source_digest "$dir")"
  for name in "${names[@]}"; do [[ -x "$bin_dir/$name" ]] || missing=1; done
  if [[ $missing == 0 && "$(cat "$bin_dir/.stamp" 2>/dev/null)" == "$digest" ]]; then
    return 0
  fi

  mkdir -p "$bin_dir"
  # Two callers (make jepsen and a test fixture, say) may ask for the same tool at once.
  exec 9>"$bin_dir/.lock"
  flock 9
  missing=0
  for name in "${names[@]}"; do [[ -x "$bin_dir/$name" ]] || missing=1; done
  if [[ $missing == 0 && "$(cat "$bin_dir/.stamp" 2>/dev/null)" == "$digest" ]]; then
    exec 9>&-
    return 0
  fi

  command -v go >/dev/null || die "go is not on PATH"
  log "building ${ENV[VERSION]} with $(go version | cut -d' ' -f3) into $bin_dir"
  STAGE="$(mktemp -d "$bin_dir/.build.XXXXXX")"
  local i
  for i in "${!pkgs[@]}"; do
    t0=$SECONDS
    log "  building ${names[$i]} (${pkgs[$i]})"
    start_ticker "${names[$i]}"
    CGO_ENABLED="${ENV[CGO_ENABLED]:-0}" go build -C "$dir" -trimpath \
      -tags "${ENV[TAGS]:-}" -ldflags "${ENV[LDFLAGS]:-}" -o "$STAGE/${names[$i]}" "${pkgs[$i]}"
    stop_ticker
    log "  built ${names[$i]} in $((SECONDS - t0))s"
  done
  # Replace the binaries only once all of them built, then stamp.
  for name in "${names[@]}"; do mv -f "$STAGE/$name" "$bin_dir/$name"; done
  rm -rf "$STAGE"
  STAGE=""
  printf '%s\n' "$digest" >"$bin_dir/.stamp"
  exec 9>&-
  log "done: ${names[*]}"
}

for TOOL in "$@"; do
  build_tool
done
