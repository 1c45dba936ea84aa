// Package bench will hold the benchmark harness (replication lag per trigger
// mode, probe overhead, failover time, handoff downtime, throughput). Until
// then `make bench` runs the Go benchmarks of the other packages.
package bench
