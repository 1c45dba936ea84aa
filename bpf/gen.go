// Package bpf holds flocker's eBPF programs, their generated Go bindings, and
// the Go code that loads them.
//
// The C sources (*.bpf.c) are compiled by bpf2go into the committed
// *_bpfel.go / *_bpfel.o files, so `go build` never needs clang. Regenerate
// with `make generate`, which pins the compiler (BPF_CLANG, BPF_STRIP).
package bpf

//go:generate go tool bpf2go -cc $BPF_CLANG -strip $BPF_STRIP -target bpfel -tags linux probe probe.bpf.c -- -I./include -Wall -Werror
