#!/usr/bin/env bash
# make image-check (issue 16 part 7): checks the image make image built, by
# inspection. These machines cannot run containers (no privilege to set
# rlimits, no runtime), so nothing here starts one: the image's config is
# read with buildah inspect, its root filesystem is mounted and listed, and
# the binary is run from that filesystem in a chroot as the image's user
# (no container: no namespaces, no cgroups, no seccomp; it proves the
# binary needs no file the image lacks). Usage: image-check.sh [IMAGE:TAG]
set -euo pipefail
cd "$(dirname "$0")/.."
. ./scripts/buildah.sh

image=${1:-localhost/${IMAGE:-dialbridge}:$(image_version)}
version=${image##*:}
max_bytes=$((40 * 1024 * 1024)) # the binary is ~25 MB: room to grow, not to gain a distribution
bad=0
ok() { echo "image-check: ok   $*"; }
no() {
	echo "image-check: FAIL $*" >&2
	bad=1
}

command -v buildah >/dev/null 2>&1 || { echo "image-check: buildah is not installed (make image installs it)" >&2; exit 1; }
f() { bh inspect --type image --format "$1" "$image"; }
f '{{.FromImageID}}' >/dev/null || { echo "image-check: no image $image (make image builds it)" >&2; exit 1; }

entry=$(f '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}')
[ "$entry" = "/usr/local/bin/dialbridge run " ] && ok "entrypoint: $entry(the cell is the argument)" || no "entrypoint is '$entry', want '/usr/local/bin/dialbridge run'"
cmd=$(f '{{range .OCIv1.Config.Cmd}}{{.}} {{end}}')
[ -z "$cmd" ] && ok "no default cell (CMD empty)" || no "CMD is '$cmd': the cell must be given at run time"

user=$(f '{{.OCIv1.Config.User}}')
if [[ $user =~ ^([0-9]+):([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" != 0 ] && [ "${BASH_REMATCH[2]}" != 0 ]; then
	ok "user $user (numeric, not root)"
else
	no "user is '$user', want a numeric uid:gid other than 0"
fi

env=$(f '{{range .OCIv1.Config.Env}}{{.}} {{end}}')
[[ " $env" == *" DIALBRIDGE_CONFIG=/etc/dialbridge/settings.yaml "* ]] && ok "settings path /etc/dialbridge/settings.yaml" || no "env '$env' lacks DIALBRIDGE_CONFIG=/etc/dialbridge/settings.yaml"
vols=$(f '{{range $k, $v := .OCIv1.Config.Volumes}}{{$k}} {{end}}')
[ "$vols" = "/etc/dialbridge " ] && ok "volume /etc/dialbridge (settings mounted, not baked in)" || no "volumes are '$vols', want /etc/dialbridge"
ports=$(f '{{range $k, $v := .OCIv1.Config.ExposedPorts}}{{$k}} {{end}}')
want_ports=
if [ -n "${HTTP_PORT:-}" ]; then want_ports="$HTTP_PORT "; fi
[ "${ports/\/tcp/}" = "$want_ports" ] && ok "exposed ports: '${ports:-none}'" || no "exposed ports '$ports', want '${want_ports:-none}'"
label() { f "{{index .OCIv1.Config.Labels \"org.opencontainers.image.$1\"}}"; }
[ "$(label version)" = "$version" ] && ok "label version $version" || no "label version '$(label version)', want $version"
[ -n "$(label source)" ] && ok "label source $(label source)" || no "no source label"

ctr=$(bh from --pull=never "$image")
trap 'bh umount "$ctr" >/dev/null 2>&1 || true; bh rm "$ctr" >/dev/null 2>&1 || true' EXIT
root=$(bh mount "$ctr")
files=$(cd "$root" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort | tr '\n' ' ')
want="etc/group etc/passwd usr/local/bin/dialbridge "
[ "${files/etc\/ssl\/certs\/ca-certificates.crt /}" = "$want" ] && ok "files: $files" || no "files are '$files', want $want(and the CA bundle)"
for sh in bin/sh bin/bash bin/busybox usr/bin/sh; do
	if [ -e "$root/$sh" ]; then no "a shell: /$sh"; fi
done
[ -e "$root/etc/dialbridge/settings.yaml" ] && no "settings baked into the image" || true
grep -q '^dialbridge:x:65532:65532:' "$root/etc/passwd" && ok "/etc/passwd names uid 65532 dialbridge" || no "/etc/passwd: $(cat "$root/etc/passwd")"
size=$(du -sb "$root" | cut -f1)
[ "$size" -lt "$max_bytes" ] && ok "size $((size / 1024 / 1024)) MiB < $((max_bytes / 1024 / 1024)) MiB" || no "size $size bytes ≥ $max_bytes"
if command -v readelf >/dev/null 2>&1; then
	readelf -l "$root/usr/local/bin/dialbridge" | grep -q INTERP && no "the binary is dynamically linked" || ok "the binary is static (no ELF interpreter)"
fi

# Run the binary from the image's own files, as its user: a chroot, not a
# container (needs root; skipped otherwise).
if [ "$(id -u)" = 0 ] && command -v chroot >/dev/null 2>&1; then
	uid=${user%%:*} gid=${user##*:}
	chroot=$(command -v chroot)
	got=$(env -i "$chroot" --userspec="$uid:$gid" "$root" /usr/local/bin/dialbridge --version 2>&1) &&
		[[ $got == "dialbridge "* ]] && ok "in a chroot of the image as $user: $got" || no "--version in a chroot: $got"
	# The shipped settings at the mounted path, read through $DIALBRIDGE_CONFIG
	# (check-config only parses: no network). Written into this throwaway
	# container, never into the image.
	mkdir -p "$root/etc/dialbridge"
	cp configs/settings.yaml "$root/etc/dialbridge/settings.yaml"
	chmod 0644 "$root/etc/dialbridge/settings.yaml"
	got=$(env -i DIALBRIDGE_CONFIG=/etc/dialbridge/settings.yaml "$chroot" --userspec="$uid:$gid" "$root" /usr/local/bin/dialbridge check-config 2>&1) &&
		ok "in a chroot: check-config reads the mounted settings: $got" || no "check-config in a chroot: $got"
else
	echo "image-check: skip running the binary in a chroot of the image (needs root)"
fi

if [ "$bad" != 0 ]; then
	echo "image-check: $image FAILED" >&2
	exit 1
fi
echo "image-check: $image ok (inspected only: containers cannot be run on these machines)"
