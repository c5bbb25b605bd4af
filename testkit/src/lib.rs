//! Test-only tools for the QEMU guest tests (tests/guest/): each binary under `src/bin/` is built
//! statically for the guest by `scripts/setup tools` and copied into it by `qemu/run-guest`.
//! Nothing here is part of vexfs itself. The library holds what a binary shares with the host
//! fuzz targets (fuzz/): [`mutate`], the structure-aware image mutations.

pub mod mutate;
