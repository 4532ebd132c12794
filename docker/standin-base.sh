#!/usr/bin/env bash
# Make the container test's stand-in for the Azure ML base image, which cannot be pulled here:
# Debian 12 from debootstrap, imported into buildah's local storage as IMAGE (kept between runs).
#
# What the Dockerfile expects of its base, recreated: apt-get with reachable sources, useradd,
# and the CA certificates (ca-certificates), which the Azure ML images carry.
#
#   docker/standin-base.sh [image]      (root; Debian packages debootstrap and buildah)
set -euo pipefail
image=${1:-localhost/tfscoring-standin-base:bookworm}
buildah=(buildah --storage-driver vfs)
if "${buildah[@]}" inspect --type image "$image" >/dev/null 2>&1; then
  echo "stand-in base $image already built"
  exit 0
fi
rootfs=$(mktemp -d /var/tmp/tfscoring-standin.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
echo "debootstrap Debian bookworm from $mirror into $rootfs"
debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"
container=$("${buildah[@]}" from scratch)
mountpoint=$("${buildah[@]}" mount "$container")
cp -a "$rootfs/." "$mountpoint/"
"${buildah[@]}" umount "$container" >/dev/null
"${buildah[@]}" commit --quiet "$container" "$image" >/dev/null
"${buildah[@]}" rm "$container" >/dev/null
echo "stand-in base $image built"
