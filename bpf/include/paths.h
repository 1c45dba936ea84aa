/* paths.h: judging a path-based change by its path text (judge_path). */
#ifndef FLOCKER_PATHS_H
#define FLOCKER_PATHS_H

#include "notify.h"

/* Mountpoints, by FNV-1a hash of the whole path and of its last component,
 * each to the mask of targets mounted there (bind mounts give a target
 * several). Kept by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u64);
} mount_paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u64);
} mount_names SEC(".maps");

/* Targets mounted at "/": every absolute path is under them. */
__u64 root_mask;

/* The directories above each mountpoint, by device and inode, to the mask
 * of targets below them: a relative path can walk into a mount by name
 * only from one of these (or through ".."). Kept by the loader. */
struct dirkey {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct dirkey);
	__type(value, __u64);
} mount_ancestors SEC(".maps");

/* base_dir is the directory a relative path starts from: the cwd for
 * AT_FDCWD, else the file open at dfd. Not a hot path: helper reads. */
static __always_inline void base_dir(struct task_struct *t, long dfd, struct dirkey *k)
{
	struct inode *i;
	if ((int)dfd == AT_FDCWD) {
		i = BPF_CORE_READ(t, fs, pwd.dentry, d_inode);
	} else {
		if (dfd < 0)
			return;
		struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
		if ((unsigned long)dfd >= BPF_CORE_READ(fdt, max_fds))
			return;
		struct file **slots = BPF_CORE_READ(fdt, fd);
		struct file *f = 0;
		bpf_probe_read_kernel(&f, sizeof(f), slots + dfd);
		if (!f)
			return;
		i = BPF_CORE_READ(f, f_inode);
	}
	if (!i)
		return;
	k->ino = BPF_CORE_READ(i, i_ino);
	k->dev = BPF_CORE_READ(i, i_sb, s_dev);
}

struct scratch {
	char path[PATH_BUF];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static __always_inline __u64 lookup_mask(void *map, __u64 h)
{
	__u64 *m = bpf_map_lookup_elem(map, &h);
	return m ? *m : 0;
}

/* judge_path returns the targets a path-based call may have changed.
 *
 * The path is judged as text, without resolving it, and conservatively: a
 * false positive costs one snapshot, a false negative loses data.
 *   - relative (or empty, for AT_EMPTY_PATH): the target its base directory
 *     (dfd or cwd) is on, plus every target whose mountpoint's last
 *     component appears as a component (the path may walk into the mount
 *     through "..", or name the mountpoint itself);
 *   - absolute: every target whose mountpoint is a prefix at a component
 *     boundary; when the path holds "//", "." or ".." components the
 *     component rule above is added;
 *   - unreadable, or relative and longer than PATH_BUF: every target.
 * Blind spots (covered by the safety-net timer, documented in
 * docs/notify.md): a path through a symlink or a bind mount made after the
 * target was added, and a process in another mount namespace that sees the
 * dataset at a different absolute path.
 */
struct scan {
	struct scratch *s;
	__u64 h; /* hash of the path so far */
	__u64 ch; /* hash of the current component */
	__u64 prefix; /* mount_paths hits */
	__u64 names; /* mount_names hits */
	__u32 clen; /* length of the current component, saturated at 3 */
	bool absolute, odd, dotdot, ended;
	char c0, c1;
};

/* scan_char is the bpf_loop body over the path's bytes: with a loop the
 * verifier would walk every iteration's states, with bpf_loop it checks the
 * body once. */
static long scan_char(__u32 i, struct scan *sc)
{
	char c = sc->s->path[i & (PATH_BUF - 1)];
	if (c == '/' || c == 0) {
		if (i > 0) {
			if (sc->absolute)
				sc->prefix |= lookup_mask(&mount_paths, sc->h);
			if (sc->clen > 0)
				sc->names |= lookup_mask(&mount_names, sc->ch);
			/* "//" (not leading), "." and ".." need the name rule */
			if ((sc->clen == 0 && c == '/') || (sc->clen == 1 && sc->c0 == '.'))
				sc->odd = true;
			if (sc->clen == 2 && sc->c0 == '.' && sc->c1 == '.')
				sc->odd = sc->dotdot = true;
		}
		if (c == 0) {
			sc->ended = true;
			return 1;
		}
		sc->ch = FNV_OFFSET;
		sc->clen = 0;
	} else {
		if (sc->clen == 0)
			sc->c0 = c;
		else if (sc->clen == 1)
			sc->c1 = c;
		sc->ch = (sc->ch ^ (__u8)c) * FNV_PRIME;
		if (sc->clen < 3)
			sc->clen++;
	}
	sc->h = (sc->h ^ (__u8)c) * FNV_PRIME;
	return 0;
}

/* judge_path returns the targets a path-based call may have changed.
 *
 * The path is judged as text, without resolving it, and conservatively: a
 * false positive costs one snapshot, a false negative loses data.
 *   - relative (or empty, for AT_EMPTY_PATH): the target the base directory
 *     (dfd or cwd) is on; plus a target whose mountpoint's last component
 *     appears as a component of the path when the base directory is one of
 *     the directories above that mountpoint, or when the path climbs with
 *     "..";
 *   - absolute: every target whose mountpoint is a prefix at a component
 *     boundary; with "//", "." or ".." components, the name rule too;
 *   - unreadable, or relative and longer than PATH_BUF: every target.
 * Blind spots (covered by the safety-net timer, listed in docs/notify.md):
 * a path through a symlink, or through a bind mount made after the target
 * was added; a process in another mount namespace that sees the dataset at
 * a different absolute path.
 */
__noinline __u64 judge_path(__u64 src, long dfd, bool user)
{
	struct task_struct *t = current_task();
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return ~0ULL;
	if (!src)
		return dev_mask(base_dev(t, dfd));
	long n = read_str(s->path, (const void *)src, user);
	if (n < 0)
		return ~0ULL;
	if (n <= 1)
		return dev_mask(base_dev(t, dfd));

	struct scan sc = {
		.s = s,
		.h = FNV_OFFSET,
		.ch = FNV_OFFSET,
		.absolute = s->path[0] == '/',
	};
	bpf_loop(PATH_BUF, scan_char, &sc, 0);
	if (sc.absolute) {
		__u64 mask = sc.prefix | root_mask;
		if (sc.odd)
			mask |= sc.names;
		return mask;
	}
	if (!sc.ended)
		return ~0ULL;
	struct dirkey k = {};
	base_dir(t, dfd, &k);
	__u64 mask = dev_mask(k.dev);
	if (sc.names && sc.dotdot) {
		mask |= sc.names;
	} else if (sc.names) {
		__u64 *above = bpf_map_lookup_elem(&mount_ancestors, &k);
		if (above)
			mask |= sc.names & *above;
	}
	return mask;
}

#endif /* FLOCKER_PATHS_H */
