#!/usr/bin/env bash
# Prepare what the Docker builds use so that they need no network, and the
# local base images where no image registry is reachable.
#
#   scripts/docker-prepare.sh [wheels [cpu|cuda12]] [npm] [bases]
#   (no argument: wheels npm)
#
# wheels  docker/wheelhouse/: the sidecar's pinned wheels (python/requirements.lock
#         + setuptools), for the Python of JAXBRIDGE_WHEELHOUSE_PYTHON (default
#         .venv/bin/python), which must match the image's Python (3.13) and arch.
# npm     docker/npm-cache/: an npm cache holding every package in package-lock.json,
#         so the app image's `npm ci --offline` needs no registry.
# bases   local/python3.13 and local/node20 (Debian trixie via debootstrap +
#         docker import; needs root, debootstrap and a Debian mirror), unless
#         they exist. Build with --build-arg BASE=local/python3.13 and
#         --build-arg NODE_BASE=local/node20.
# Each step is skipped when its inputs did not change since it last ran.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -gt 0 ] || set -- wheels npm

stamp_ok() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; }

wheels() {
  local accel="$1" py="${JAXBRIDGE_WHEELHOUSE_PYTHON:-.venv/bin/python}" dir=docker/wheelhouse
  [ -x "$py" ] || command -v "$py" >/dev/null || { echo "docker-prepare: no Python at $py (npm run setup, or set JAXBRIDGE_WHEELHOUSE_PYTHON)" >&2; return 2; }
  local pyid want t0=$SECONDS
  pyid="$("$py" -c 'import platform,sys; print(f"{sys.implementation.name}{sys.version_info[0]}.{sys.version_info[1]}-{platform.machine()}")')"
  # The sidecar's build backend, as python/pyproject.toml's [build-system] requires it (the image builds its wheel offline).
  local backend
  backend="$(sed -n 's/^requires = \["\([^"]*\)"\]$/\1/p' python/pyproject.toml)"
  [ -n "$backend" ] || { echo "docker-prepare: no [build-system] requires = [\"...\"] line in python/pyproject.toml" >&2; return 2; }
  want="$( { cat python/requirements.lock; echo "accel=$accel py=$pyid backend=$backend"; } | sha256sum | cut -c1-64)"
  if stamp_ok "$dir" "$want"; then echo "docker-prepare: wheelhouse up to date ($pyid, $accel)"; return 0; fi
  local extra=()
  if [ "$accel" = cuda12 ]; then
    local jaxv
    jaxv="$("$py" -c 'import importlib.metadata as m; print(m.version("jax"))')"
    extra+=("jax[cuda12]==$jaxv")
  fi
  find "$dir" -maxdepth 1 -name '*.whl' -delete
  rm -f "$dir/.stamp"
  "$py" -m pip download --disable-pip-version-check --quiet --only-binary=:all: -d "$dir" \
    -r python/requirements.lock "$backend" ${extra[@]+"${extra[@]}"}
  echo "$want" > "$dir/.stamp"
  echo "docker-prepare: wheelhouse: $(ls "$dir"/*.whl | wc -l) wheels for $pyid ($accel), $(du -sh "$dir" | cut -f1), $((SECONDS - t0))s"
}

npm_cache() {
  local dir=docker/npm-cache want t0=$SECONDS tmp
  want="$(sha256sum package-lock.json | cut -c1-64)"
  if stamp_ok "$dir" "$want"; then echo "docker-prepare: npm cache up to date"; return 0; fi
  find "$dir" -mindepth 1 -maxdepth 1 ! -name .gitignore -exec rm -rf {} +
  tmp="$(mktemp -d)"
  cp package.json package-lock.json "$tmp/"
  # Installing into a scratch folder fills the cache with every tarball the lock names.
  (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error --cache "$OLDPWD/$dir" >/dev/null)
  rm -rf "$tmp" "$dir/_logs" "$dir/_update-notifier-last-checked"
  echo "$want" > "$dir/.stamp"
  echo "docker-prepare: npm cache: $(du -sh "$dir" | cut -f1), $((SECONDS - t0))s"
}

bases() {
  local t0=$SECONDS
  if ! docker image inspect local/python3.13 >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { echo "docker-prepare: debootstrap is missing (apt-get install debootstrap)" >&2; return 2; }
    local mirror rootfs
    mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    rootfs="$(mktemp -d /tmp/jaxbridge-rootfs.XXXXXX)"
    debootstrap --variant=minbase --include=python3,python3-venv trixie "$rootfs" "$mirror" >/tmp/jaxbridge-debootstrap.log 2>&1 \
      || { echo "docker-prepare: debootstrap failed, see /tmp/jaxbridge-debootstrap.log" >&2; rm -rf "$rootfs"; return 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import -c 'CMD ["python3"]' - local/python3.13 >/dev/null
    rm -rf "$rootfs"
    echo "docker-prepare: built local/python3.13 (Debian trixie, $(docker run --rm local/python3.13 python3 -V)), $((SECONDS - t0))s"
  fi
  if ! docker image inspect local/node20 >/dev/null 2>&1; then
    printf 'FROM local/python3.13\nRUN apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null && rm -rf /var/lib/apt/lists/*\n' \
      | docker build -q -t local/node20 - >/dev/null 2>/tmp/jaxbridge-node-base.log \
      || { echo "docker-prepare: building local/node20 failed:" >&2; tail -20 /tmp/jaxbridge-node-base.log >&2; return 1; }
    echo "docker-prepare: built local/node20 (node $(docker run --rm local/node20 node --version)), $((SECONDS - t0))s"
  fi
}

while [ $# -gt 0 ]; do
  case "$1" in
    wheels) accel=cpu; if [ "${2:-}" = cpu ] || [ "${2:-}" = cuda12 ]; then accel="$2"; shift; fi; wheels "$accel" ;;
    npm) npm_cache ;;
    bases) bases ;;
    *) echo "usage: $0 [wheels [cpu|cuda12]] [npm] [bases]" >&2; exit 2 ;;
  esac
  shift
done
