# Sourced by scripts/image.sh and scripts/image-check.sh.
# ensure_buildah: installs buildah from the OS packages when missing (the
# Debian mirror; apt-get update only when the first try fails). bh: buildah
# as these machines run it, as root without a daemon: the vfs storage
# driver (no overlay mounts needed) and chroot isolation (no user
# namespaces). Images live in /var/lib/containers/storage.

export BUILDAH_ISOLATION=chroot

ensure_buildah() {
	if command -v buildah >/dev/null 2>&1; then return 0; fi
	echo "buildah: installing it from the OS packages"
	local SUDO=
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq buildah >/dev/null 2>&1 || {
		$SUDO apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq buildah >/dev/null
	}
	command -v buildah >/dev/null 2>&1
}

bh() { buildah --storage-driver vfs "$@"; }

# image_version: the tag make image gives (the Makefile passes VERSION).
image_version() {
	local v=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
	# A tag is [A-Za-z0-9_.-], at most 128 characters.
	v=$(printf '%s' "$v" | tr -c 'A-Za-z0-9_.-' '-')
	printf '%s' "${v:0:128}"
}
