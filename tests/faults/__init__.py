"""The fault suite: crashes, dying servers, full disks and damaged files (issue 15)."""
