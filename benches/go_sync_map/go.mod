module readmostly/benches/go_sync_map

go 1.19
