//go:build ignore

/* block.bpf.c: the `block` tier.
 *
 * A write request to a block device is a pool-level signal: the targets map
 * holds each of a pool's vdev devices (dev_t of the partition or disk,
 * major<<20|minor), all with the pool's id. It sees writers that make no
 * system call of their own (nfsd, ksmbd, loop devices), but only when ZFS
 * writes the pool: at the next transaction group sync, seconds later, and
 * for any dataset of the pool (or for ZFS's own bookkeeping, such as atime
 * or a snapshot), so userspace confirms per dataset before reporting.
 */
#include "notify.h"

#define REQ_OP_MASK 0xff

/* block_bio_queue(bio): a bio submitted to a device; bi_bdev is the
 * partition it was submitted to. Write ops are the odd ones (op_is_write). */
SEC("tp_btf/block_bio_queue")
int BPF_PROG(block_bio_queue, struct bio *bio)
{
	if (!((bio->bi_opf & REQ_OP_MASK) & 1) || fast_skip())
		return 0;
	mark_dev(bio->bi_bdev->bd_dev, hook_block_bio_queue);
	return 0;
}
