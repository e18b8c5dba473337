#!/usr/bin/env bash
# Prepares a Debian 12 machine for vring's QEMU guest tests (backends/.../guest/).
#
#   1. installs, only when one is missing, the host tools the tests run:
#      qemu-system-x86 (QEMU 7.2, run with accel=tcg: no KVM needed),
#      busybox-static + cpio + gzip (the guest's initramfs), gcc + libc6-dev
#      (static guest programs). Needs root for this step only.
#   2. fetches Debian's cloud guest kernel WITHOUT installing it: the versioned
#      package that linux-image-cloud-amd64 depends on is downloaded and unpacked
#      with dpkg -x into $VRING_GUEST_CACHE/<version>/ (boot/vmlinuz-<version>,
#      lib/modules/<version>/), and $VRING_GUEST_CACHE/current points at it.
#      A kit that is already there is reused; nothing is downloaded again.
#
# The tests find the kit through $VRING_GUEST_CACHE/current (or the system
# property vring.guest.kit / the env var VRING_GUEST_KIT naming a <version> dir).
#
# Environment:
#   VRING_GUEST_CACHE   where kits live (default /var/cache/vring-guest)
#
# Usage: .ci/guest-kit.sh        (as root on a fresh machine; rerun any time)
# Prints the kit directory as its last line.
set -euo pipefail

readonly cache=${VRING_GUEST_CACHE:-/var/cache/vring-guest}
readonly packages=(qemu-system-x86 busybox-static cpio gzip gcc libc6-dev)
readonly meta_package=linux-image-cloud-amd64

log() { printf 'guest-kit: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f '${db:Status-Status}' "$pkg" 2>/dev/null) || status=
    [[ $status == installed ]] || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    (( EUID == 0 )) || die "missing packages: ${missing[*]}; run this script as root (or apt-get install them)"
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "host packages present: ${packages[*]}"
fi

# "Depends: linux-image-6.1.0-56-cloud-amd64" -> the versioned image package.
image_package() {
    apt-cache depends "$meta_package" 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1
}

# Downloads and unpacks $1 into $kit; fails if the package cannot be fetched.
fetch_kernel() {
    local package=$1 work deb
    log "fetching $package into $kit"
    mkdir -p -- "$cache"
    work=$(mktemp -d -- "$cache/.fetch.XXXXXX")
    # apt-get download writes into the current directory; as root, apt fetches
    # as the _apt user, which must be able to write there (else it warns).
    if (( EUID == 0 )) && id -u _apt >/dev/null 2>&1; then chown _apt -- "$work"; fi
    if ! (cd -- "$work" && apt-get download -qq "$package"); then
        rm -rf -- "$work"
        return 1
    fi
    deb=$(find "$work" -maxdepth 1 -name '*.deb' -print -quit)
    [[ -n $deb ]] || { rm -rf -- "$work"; die "apt-get download $package produced no .deb"; }
    dpkg -x "$deb" "$work/root"
    [[ -f $work/root/boot/vmlinuz-$version ]] || { rm -rf -- "$work"; die "$deb has no boot/vmlinuz-$version"; }
    rm -rf -- "$kit"
    mv -- "$work/root" "$kit"
    rm -rf -- "$work"
    # Readable by a non-root user who runs the tests (the image is 0600 in the package).
    chmod -R a+rX -- "$kit"
}

package=$(image_package)
# No package lists yet (a fresh machine), or lists so old the mirror no longer has that kernel:
# update once and look again.
lists_updated=false
if [[ -z $package ]] && (( EUID == 0 )); then
    apt-get update -qq
    lists_updated=true
    package=$(image_package)
fi
[[ -n $package ]] || die "apt-cache depends $meta_package names no linux-image-<version> package"
version=${package#linux-image-}
kit=$cache/$version

if [[ -f $kit/boot/vmlinuz-$version && -d $kit/lib/modules/$version/kernel ]]; then
    log "kernel $version already in $kit"
elif ! fetch_kernel "$package"; then
    [[ $lists_updated == false ]] && (( EUID == 0 )) || die "cannot download $package"
    apt-get update -qq
    package=$(image_package)
    version=${package#linux-image-}
    kit=$cache/$version
    if [[ ! -f $kit/boot/vmlinuz-$version ]]; then
        fetch_kernel "$package" || die "cannot download $package"
    fi
fi
ln -sfn -- "$version" "$cache/current"
printf '%s\n' "$kit"
