#!/usr/bin/env bash
# Inside the test VM (test/vm/run.ts): give a private dockerd what the read-only 9p root lacks, then
# run the command. The guest's own cgroup2 hierarchy (runc needs it), loopback up, and a tmpfs on
# /etc/docker (the plugin spec dir and dockerd's key.json; the host's /etc/docker is not touched).
set -euo pipefail
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
mount -t tmpfs -o mode=0755 etc-docker /etc/docker
exec "$@"
