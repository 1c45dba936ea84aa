// Package bench is the benchmark harness behind `flocker bench` and
// `make bench`: one run on the two-host test rig (netns hosts a and b,
// zfs-fuse pools, real agent processes) that measures write-to-replica lag
// per trigger mode beside the floor, lag at 10 and 1,000 writes per second
// and under several workloads, probe overhead per eBPF tier, full-sync
// throughput beside a local zfs send | zfs receive, and a 50-dataset pair's
// lag, CPU and memory. It writes a terminal table, CSV, JSON (with the
// machine's details) and PNG plots.
//
// Each scenario is one file that registers itself (see Scenario); how lag
// is defined and detected is documented in attribute.go.
package bench
