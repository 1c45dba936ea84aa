//go:build ignore

/* vfs.bpf.c: the `fentry` and `kprobe` tiers.
 *
 * Exit-side hooks on the kernel functions that complete a change: a write
 * (vfs_write, vfs_writev, vfs_iter_write, __kernel_write, the AIO
 * completion, copy_file_range, splice, sendfile, reflinks), a size or
 * attribute change (notify_change covers chmod, chown, utimes and every
 * truncate; vfs_fallocate; xattrs, ACLs, inode flags), a namespace change
 * (vfs_create/mkdir/mknod/symlink/link/unlink/rmdir/rename, and
 * do_filp_open for opens that create, truncate or make a tmpfile, since
 * open(O_CREAT) calls the filesystem's ->create without vfs_create) and a
 * page dirtied through a shared mapping (folio_mark_dirty). Each is judged
 * by its return value, after the change, so a snapshot taken after the
 * event's re-arm includes it. io_uring comes from its tracepoints
 * (iouring.h): its reads and writes call the filesystem directly.
 *
 * fsnotify() would be a single catch-all, and is rejected: AIO writes and
 * mmap stores never reach it, it fires for reads and opens too, and since
 * 6.9 the inline wrappers skip calling it for a superblock nobody watches
 * (fsnotify_sb_has_watchers), so a BPF hook there sees nothing unless a
 * mark exists.
 *
 * Built twice (gen.go):
 *   - fentry (FLK_DIRECT): fexit programs, arguments and return value typed
 *     by the kernel's BTF;
 *   - kprobe: the twins: a kprobe at entry stashes the object the change
 *     is to (only when it is on a target), a kretprobe judges the return
 *     value. A kretprobe the kernel missed (too many calls in flight) is a
 *     lost change: the loader raises maxactive where it can.
 * OpenZFS goes through all of these VFS functions, so no module function
 * (which fentry could reach only with module BTF) is needed.
 */
#include "notify.h"
#include "iouring.h"

/* AIO writes: IOCB_WRITE is 1<<18 since 5.16 and was 1<<6 before; 1<<6 is
 * IOCB_ATOMIC now, which also only writes set. */
#define IOCB_WRITE_ANY ((1 << 18) | (1 << 6))

#define ok_pos(r) ((long)(r) > 0)
#define ok_nonneg(r) ((long)(r) >= 0)
#define ok_zero(r) ((int)(r) == 0)
/* vfs_mkdir returns int before 6.15, a dentry or an error pointer since. */
#define ok_mkdir(r) (mkdir_returns_ptr ? !is_err((long)(r)) : (int)(r) == 0)
/* folio_mark_dirty: true when the folio was newly dirtied */
#define ok_true(r) ((__u8)(r) != 0)

#ifdef FLK_DIRECT

/* HOOK(fn, kind, arg, nret, ok): fexit on fn; the change is to argument
 * arg, a struct `kind` (file, dentry or inode); argument nret holds the
 * return value. */
#define HOOK(fn, kind, arg, nret, ok)                                    \
	SEC("fexit/" #fn)                                                \
	int fexit_##fn(__u64 *ctx)                                       \
	{                                                                \
		if (!ok(ctx[nret]) || fast_skip())                       \
			return 0;                                        \
		struct kind *obj = (void *)ctx[arg];                     \
		if (obj)                                                 \
			mark_dev(kind##_dev(obj), hook_fexit__##fn);     \
		return 0;                                                \
	}

#else /* kprobe twins */

struct stash_key {
	__u64 pid_tgid;
	__u32 hook;
	__u32 pad;
};

/* From entry to return, per task and hook. LRU: an entry whose return was
 * missed ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct stash_key);
	__type(value, __u64);
} stash SEC(".maps");

/* The kprobe context is the registers at entry (x86_64 calling convention). */
static __always_inline unsigned long parm(struct pt_regs *regs, int n)
{
	switch (n) {
	case 0:
		return regs->di;
	case 1:
		return regs->si;
	case 2:
		return regs->dx;
	case 3:
		return regs->cx;
	case 4:
		return regs->r8;
	default:
		return regs->r9;
	}
}

static __always_inline void stash_put(__u32 hook, __u64 v)
{
	struct stash_key k = {.pid_tgid = bpf_get_current_pid_tgid(), .hook = hook};
	bpf_map_update_elem(&stash, &k, &v, BPF_ANY);
}

static __always_inline bool stash_take(__u32 hook, __u64 *v)
{
	struct stash_key k = {.pid_tgid = bpf_get_current_pid_tgid(), .hook = hook};
	__u64 *p = bpf_map_lookup_elem(&stash, &k);
	if (!p)
		return false;
	*v = *p;
	bpf_map_delete_elem(&stash, &k);
	return true;
}

/* is_target: the entry-side filter. Not the dirty flag: it may be set at
 * entry and cleared before the change completes. */
static __always_inline bool is_target(__u32 dev)
{
	return dev && bpf_map_lookup_elem(&targets, &dev);
}

#define HOOK(fn, kind, arg, nret, ok)                                        \
	SEC("kprobe/" #fn)                                                   \
	int kprobe_##fn(struct pt_regs *regs)                                \
	{                                                                    \
		if (!state.active)                                           \
			return 0;                                            \
		struct kind *obj = (void *)parm(regs, arg);                  \
		if (obj && is_target(kind##_dev(obj)))                       \
			stash_put(hook_kretprobe__##fn, (__u64)obj);         \
		return 0;                                                    \
	}                                                                    \
	SEC("kretprobe/" #fn)                                                \
	int kretprobe_##fn(struct pt_regs *regs)                             \
	{                                                                    \
		__u64 obj;                                                   \
		if (!stash_take(hook_kretprobe__##fn, &obj))                 \
			return 0;                                            \
		if (ok(regs->ax))                             \
			mark_dev(kind##_dev((struct kind *)obj), hook_kretprobe__##fn); \
		return 0;                                                    \
	}

#endif

/* data */
HOOK(vfs_write, file, 0, 4, ok_pos)
HOOK(vfs_writev, file, 0, 5, ok_pos)
HOOK(vfs_iter_write, file, 0, 4, ok_pos)
HOOK(__kernel_write, file, 0, 4, ok_pos)
HOOK(vfs_copy_file_range, file, 2, 6, ok_pos)
HOOK(vfs_clone_file_range, file, 2, 6, ok_nonneg)
HOOK(do_splice, file, 2, 6, ok_pos)
HOOK(do_splice_direct, file, 2, 6, ok_pos)
/* size and attributes */
HOOK(vfs_fallocate, file, 0, 4, ok_zero)
HOOK(notify_change, dentry, 1, 4, ok_zero)
HOOK(vfs_setxattr, dentry, 1, 6, ok_zero)
HOOK(vfs_removexattr, dentry, 1, 3, ok_zero)
HOOK(vfs_set_acl, dentry, 1, 4, ok_zero)
HOOK(vfs_remove_acl, dentry, 1, 3, ok_zero)
HOOK(vfs_fileattr_set, dentry, 1, 3, ok_zero)
/* namespace */
HOOK(vfs_create, inode, 1, 5, ok_zero)
HOOK(vfs_mkdir, inode, 1, 4, ok_mkdir)
HOOK(vfs_mknod, inode, 1, 5, ok_zero)
HOOK(vfs_symlink, inode, 1, 4, ok_zero)
HOOK(vfs_link, dentry, 0, 5, ok_zero)
HOOK(vfs_unlink, dentry, 2, 4, ok_zero)
HOOK(vfs_rmdir, dentry, 2, 3, ok_zero)

/* The hooks whose object is not simply an argument. */
#ifdef FLK_DIRECT

SEC("fexit/vfs_rename")
int BPF_PROG(fexit_vfs_rename, struct renamedata *rd, int ret)
{
	if (ret == 0 && !fast_skip())
		mark_dev(dentry_dev(rd->old_dentry), hook_fexit__vfs_rename);
	return 0;
}

SEC("fexit/do_filp_open")
int BPF_PROG(fexit_do_filp_open, int dfd, struct filename *name, struct open_flags *op, struct file *ret)
{
	if (is_err((long)ret) || !ret || fast_skip())
		return 0;
	if (op->open_flag & OPEN_CHANGES)
		mark_dev(file_dev(ret), hook_fexit__do_filp_open);
	return 0;
}

/* AIO completes here (possibly in interrupt context) with res bytes. */
SEC("fexit/aio_complete_rw")
int BPF_PROG(fexit_aio_complete_rw, struct kiocb *iocb, long res)
{
	if (res <= 0 || !(iocb->ki_flags & IOCB_WRITE_ANY) || fast_skip())
		return 0;
	mark_dev(file_dev(iocb->ki_filp), hook_fexit__aio_complete_rw);
	return 0;
}

SEC("fexit/folio_mark_dirty")
int BPF_PROG(fexit_folio_mark_dirty, struct folio *folio, bool ret)
{
	if (!ret || fast_skip())
		return 0;
	/* Anonymous folios tag ->mapping in its low bits: not a file. */
	__u64 m = (__u64)BPF_CORE_READ(folio, mapping);
	if (!m || (m & 3))
		return 0;
	mark_dev(BPF_CORE_READ((struct address_space *)m, host, i_sb, s_dev), hook_fexit__folio_mark_dirty);
	return 0;
}

#else

SEC("kprobe/vfs_rename")
int kprobe_vfs_rename(struct pt_regs *regs)
{
	if (!state.active)
		return 0;
	struct dentry *d = BPF_CORE_READ((struct renamedata *)parm(regs, 0), old_dentry);
	if (is_target(dentry_dev(d)))
		stash_put(hook_kretprobe__vfs_rename, (__u64)d);
	return 0;
}

SEC("kretprobe/vfs_rename")
int kretprobe_vfs_rename(struct pt_regs *regs)
{
	__u64 d;
	if (stash_take(hook_kretprobe__vfs_rename, &d) && ok_zero(regs->ax))
		mark_dev(dentry_dev((struct dentry *)d), hook_kretprobe__vfs_rename);
	return 0;
}

/* The file is known only at return: stash that the open may change. */
SEC("kprobe/do_filp_open")
int kprobe_do_filp_open(struct pt_regs *regs)
{
	if (!state.active)
		return 0;
	if (BPF_CORE_READ((struct open_flags *)parm(regs, 2), open_flag) & OPEN_CHANGES)
		stash_put(hook_kretprobe__do_filp_open, 1);
	return 0;
}

SEC("kretprobe/do_filp_open")
int kretprobe_do_filp_open(struct pt_regs *regs)
{
	__u64 v;
	if (!stash_take(hook_kretprobe__do_filp_open, &v))
		return 0;
	struct file *f = (struct file *)regs->ax;
	if (f && !is_err((long)f))
		mark_dev(file_dev(f), hook_kretprobe__do_filp_open);
	return 0;
}

/* Already the completion: an entry probe is enough. */
SEC("kprobe/aio_complete_rw")
int kprobe_aio_complete_rw(struct pt_regs *regs)
{
	struct kiocb *iocb = (void *)parm(regs, 0);
	long res = parm(regs, 1);
	if (res <= 0 || !state.active || fast_skip() || !(BPF_CORE_READ(iocb, ki_flags) & IOCB_WRITE_ANY))
		return 0;
	mark_dev(file_dev(BPF_CORE_READ(iocb, ki_filp)), hook_kprobe__aio_complete_rw);
	return 0;
}

static __always_inline __u32 folio_dev(struct folio *folio)
{
	__u64 m = (__u64)BPF_CORE_READ(folio, mapping);
	if (!m || (m & 3))
		return 0;
	return BPF_CORE_READ((struct address_space *)m, host, i_sb, s_dev);
}

SEC("kprobe/folio_mark_dirty")
int kprobe_folio_mark_dirty(struct pt_regs *regs)
{
	if (!state.active)
		return 0;
	struct folio *folio = (void *)parm(regs, 0);
	if (is_target(folio_dev(folio)))
		stash_put(hook_kretprobe__folio_mark_dirty, (__u64)folio);
	return 0;
}

SEC("kretprobe/folio_mark_dirty")
int kretprobe_folio_mark_dirty(struct pt_regs *regs)
{
	__u64 folio;
	if (stash_take(hook_kretprobe__folio_mark_dirty, &folio) && ok_true(regs->ax))
		mark_dev(folio_dev((struct folio *)folio), hook_kretprobe__folio_mark_dirty);
	return 0;
}

#endif
