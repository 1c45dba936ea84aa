/* notify.h: the core every notifier tier shares.
 *
 * A target is one watched filesystem, found by its superblock device (the
 * kernel's s_dev, major<<20|minor) in the targets hash, which gives its id:
 * an index into the flags and counters of `state`. A hook that sees a change
 * to a target marks it: a plain load of the target's dirty flag, and only on
 * the clean->dirty edge a compare-and-swap and ONE ring-buffer event. So a
 * target gives one event per dirty period however many writes it takes, and
 * userspace re-arms it by clearing the flag.
 *
 * A failed ring-buffer reserve must not lose a change: the flag goes back to
 * clean (the next write tries again) and the target's lost counter counts it;
 * userspace polls the counters and treats a change of one as "dirty".
 *
 * Programs built with FLK_DIRECT (tp_btf, fentry) read kernel memory through
 * typed BTF pointers, which costs a load each; the others (classic and raw
 * tracepoints, kprobes) go through bpf_probe_read_kernel via BPF_CORE_READ.
 */
#ifndef FLOCKER_NOTIFY_H
#define FLOCKER_NOTIFY_H

#include "flocker.h"
#include "hooks.h"

char LICENSE[] SEC("license") = "GPL";

/* MAX_TARGETS bounds the ids: path checks return the targets they hit as
 * a 64-bit mask. */
#define MAX_TARGETS 64
/* Bytes of a path a path-based hook examines (see judge_path). */
#define PATH_BUF 256
/* io_submit/io_getevents: how many iocbs or events are looked at one by
 * one; beyond that every target is marked. */
#define MAX_IOCBS 256

#define AT_FDCWD -100
#define O_CREAT 00000100
#define O_TRUNC 00001000
#define O_TMPFILE_BIT 020000000
#define OPEN_CHANGES (O_CREAT | O_TRUNC | O_TMPFILE_BIT)
#define TS_COMPAT 0x0002
#define MAX_ERRNO 4095

/* One event per clean->dirty edge. Go reads it as bpf.event. */
struct event {
	__u32 target;
	__u32 hook; /* enum hook */
	__u64 time_ns; /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
};

/* Referenced so that the enum lands in the object's BTF, where the loader
 * reads the hook names. */
const enum hook *unused_hook_type __attribute__((unused));

/* Shared with userspace through the memory-mapped .bss (Go: bpf.sharedState). */
struct shared {
	__u32 dirty[MAX_TARGETS]; /* 0 clean (armed), 1 dirty */
	__u64 lost[MAX_TARGETS]; /* monotonic: failed reserves per target */
	__u64 active; /* bit per id in use, for hooks that mark every target */
	__u32 clean; /* how many targets are clean: 0 lets hooks return early */
	__u32 pad;
};
struct shared state;

/* Set by the loader before loading. */
volatile const bool fast_path = true; /* skip everything while no target is clean */
volatile const bool iouring_res_in_cqe = true; /* io_uring_complete(ctx, req, cqe) vs (ctx, req, user_data, res, ...) */
volatile const bool mkdir_returns_ptr = false; /* vfs_mkdir returns struct dentry * (6.15+) */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* The block tier keys a pool's devices, several per target. */
	__uint(max_entries, 1024);
	__type(key, __u32); /* s_dev or a block device's dev_t */
	__type(value, __u32); /* target id */
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16384); /* the loader may resize it */
} events SEC(".maps");

/* read_str reads a string from user or kernel memory into the scratch buffer. */
static __always_inline long read_str(char *dst, const void *src, bool user)
{
	if (user)
		return bpf_probe_read_user_str(dst, PATH_BUF, src);
	return bpf_probe_read_kernel_str(dst, PATH_BUF, src);
}

/* fast_skip is the "no clean target" early return: when every target is
 * already dirty there is nothing a hook could add. */
static __always_inline bool fast_skip(void)
{
	return fast_path && state.clean == 0;
}

/* Functions that loops call, or that are big, are global (not static):
 * the verifier checks a global function once, not at every call. */

/* mark_id is the slow half of a mark: the clean->dirty edge. */
__noinline int mark_id(__u32 id, __u32 hook)
{
	if (id >= MAX_TARGETS)
		return 0;
	__u32 *flag = &state.dirty[id];
	if (*flag)
		return 0;
	if (__sync_val_compare_and_swap(flag, 0, 1) != 0)
		return 0; /* another CPU took the edge */
	__sync_fetch_and_sub(&state.clean, 1);
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		/* Count first, then re-arm: userspace sees the count and the
		 * next write tries again. */
		__sync_fetch_and_add(&state.lost[id], 1);
		if (__sync_val_compare_and_swap(flag, 1, 0) == 1)
			__sync_fetch_and_add(&state.clean, 1);
		return 0;
	}
	e->target = id;
	e->hook = hook;
	e->time_ns = bpf_ktime_get_ns();
	bpf_ringbuf_submit(e, 0);
	return 1;
}

/* mark_dev marks the target on device dev, if there is one. The hot path:
 * one hash lookup and a plain load of the flag. */
static __always_inline void mark_dev(__u32 dev, __u32 hook)
{
	__u32 *id = bpf_map_lookup_elem(&targets, &dev);
	if (!id)
		return;
	__u32 i = *id;
	if (i >= MAX_TARGETS || state.dirty[i])
		return;
	mark_id(i, hook);
}

static __always_inline __u64 dev_mask(__u32 dev)
{
	__u32 *id = bpf_map_lookup_elem(&targets, &dev);
	if (!id || *id >= MAX_TARGETS)
		return 0;
	return 1ULL << *id;
}

__noinline int mark_mask(__u64 mask, __u32 hook)
{
	mask &= state.active;
	/* Test a shifted copy: refining mask itself in each branch would give
	 * the verifier a distinct state per bit pattern. */
	for (__u32 i = 0; i < MAX_TARGETS; i++) {
		if ((mask >> i) & 1)
			mark_id(i, hook);
	}
	return 0;
}

static __always_inline void mark_all(__u32 hook)
{
	mark_mask(~0ULL, hook);
}

static __always_inline bool is_err(long v)
{
	return (unsigned long)v >= (unsigned long)-MAX_ERRNO;
}

/* Reading through BPF_CORE_READ works from every program type. */
static __always_inline __u32 file_dev_core(struct file *f)
{
	return BPF_CORE_READ(f, f_inode, i_sb, s_dev);
}

static __always_inline __u32 dentry_dev_core(struct dentry *d)
{
	return BPF_CORE_READ(d, d_sb, s_dev);
}

static __always_inline __u32 inode_dev_core(struct inode *i)
{
	return BPF_CORE_READ(i, i_sb, s_dev);
}

/* Typed reads where the program has BTF pointers (fexit arguments). */
#ifdef FLK_DIRECT
#define file_dev(f) ((f)->f_inode->i_sb->s_dev)
#define dentry_dev(d) ((d)->d_sb->s_dev)
#define inode_dev(i) ((i)->i_sb->s_dev)
#else
#define file_dev(f) file_dev_core(f)
#define dentry_dev(d) dentry_dev_core(d)
#define inode_dev(i) inode_dev_core(i)
#endif

static __always_inline struct task_struct *current_task(void)
{
#ifdef FLK_DIRECT
	return bpf_get_current_task_btf();
#else
	return (struct task_struct *)bpf_get_current_task();
#endif
}

/* bpf_rdonly_cast (6.2+) lets a typed program read an fd-table slot
 * directly; weak, so the object still loads where it is missing. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* fd_dev returns the superblock device of the file at fd in the current
 * task's fd table, or 0. The slots (struct file __rcu **) cannot be walked
 * as BTF pointers (the verifier sees a scalar), so a typed program reads a
 * slot as a struct kiocb, whose first member is a struct file *. */
static __always_inline __u32 fd_dev(struct task_struct *t, long fd)
{
	if (fd < 0)
		return 0;
#ifdef FLK_DIRECT
	if (bpf_rdonly_cast) {
		struct fdtable *fdt = t->files->fdt;
		if ((unsigned long)fd >= fdt->max_fds)
			return 0;
		struct file **slots = fdt->fd;
		struct kiocb *slot = bpf_rdonly_cast(slots + fd, bpf_core_type_id_kernel(struct kiocb));
		struct file *f = slot->ki_filp;
		if (!f)
			return 0;
		return f->f_inode->i_sb->s_dev;
	}
#endif
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if ((unsigned long)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **slots = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	bpf_probe_read_kernel(&f, sizeof(f), slots + fd);
	if (!f)
		return 0;
	return file_dev_core(f);
}

/* base_dev is the device a relative path starts on: the cwd for AT_FDCWD,
 * else the directory open at dfd. */
static __always_inline __u32 base_dev(struct task_struct *t, long dfd)
{
	if ((int)dfd == AT_FDCWD) {
#ifdef FLK_DIRECT
		return t->fs->pwd.dentry->d_sb->s_dev;
#else
		return BPF_CORE_READ(t, fs, pwd.dentry, d_sb, s_dev);
#endif
	}
	return fd_dev(t, (int)dfd);
}

#endif /* FLOCKER_NOTIFY_H */
