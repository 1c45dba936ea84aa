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

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#endif /* FLOCKER_BPF_H */
