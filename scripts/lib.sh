# Shared set-up for scripts/demo and scripts/test: safe to run again, as root, on Debian.
# shellcheck shell=bash

PINOTAGE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${PINOTAGE_VENV:-$PINOTAGE_ROOT/.venv}

say() { printf '==> %s\n' "$*" >&2; }

# Install the Debian packages that are not there yet (apt-get update only when needed).
install_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# Create the virtualenv and install Pinotage into it; skipped while setup.cfg and the lock are
# unchanged. Every dependency (all extras) comes from requirements.lock, each checked against its
# hashes; Pinotage itself is then installed without dependencies and without build isolation (the
# lock holds setuptools), so nothing unhashed is fetched. As the lock holds every extra, one install
# serves scripts/demo and scripts/test alike: the stamp names the files, not the extras asked for.
ensure_venv() {
  local extras=${1:-} stamp installed log
  stamp=$(cat "$PINOTAGE_ROOT/setup.cfg" "$PINOTAGE_ROOT/pyproject.toml" "$PINOTAGE_ROOT/requirements.lock" \
          | sha256sum | cut -c1-16)
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  installed=$(cat "$VENV/.pinotage-installed" 2>/dev/null || true)
  [ "${installed%%-*}" = "$stamp" ] && return 0  # an earlier stamp ended in -EXTRAS
  say "installing pinotage${extras:+[$extras]} into $VENV"
  log=$(mktemp)
  if ! { "$VENV/bin/pip" install -q --require-hashes -r "$PINOTAGE_ROOT/requirements.lock" &&
         "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$PINOTAGE_ROOT${extras:+[$extras]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
  echo "$stamp" > "$VENV/.pinotage-installed"
}

# Install the CycloneDX SBOM tool the build runs (pipeline/sbom.py) under tools/cyclonedx, from
# its committed lockfile; skipped while that lockfile is unchanged.
ensure_sbom_tool() {
  local dir=$PINOTAGE_ROOT/tools/cyclonedx stamp
  stamp=$(sha256sum "$dir/package-lock.json" | cut -c1-16)
  [ "$(cat "$dir/node_modules/.pinotage-installed" 2>/dev/null)" = "$stamp" ] && return 0
  say "installing the CycloneDX SBOM tool into $dir"
  npm ci --prefix "$dir" --no-audit --no-fund --ignore-scripts --loglevel=error >&2
  echo "$stamp" > "$dir/node_modules/.pinotage-installed"
}

# Start dockerd when no engine answers, and wait until it does.
start_dockerd() {
  docker info >/dev/null 2>&1 && return 0
  say "starting dockerd (log: /var/log/pinotage-dockerd.log)"
  setsid nohup dockerd --storage-driver overlay2 >/var/log/pinotage-dockerd.log 2>&1 </dev/null &
  local _
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  say "dockerd did not answer within 30 s; the end of its log:"
  tail -n 20 /var/log/pinotage-dockerd.log >&2
  return 1
}

# Build (or reuse) the local base images and export their refs for the Dockerfile's build arguments,
# and the local target's front image built on them.
ensure_base_images() {
  local line
  while IFS= read -r line; do
    case "$line" in
      build=*) export PINOTAGE_IMAGE_BUILD_BASE=${line#build=} ;;
      runtime=*) export PINOTAGE_IMAGE_FINAL_BASE=${line#runtime=} ;;
    esac
  done < <("$PINOTAGE_ROOT/scripts/base-image")
  [ -n "${PINOTAGE_IMAGE_BUILD_BASE:-}" ] && [ -n "${PINOTAGE_IMAGE_FINAL_BASE:-}" ] || return 1
  # The local target's front: Debian's nginx on the runtime base.
  line=$("$PINOTAGE_ROOT/scripts/front-image" "$PINOTAGE_IMAGE_FINAL_BASE" | tail -n 1)
  export PINOTAGE_DEPLOY_FRONT_IMAGE=${line#front=}
}

# Start the demo's registry on 127.0.0.1:5000 with htpasswd auth, once; its password is made
# on first use and kept root-only under /var/lib/pinotage/registry. Exports the credentials.
start_registry() {
  local dir=/var/lib/pinotage/registry
  install -d -m 0700 "$dir"
  if [ ! -s "$dir/password" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$dir/password")
    htpasswd -iBc "$dir/htpasswd" pinotage < "$dir/password" 2>/dev/null
  fi
  cat > "$dir/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}
http: {addr: '127.0.0.1:5000'}
auth: {htpasswd: {realm: pinotage, path: $dir/htpasswd}}
YAML
  if ! curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5000/v2/ | grep -q 401; then
    say "starting the registry on 127.0.0.1:5000 (log: /var/log/pinotage-registry.log)"
    setsid nohup docker-registry serve "$dir/config.yml" >/var/log/pinotage-registry.log 2>&1 </dev/null &
    local _
    for _ in $(seq 1 40); do
      curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5000/v2/ | grep -q 401 && break
      sleep 0.25
    done
  fi
  export PINOTAGE_REGISTRY_URL=127.0.0.1:5000 PINOTAGE_REGISTRY_USER=pinotage
  PINOTAGE_REGISTRY_PASSWORD=$(cat "$dir/password")
  export PINOTAGE_REGISTRY_PASSWORD
}
