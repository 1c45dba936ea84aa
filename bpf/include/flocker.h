/* flocker.h: the small set of kernel definitions flocker's BPF programs need.
 *
 * Hand-written instead of a generated vmlinux.h (several MB): integer types,
 * the BPF constants the programs use, and kernel structs declared with
 * preserve_access_index so CO-RE relocates every field access against the
 * running kernel's BTF at load time. Declare only the fields a program reads;
 * their order and the struct's size do not matter under CO-RE.
 */
#ifndef FLOCKER_BPF_H
#define FLOCKER_BPF_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef signed short __s16;
typedef unsigned int __u32;
typedef signed int __s32;
typedef unsigned long long __u64;
typedef signed long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

typedef __u8 u8;
typedef __u32 u32;
typedef __u64 u64;

/* Map types and update flags (include/uapi/linux/bpf.h); only the ones used. */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

/* Map flags (include/uapi/linux/bpf.h). */
enum {
	BPF_F_NO_PREALLOC = 1U << 0,
	BPF_F_MMAPABLE = 1U << 10,
};

enum {
	BPF_MAP_TYPE_LRU_HASH = 9,
};

/* Kernel types read by the notifier programs. Every struct carries
 * preserve_access_index, so only the fields named here matter and CO-RE
 * finds them in the running kernel whatever their offsets. */
typedef __u32 dev_t;
typedef long long loff_t;
typedef _Bool bool;
#define true 1
#define false 0

struct pt_regs {
	unsigned long di, si, dx, cx, r8, r9, r10, ax, orig_ax, ip, sp, bp;
} __attribute__((preserve_access_index));

struct super_block {
	dev_t s_dev;
} __attribute__((preserve_access_index));

struct inode {
	struct super_block *i_sb;
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
	unsigned int f_mode;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct dentry {
	struct super_block *d_sb;
	struct inode *d_inode;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct super_block *mnt_sb;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path pwd;
} __attribute__((preserve_access_index));

struct thread_info {
	__u32 status;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_info thread_info;
	struct files_struct *files;
	struct fs_struct *fs;
} __attribute__((preserve_access_index));

/* Its first member is a struct file *: the fd table's slots are read
 * through it (see fd_file in notify.h). */
struct kiocb {
	struct file *ki_filp;
	int ki_flags;
} __attribute__((preserve_access_index));

struct filename {
	const char *name;
} __attribute__((preserve_access_index));

struct address_space {
	struct inode *host;
} __attribute__((preserve_access_index));

struct folio {
	struct address_space *mapping;
} __attribute__((preserve_access_index));

struct block_device {
	dev_t bd_dev;
} __attribute__((preserve_access_index));

struct bio {
	struct block_device *bi_bdev;
	unsigned int bi_opf;
} __attribute__((preserve_access_index));

/* io_uring: the request's first 64 bytes hold the opcode's own struct,
 * whose first member is always the request's file. */
struct io_kiocb {
	struct file *file;
	__u8 opcode;
} __attribute__((preserve_access_index));

struct io_uring_cqe {
	__s32 res;
} __attribute__((preserve_access_index));

struct open_how {
	__u64 flags;
} __attribute__((preserve_access_index));

struct io_open {
	int dfd;
	struct filename *filename;
	struct open_how how;
} __attribute__((preserve_access_index));

struct io_rename {
	int old_dfd;
	int new_dfd;
	struct filename *oldpath;
	struct filename *newpath;
} __attribute__((preserve_access_index));

struct io_unlink {
	int dfd;
	struct filename *filename;
} __attribute__((preserve_access_index));

struct io_mkdir {
	int dfd;
	struct filename *filename;
} __attribute__((preserve_access_index));

/* symlinkat uses it too: newpath is the link, oldpath its target text. */
struct io_link {
	int old_dfd;
	int new_dfd;
	struct filename *oldpath;
	struct filename *newpath;
} __attribute__((preserve_access_index));

struct io_xattr {
	struct filename *filename;
} __attribute__((preserve_access_index));

struct renamedata {
	struct dentry *old_dentry;
} __attribute__((preserve_access_index));

struct open_flags {
	int open_flag;
} __attribute__((preserve_access_index));

/* Classic tracepoint records of raw_syscalls. */
struct trace_event_raw_sys_enter {
	long id;
	unsigned long args[6];
} __attribute__((preserve_access_index));

struct trace_event_raw_sys_exit {
	long id;
	long ret;
} __attribute__((preserve_access_index));

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#endif /* FLOCKER_BPF_H */
