//go:build ignore

/* probe.bpf.c: one tiny program per kernel capability the notifier tiers need.
 *
 * probe.go loads (and where it means something, attaches) each program on its
 * own, so a refusal names exactly one capability and carries the kernel's own
 * error. The programs do nothing but exist; the LSM one also records that its
 * hook ran, because an LSM program attaches even where the BPF LSM is not
 * active and then never runs.
 */
#include "flocker.h"

/* GPL: fentry/fexit and LSM programs must be GPL-compatible to load. */
char LICENSE[] SEC("license") = "GPL";

/* Ring buffers are probed by creating this map; no program uses it, so a
 * kernel without ring buffers fails this check and no other. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} probe_ringbuf SEC(".maps");

/* Set to 1 by probe_lsm when the file_open hook actually runs. */
volatile __u32 probe_lsm_ran = 0;

/* Typed (BTF) raw tracepoint: what the syscall-exit tier attaches to. */
SEC("tp_btf/sys_exit")
int BPF_PROG(probe_tp_btf, struct pt_regs *regs, long ret)
{
	return 0;
}

/* Classic tracepoint (needs tracefs for its id). */
SEC("tracepoint/raw_syscalls/sys_exit")
int probe_tracepoint(void *ctx)
{
	return 0;
}

/* Untyped raw tracepoint. */
SEC("raw_tracepoint/sys_exit")
int probe_raw_tracepoint(void *ctx)
{
	return 0;
}

/* fentry/fexit/kprobe on the same VFS function the VFS tiers hook. */
SEC("fentry/vfs_write")
int BPF_PROG(probe_fentry)
{
	return 0;
}

SEC("fexit/vfs_write")
int BPF_PROG(probe_fexit)
{
	return 0;
}

SEC("kprobe/vfs_write")
int probe_kprobe(struct pt_regs *ctx)
{
	return 0;
}

SEC("lsm/file_open")
int BPF_PROG(probe_lsm, struct file *file)
{
	probe_lsm_ran = 1;
	return 0; /* allow the open */
}

/* Block layer: what the block tier watches (bio submission per device). */
SEC("tracepoint/block/block_bio_queue")
int probe_block(void *ctx)
{
	return 0;
}
