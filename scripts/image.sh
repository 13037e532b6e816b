#!/usr/bin/env bash
# make image (issue 16 part 7): the OCI image of dialbridge (the daemon and
# the queue manager are one binary), FROM scratch, with buildah.
#
#   - the binary static (CGO_ENABLED=0) with the time zone database inside
#     (-tags timetzdata: queues[].pacing.timezone needs it, scratch has no
#     /usr/share/zoneinfo); the CA bundle of the build host for rediss://;
#   - user 65532:65532 ("dialbridge" in a two-line /etc/passwd and
#     /etc/group), never root; no shell, no other file;
#   - settings NOT baked in: /etc/dialbridge is a volume, the binary reads
#     /etc/dialbridge/settings.yaml ($DIALBRIDGE_CONFIG);
#   - entrypoint "dialbridge run", the cell as the argument:
#     podman run -v /etc/dialbridge:/etc/dialbridge:ro dialbridge:TAG 101
#   - labels org.opencontainers.image.{version,source,revision,title};
#     no port exposed unless HTTP_PORT is set (the http.listen port).
#
# Environment: IMAGE (default dialbridge), VERSION (default git describe),
# SOURCE (the source label), HTTP_PORT. Prints the image's name.
set -euo pipefail
cd "$(dirname "$0")/.."
. ./scripts/buildah.sh

ensure_buildah || { echo "image: buildah is missing and could not be installed" >&2; exit 1; }
image=${IMAGE:-dialbridge}
version=$(image_version)
source=${SOURCE:-https://github.com/multcall/dialbridge}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
arch=$(go env GOARCH)

tmp=$(mktemp -d)
ctr=
cleanup() {
	if [ -n "$ctr" ]; then bh rm "$ctr" >/dev/null 2>&1 || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

CGO_ENABLED=0 GOOS=linux go build -trimpath -tags timetzdata \
	-ldflags "-s -w -X main.version=${VERSION:-$version}" -o "$tmp/dialbridge" ./cmd/dialbridge
printf 'dialbridge:x:65532:65532:dialbridge:/nonexistent:/sbin/nologin\n' >"$tmp/passwd"
printf 'dialbridge:x:65532:\n' >"$tmp/group"

ctr=$(bh from --pull=never scratch)
bh copy --chmod 0755 "$ctr" "$tmp/dialbridge" /usr/local/bin/dialbridge >/dev/null
bh copy --chmod 0644 "$ctr" "$tmp/passwd" /etc/passwd >/dev/null
bh copy --chmod 0644 "$ctr" "$tmp/group" /etc/group >/dev/null
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	bh copy --chmod 0644 "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
fi
ports=()
if [ -n "${HTTP_PORT:-}" ]; then ports=(--port "$HTTP_PORT"); fi
bh config \
	--os linux --arch "$arch" \
	--entrypoint '["/usr/local/bin/dialbridge","run"]' \
	--user 65532:65532 \
	--workingdir / \
	--env DIALBRIDGE_CONFIG=/etc/dialbridge/settings.yaml \
	--volume /etc/dialbridge \
	--stop-signal SIGTERM \
	--label org.opencontainers.image.title=dialbridge \
	--label org.opencontainers.image.version="$version" \
	--label org.opencontainers.image.source="$source" \
	--label org.opencontainers.image.revision="$revision" \
	"${ports[@]}" \
	"$ctr"
# The image this tag named before (a rebuild of the same version): removed
# below once nothing names it, so rebuilds do not pile up in the storage.
old=$(bh images --quiet --noheading "localhost/$image:$version" 2>/dev/null | head -n 1 || true)
bh commit --quiet --rm --format oci "$ctr" "localhost/$image:$version" >/dev/null
ctr=
bh tag "localhost/$image:$version" "localhost/$image:latest"
if [ -n "$old" ]; then bh rmi "$old" >/dev/null 2>&1 || true; fi
echo "image: localhost/$image:$version ($(bh images --noheading --format '{{.Size}}' "localhost/$image:$version" | head -n 1))"
