#!/bin/sh
# usage: oa-qemu-run.sh CPU EXE ARGS...   Runs EXE emulated as CPU, including the copy of
# itself that PyInstaller's bootloader re-executes: a binfmt_misc entry that matches only EXE's
# own header bytes (24..127), in a binfmt_misc instance private to a new user+mount namespace
# (Linux >= 6.7). Nothing outside that namespace is affected.
cpu="$1"; exe="$2"; shift 2
magic=$(od -An -v -tx1 -j24 -N104 "$exe" | tr -d ' \n' | sed 's/../\\x&/g')
exec unshare --user --map-root-user --mount sh -c '
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 97
  printf "%s" ":oa-bundle:M:24:$1::/usr/bin/qemu-x86_64:F" > /proc/sys/fs/binfmt_misc/register || exit 98
  export QEMU_CPU="$0"
  shift
  exec "$@"
' "$cpu" "$magic" "$exe" "$@"
