// Package bpf holds flocker's eBPF programs, their generated Go bindings, and
// the Go code that loads them.
//
// The C sources (*.bpf.c) are compiled by bpf2go into the committed
// *_bpfel.go / *_bpfel.o files, so `go build` never needs clang. Regenerate
// with `make generate`, which pins the compiler (BPF_CLANG, BPF_STRIP).
package bpf

//go:generate go tool bpf2go -cc $BPF_CLANG -strip $BPF_STRIP -target bpfel -tags linux probe probe.bpf.c -- -I./include -Wall -Werror

// The notifier tiers (notify.go). FLK_DIRECT builds the typed-pointer
// variant of a source (tp_btf, fexit); without it the same source builds the
// fallback that reads kernel memory through helpers (classic tracepoints,
// kprobes). -mcpu=v3 for the atomic compare-and-swap (kernel 5.12+).
//go:generate go tool bpf2go -cc $BPF_CLANG -strip $BPF_STRIP -target bpfel -tags linux tracepoint syscalls.bpf.c -- -I./include -Wall -Werror -mcpu=v3 -DFLK_DIRECT
//go:generate go tool bpf2go -cc $BPF_CLANG -strip $BPF_STRIP -target bpfel -tags linux rawsyscalls syscalls.bpf.c -- -I./include -Wall -Werror -mcpu=v3
//go:generate go tool bpf2go -cc $BPF_CLANG -strip $BPF_STRIP -target bpfel -tags linux fentry vfs.bpf.c -- -I./include -Wall -Werror -mcpu=v3 -DFLK_DIRECT
//go:generate go tool bpf2go -cc $BPF_CLANG -strip $BPF_STRIP -target bpfel -tags linux kprobe vfs.bpf.c -- -I./include -Wall -Werror -mcpu=v3
//go:generate go tool bpf2go -cc $BPF_CLANG -strip $BPF_STRIP -target bpfel -tags linux block block.bpf.c -- -I./include -Wall -Werror -mcpu=v3 -DFLK_DIRECT
