"""systemd as imgdiff sees it, parsed and never asked: an image's unit files
(`unitfiles`) and the unit a process's cgroup path names (`cgroup`)."""
