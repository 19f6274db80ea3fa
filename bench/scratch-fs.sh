# Sourced by the disk-heavy benchmark scripts (unpack, apply, fleet): every work directory of the run (registry
# storage, berth roots, containerd's root, the floor's trees) goes to a fresh ext4 filesystem made with mkfs's
# defaults, journal included, as on a real node, loop-mounted for this run and removed on exit.
#
# Why not the machine's root filesystem: on ext4 without a journal (this VM's root) the inode allocator skips every
# inode freed in the last 60 s (360 s while its inode-table block is dirty) and looks each one up, so unpacking
# 32 000 files within minutes of deleting another run's 32 000 costs a quadratic inode search (perf: 70 % of a
# pull's CPU in ext4_create -> find_inode_bit -> recently_deleted), and the order of the runs decides the result.
# A journaled ext4 never takes that path. Set BENCH_SCRATCH_FS=none to run on the current TMPDIR instead.
scratch_fs() {
  [ "${BENCH_SCRATCH_FS:-loop}" = none ] && return 0
  local size="${BENCH_SCRATCH_SIZE:-64G}"
  SCRATCH_IMG="${BENCH_SCRATCH_IMG_DIR:-/var/tmp}/berth-bench-$$.img"
  SCRATCH_MNT="/tmp/berth-bench-fs-$$"
  truncate -s "$size" "$SCRATCH_IMG"
  mkfs.ext4 -q -F "$SCRATCH_IMG"
  mkdir -p "$SCRATCH_MNT"
  # discard: blocks freed in the filesystem are punched out of the sparse image, so it only holds live data
  mount -o loop,discard "$SCRATCH_IMG" "$SCRATCH_MNT"
  trap 'umount "$SCRATCH_MNT" 2>/dev/null || umount -l "$SCRATCH_MNT"; rm -f "$SCRATCH_IMG"; rmdir "$SCRATCH_MNT"' EXIT
  export TMPDIR="$SCRATCH_MNT"
  echo "scratch filesystem: ext4 (journal) on a loop device at $SCRATCH_MNT (sparse image $SCRATCH_IMG, $size)"
}
