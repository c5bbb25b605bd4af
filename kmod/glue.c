// SPDX-License-Identifier: GPL-2.0
/*
 * vexfs C glue: the VFS operation tables, pointing at Rust functions (glue.h), and small
 * wrappers for kernel helpers that are `static inline` or macros and so invisible to Rust.
 * No format decision is made here: every on-disk byte is read and written by Rust code.
 */
#include <linux/blkdev.h>
#include <linux/buffer_head.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/fs_parser.h>
#include <linux/module.h>
#include <linux/mpage.h>
#include <linux/pagemap.h>
#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <linux/slab.h>
#include <linux/sched/mm.h>
#include <linux/seq_file.h>
#include <linux/statfs.h>
#include <linux/writeback.h>
#include <linux/mount.h>
#include <linux/xattr.h>
#include "glue.h"
#include "../include/vexfs.h"

static struct kmem_cache *vexfs_inode_cachep;

static inline struct vexfs_inode_info *VI(struct inode *inode)
{
	return container_of(inode, struct vexfs_inode_info, vfs_inode);
}

/* ---- wrappers called from Rust ---------------------------------------------------------- */

u64 *vexfs_c_inode_rs(struct inode *inode) { return VI(inode)->rs; }

/*
 * Buffer state bit: the block's header checksum was verified since the block was last read
 * from the disk, and vexfs has sealed every change since (kmod/buf.rs; ext4's BH_Verified).
 * Cleared whenever the buffer's contents come from the disk again, or from nowhere.
 */
#define BH_VexfsVerified (BH_PrivateStart + 1)
/* And the block passed its kind's whole check since (an extent node's entries: Csum::Checked,
 * core/src/format/block.rs), as ext4 skips ext4_ext_check on a verified buffer. */
#define BH_VexfsChecked (BH_PrivateStart + 2)

static void vexfs_bh_unverify(struct buffer_head *bh)
{
	clear_bit(BH_VexfsVerified, &bh->b_state);
	clear_bit(BH_VexfsChecked, &bh->b_state);
}

/* sb_bread, clearing the verified bit when the block is read from the disk (a readahead
 * clears it when it starts the read); *read set when this call had to read the block (neither
 * up to date in the cache nor being read ahead): the index cache's block-read count
 * (kmod/pins.rs), which counts the readaheads it starts itself. */
struct buffer_head *vexfs_c_bread_counted(struct super_block *sb, u64 block, bool *read)
{
	struct buffer_head *bh = sb_getblk(sb, block);

	*read = false;
	if (!bh || buffer_uptodate(bh))
		return bh;
	/* A readahead in flight: its read is counted already. */
	wait_on_buffer(bh);
	if (buffer_uptodate(bh))
		return bh;
	*read = true;
	vexfs_bh_unverify(bh);
	if (bh_read(bh, 0) < 0) {
		brelse(bh);
		return NULL;
	}
	return bh;
}

/* vexfs_c_bread_counted without the count. */
struct buffer_head *vexfs_c_bread(struct super_block *sb, u64 block)
{
	bool read;

	return vexfs_c_bread_counted(sb, block, &read);
}

/* Starts reading `block` into the cache unless it is there (not waited for); true when a
 * read was started: the index cache reads the blocks of a node's neighbours ahead. */
bool vexfs_c_block_readahead(struct super_block *sb, u64 block)
{
	struct buffer_head *bh = sb_getblk(sb, block);
	bool started = false;

	if (!bh)
		return false;
	if (!buffer_uptodate(bh) && !buffer_locked(bh)) {
		vexfs_bh_unverify(bh);
		bh_readahead(bh, REQ_RAHEAD | REQ_META);
		started = true;
	}
	brelse(bh);
	return started;
}

/* Drops `block` from the device's page cache if nothing else holds it (clean, unlocked,
 * unreferenced: invalidate_mapping_pages skips the others): the index cache gives back a
 * block it evicts under an index_mem= budget, so that the index's memory stays within it. */
void vexfs_c_drop_cached(struct super_block *sb, u64 block)
{
	pgoff_t index = block >> (PAGE_SHIFT - sb->s_blocksize_bits);

	invalidate_mapping_pages(sb->s_bdev->bd_mapping, index, index);
}

/*
 * vexfs_c_bread of `block`; when the block has to come from the disk, the blocks after it up to
 * `ra_end` (at most VEXFS_RA_BLOCKS) are read ahead in the same plug, without waiting for them:
 * the inode table (ext4 reads its inode tables ahead the same way, __ext4_get_inode_loc).
 */
#define VEXFS_RA_BLOCKS 32
struct buffer_head *vexfs_c_bread_ahead(struct super_block *sb, u64 block, u64 ra_end)
{
	struct buffer_head *bh = sb_getblk(sb, block);
	struct blk_plug plug;
	u64 b;

	if (!bh || buffer_uptodate(bh))
		return bh;
	blk_start_plug(&plug);
	vexfs_bh_unverify(bh);
	bh_read_nowait(bh, REQ_META | REQ_PRIO);
	for (b = block + 1; b < ra_end && b <= block + VEXFS_RA_BLOCKS; b++) {
		struct buffer_head *ra = sb_getblk(sb, b);

		if (!ra)
			break;
		if (!buffer_uptodate(ra)) {
			vexfs_bh_unverify(ra);
			bh_readahead(ra, REQ_RAHEAD | REQ_META);
		}
		brelse(ra);
	}
	blk_finish_plug(&plug);
	wait_on_buffer(bh);
	if (!buffer_uptodate(bh)) {
		brelse(bh);
		return NULL;
	}
	return bh;
}

void vexfs_c_brelse(struct buffer_head *bh) { brelse(bh); }
void vexfs_c_bforget(struct buffer_head *bh)
{
	vexfs_bh_unverify(bh);
	bforget(bh);
}
bool vexfs_c_bh_verified(struct buffer_head *bh) { return test_bit(BH_VexfsVerified, &bh->b_state); }
void vexfs_c_bh_set_verified(struct buffer_head *bh) { set_bit(BH_VexfsVerified, &bh->b_state); }
bool vexfs_c_bh_checked(struct buffer_head *bh) { return test_bit(BH_VexfsChecked, &bh->b_state); }
void vexfs_c_bh_set_checked(struct buffer_head *bh) { set_bit(BH_VexfsChecked, &bh->b_state); }
u8 *vexfs_c_bh_data(struct buffer_head *bh) { return bh->b_data; }
u64 vexfs_c_bh_blocknr(struct buffer_head *bh) { return bh->b_blocknr; }
void vexfs_c_get_bh(struct buffer_head *bh) { get_bh(bh); }

/* ---- the journal's buffer and device operations (kmod/txn.rs) ----------------------------- */

/* Buffer state bit: the buffer is in the running transaction (kmod/txn.rs). */
#define BH_VexfsTxn BH_PrivateStart
bool vexfs_c_bh_txn_test_set(struct buffer_head *bh) { return test_and_set_bit(BH_VexfsTxn, &bh->b_state); }
void vexfs_c_bh_txn_clear(struct buffer_head *bh) { clear_bit(BH_VexfsTxn, &bh->b_state); }

/* Starts writing a buffer (REQ_SYNC); vexfs_c_wait_bh waits for it. */
void vexfs_c_write_bh(struct buffer_head *bh)
{
	mark_buffer_dirty(bh);
	write_dirty_buffer(bh, REQ_SYNC);
}

/* Waits for a write started by vexfs_c_write_bh: 0, or -EIO if it failed. */
int vexfs_c_wait_bh(struct buffer_head *bh)
{
	wait_on_buffer(bh);
	return buffer_uptodate(bh) && !buffer_write_io_error(bh) ? 0 : -EIO;
}

/* Writes a buffer after flushing the device's cache, with FUA: durable when this returns. */
int vexfs_c_write_bh_fua(struct buffer_head *bh)
{
	mark_buffer_dirty(bh);
	return __sync_dirty_buffer(bh, REQ_SYNC | REQ_PREFLUSH | REQ_FUA);
}

/* Writes every dirty buffer of the device's cache, waits, then flushes the device's cache. */
int vexfs_c_sync_dev(struct super_block *sb)
{
	int err = sync_blockdev(sb->s_bdev);

	if (err)
		return err;
	return blkdev_issue_flush(sb->s_bdev);
}

/* The device's write-error sequence now (errseq), for vexfs_c_dev_err_since. */
u32 vexfs_c_dev_err_sample(struct super_block *sb)
{
	return errseq_sample(&sb->s_bdev->bd_mapping->wb_err);
}

/* The error of any write of the device's page cache that failed since *since (0 if none), and
 * *since moved to now. A write error consumed by someone else (a syncfs that reported it) is
 * still seen here: a checkpoint must not free the log of a block that never reached home. */
int vexfs_c_dev_err_since(struct super_block *sb, u32 *since)
{
	return errseq_check_and_advance(&sb->s_bdev->bd_mapping->wb_err, since);
}

void *vexfs_c_journal_info(void) { return current->journal_info; }

/* The journal aborted: the filesystem becomes read-only (as ext4 does on a journal abort). */
void vexfs_c_force_rdonly(struct super_block *sb)
{
	sb->s_flags |= SB_RDONLY;
	/* syncfs on a read-only superblock skips sync_fs and returns this error, not 0: what
	 * the running transaction held is lost, and callers of syncfs must hear it. */
	errseq_set(&sb->s_wb_err, -EIO);
}

/* errors=panic (kmod/errors.rs): corruption found, the machine stops. */
void vexfs_c_panic(struct super_block *sb)
{
	panic("vexfs (%s): panic forced after an error (errors=panic)\n", sb->s_id);
}

/* ---- per-mount C state: the commit ticker and ordered data (glue.h) ----------------------- */

static void vexfs_tick(struct work_struct *w)
{
	struct vexfs_mount *m = container_of(to_delayed_work(w), struct vexfs_mount, tick);

	vexfs_rs_tick(m->sb);
	queue_delayed_work(system_long_wq, &m->tick, m->period);
}

/* The index worker: Rust links pending vectors until none is left or the worker is stopped. */
static void vexfs_index_work(struct work_struct *w)
{
	struct vexfs_mount *m = container_of(to_delayed_work(w), struct vexfs_mount, index_work);

	vexfs_rs_index_work(m->sb);
}

struct vexfs_mount *vexfs_c_mount_new(struct super_block *sb)
{
	struct vexfs_mount *m = kzalloc(sizeof(*m), GFP_KERNEL);

	if (!m)
		return NULL;
	m->sb = sb;
	INIT_DELAYED_WORK(&m->tick, vexfs_tick);
	INIT_DELAYED_WORK(&m->index_work, vexfs_index_work);
	spin_lock_init(&m->lock);
	INIT_LIST_HEAD(&m->ordered);
	INIT_LIST_HEAD(&m->flushed);
	return m;
}

void vexfs_c_ticker_start(struct vexfs_mount *m, unsigned int secs)
{
	m->period = secs * HZ;
	m->ticking = true;
	queue_delayed_work(system_long_wq, &m->tick, m->period);
}

/* Stops the ticker; a tick in progress is waited for (cancel_delayed_work_sync handles a work
 * that queues itself again). */
void vexfs_c_ticker_stop(struct vexfs_mount *m)
{
	if (m->ticking)
		cancel_delayed_work_sync(&m->tick);
	m->ticking = false;
}

/* The index worker may run (a read-write mount, once its state is built). */
void vexfs_c_index_start(struct vexfs_mount *m)
{
	WRITE_ONCE(m->indexing, true);
}

/* Pending vectors were added: run the worker delay_ms from now (on the unbound workqueue: it
 * may run for long, rescheduling between vectors). A kick moves a run not started yet to the
 * new time: a stream of SETs keeps pushing it back until the stream pauses (Rust passes 0
 * once enough vectors are pending). */
void vexfs_c_index_kick(struct vexfs_mount *m, unsigned int delay_ms)
{
	if (READ_ONCE(m->indexing))
		mod_delayed_work(system_unbound_wq, &m->index_work, msecs_to_jiffies(delay_ms));
}

/* Whether the worker should go on (not stopped by unmount). */
bool vexfs_c_index_running(struct vexfs_mount *m)
{
	return READ_ONCE(m->indexing);
}

/*
 * The index cache's shrinker (kmod/pins.rs): under memory pressure the blocks the index keeps
 * referenced are given back, least recently used first (a clock), so that their pages become
 * reclaimable like any page-cache page. Registered once the mount's state exists, freed
 * (waiting for a scan in progress) before it goes.
 */
static unsigned long vexfs_index_count(struct shrinker *s, struct shrink_control *sc)
{
	struct vexfs_mount *m = s->private_data;
	unsigned long n = vexfs_rs_index_cached(m->sb);

	return n ? n : SHRINK_EMPTY;
}

static unsigned long vexfs_index_scan(struct shrinker *s, struct shrink_control *sc)
{
	struct vexfs_mount *m = s->private_data;

	return vexfs_rs_index_shrink(m->sb, sc->nr_to_scan);
}

int vexfs_c_shrinker_start(struct vexfs_mount *m)
{
	struct shrinker *s = shrinker_alloc(0, "vexfs-index:%s", m->sb->s_id);

	if (!s)
		return -ENOMEM;
	s->count_objects = vexfs_index_count;
	s->scan_objects = vexfs_index_scan;
	s->seeks = DEFAULT_SEEKS;
	s->private_data = m;
	m->shrinker = s;
	shrinker_register(s);
	return 0;
}

void vexfs_c_shrinker_stop(struct vexfs_mount *m)
{
	if (m->shrinker)
		shrinker_free(m->shrinker);
	m->shrinker = NULL;
}

/* Stops the worker and waits for a run in progress (at unmount, before the journal's last
 * commit; nothing kicks it then: no file of the mount is open). */
void vexfs_c_index_stop(struct vexfs_mount *m)
{
	WRITE_ONCE(m->indexing, false);
	cancel_delayed_work_sync(&m->index_work);
}

/* init_rwsem for kmod/vfs/rwsem.rs (the kernel crate of 6.12 does not wrap rw_semaphore, and
 * its lock class keys are crate-private): one lock class, that of the index lock. */
static struct lock_class_key vexfs_index_key;

void vexfs_c_init_rwsem(struct rw_semaphore *sem)
{
	__init_rwsem(sem, "vexfs::SbInfo::index", &vexfs_index_key);
}

/* CPUs online now: how many search pads a mount keeps at most (kmod/index.rs). */
unsigned int vexfs_c_online_cpus(void)
{
	return num_online_cpus();
}

/* Between the steps of a long loop: reschedule, and stop on a fatal signal. */
int vexfs_c_relax(void)
{
	cond_resched();
	return fatal_signal_pending(current) ? -EINTR : 0;
}

/* The inode got a new data block in the running transaction: put it on the ordered list once,
 * with a reference (the caller holds one, so ihold is safe). */
void vexfs_c_ordered_add(struct vexfs_mount *m, struct inode *inode)
{
	struct vexfs_inode_info *vi = VI(inode);

	spin_lock(&m->lock);
	if (list_empty(&vi->ordered)) {
		ihold(inode);
		vi->ordered_since = errseq_sample(&inode->i_mapping->wb_err);
		list_add_tail(&vi->ordered, &m->ordered);
	}
	spin_unlock(&m->lock);
}

/* Before a commit holds the handles off: writes and waits for the data of the inodes on the
 * ordered list while operations go on, so that vexfs_c_ordered_flush, which runs with every
 * handle held off, writes only what was dirtied since (as jbd2 does not stop handles for the
 * data of the transaction it commits). The inodes stay on the list; errors stay in their
 * mappings' wb_err for vexfs_c_ordered_flush to report. Only the commit calls it (under the
 * journal's commit lock), so no flush runs at the same time. */
void vexfs_c_ordered_preflush(struct vexfs_mount *m)
{
	struct vexfs_inode_info *vi;
	LIST_HEAD(batch);

	spin_lock(&m->lock);
	list_splice_init(&m->ordered, &batch);
	spin_unlock(&m->lock);
	/* Off the list meanwhile, but not empty: vexfs_c_ordered_add leaves them be. */
	list_for_each_entry(vi, &batch, ordered)
		filemap_fdatawrite(vi->vfs_inode.i_mapping);
	list_for_each_entry(vi, &batch, ordered)
		filemap_fdatawait_keep_errors(vi->vfs_inode.i_mapping);
	spin_lock(&m->lock);
	list_splice(&batch, &m->ordered);
	spin_unlock(&m->lock);
}

/* In a commit, with no handle open: writes and waits for the data of every inode on the
 * ordered list, which moves to the flushed list (references kept until vexfs_c_ordered_put).
 * Returns the first write error. */
int vexfs_c_ordered_flush(struct vexfs_mount *m)
{
	struct vexfs_inode_info *vi;
	LIST_HEAD(batch);
	int err = 0, e;

	spin_lock(&m->lock);
	list_splice_init(&m->ordered, &batch);
	spin_unlock(&m->lock);
	list_for_each_entry(vi, &batch, ordered) {
		e = filemap_fdatawrite(vi->vfs_inode.i_mapping);
		if (e && !err)
			err = e;
	}
	list_for_each_entry(vi, &batch, ordered) {
		e = filemap_fdatawait_keep_errors(vi->vfs_inode.i_mapping);
		if (!e)
			e = errseq_check(&vi->vfs_inode.i_mapping->wb_err, vi->ordered_since);
		if (e && !err)
			err = e;
	}
	spin_lock(&m->lock);
	list_splice_tail_init(&batch, &m->flushed);
	spin_unlock(&m->lock);
	return err;
}

/* After a commit (no lock of the journal held: a last iput may evict): drops the references
 * of the flushed inodes. */
void vexfs_c_ordered_put(struct vexfs_mount *m)
{
	struct vexfs_inode_info *vi;

	spin_lock(&m->lock);
	while (!list_empty(&m->flushed)) {
		vi = list_first_entry(&m->flushed, struct vexfs_inode_info, ordered);
		list_del_init(&vi->ordered);
		spin_unlock(&m->lock);
		iput(&vi->vfs_inode);
		spin_lock(&m->lock);
	}
	spin_unlock(&m->lock);
}

/* At unmount (put_super, the mount's state still whole), once no commit will run: drops the
 * references of every inode on the lists, flushed or not (a failed commit or an aborted journal
 * leaves some). The last reference of an unlinked inode evicts it here. */
void vexfs_c_ordered_discard(struct vexfs_mount *m)
{
	spin_lock(&m->lock);
	list_splice_tail_init(&m->ordered, &m->flushed);
	spin_unlock(&m->lock);
	vexfs_c_ordered_put(m);
}

/* Frees the C state. The lists are empty by now (put_super discarded them; a failed
 * fill_super never put an inode on them): an iput here could evict an inode after the Rust
 * state of the mount is gone, so none is done. */
void vexfs_c_mount_free(struct vexfs_mount *m)
{
	if (!m)
		return;
	vexfs_c_shrinker_stop(m);
	vexfs_c_ticker_stop(m);
	vexfs_c_index_stop(m);
	WARN_ON_ONCE(!list_empty(&m->ordered) || !list_empty(&m->flushed));
	kfree(m);
}

/*
 * A journal handle (kmod/txn.rs): an operation that changes metadata runs inside one, so that
 * a commit never takes half of it. Handles nest (current->journal_info says whether this task
 * is inside one of this filesystem's); the outermost one waits while a commit is copying the
 * running transaction, and makes allocations GFP_NOFS until it ends.
 */
int vexfs_c_handle_start(struct super_block *sb, struct vexfs_handle *h, unsigned int kind)
{
	void *j = vexfs_rs_journal(sb);
	int err;

	h->outer = current->journal_info != j;
	if (!h->outer)
		return 0;
	err = vexfs_rs_handle_begin(sb, kind, &h->credits);
	if (err)
		return err;
	h->prev = current->journal_info;
	current->journal_info = j;
	h->nofs = memalloc_nofs_save();
	return 0;
}

void vexfs_c_handle_stop(struct super_block *sb, struct vexfs_handle *h)
{
	if (!h->outer)
		return;
	memalloc_nofs_restore(h->nofs);
	current->journal_info = h->prev;
	vexfs_rs_handle_end(sb, h->credits);
}
u64 vexfs_c_dev_bytes(struct super_block *sb) { return bdev_nr_bytes(sb->s_bdev); }
int vexfs_c_rdonly(struct super_block *sb) { return sb_rdonly(sb); }
loff_t vexfs_c_i_size(struct inode *inode) { return i_size_read(inode); }
void vexfs_c_set_i_size(struct inode *inode, loff_t size) { i_size_write(inode, size); }
void vexfs_c_mark_inode_dirty(struct inode *inode) { mark_inode_dirty(inode); }
u32 vexfs_c_uid(struct inode *inode) { return i_uid_read(inode); }
u32 vexfs_c_gid(struct inode *inode) { return i_gid_read(inode); }
void vexfs_c_set_owner(struct inode *inode, u32 uid, u32 gid)
{
	i_uid_write(inode, uid);
	i_gid_write(inode, gid);
}
void vexfs_c_init_owner(struct inode *inode, struct inode *dir, umode_t mode)
{
	inode_init_owner(&nop_mnt_idmap, inode, dir, mode);
}

/* A zeroed, up-to-date buffer for a block just allocated: no read from the disk. */
struct buffer_head *vexfs_c_bnew(struct super_block *sb, u64 block)
{
	struct buffer_head *bh = sb_getblk(sb, block);

	if (!bh)
		return NULL;
	lock_buffer(bh);
	vexfs_bh_unverify(bh);
	memset(bh->b_data, 0, bh->b_size);
	set_buffer_uptodate(bh);
	unlock_buffer(bh);
	return bh;
}

/* Schedules a metadata buffer for writeback (the journal does, once it is committed). */
void vexfs_c_mark_dirty(struct buffer_head *bh) { mark_buffer_dirty(bh); }

bool vexfs_c_emit(struct dir_context *ctx, const u8 *name, u32 len, u64 ino, u32 type)
{
	return dir_emit(ctx, name, len, ino, type);
}
s64 vexfs_c_ctx_pos(struct dir_context *ctx) { return ctx->pos; }
void vexfs_c_set_ctx_pos(struct dir_context *ctx, s64 pos) { ctx->pos = pos; }
u32 vexfs_c_nlink(struct inode *inode) { return inode->i_nlink; }
bool vexfs_c_is_new(struct inode *inode) { return inode->i_state & I_NEW; }
unsigned int vexfs_c_nofs_save(void) { return memalloc_nofs_save(); }
void vexfs_c_nofs_restore(unsigned int flags) { memalloc_nofs_restore(flags); }

void vexfs_c_times_now(struct inode *inode)
{
	struct timespec64 now = current_time(inode);

	inode_set_atime_to_ts(inode, now);
	inode_set_mtime_to_ts(inode, now);
	inode_set_ctime_to_ts(inode, now);
}

/* A directory changed: new mtime and ctime, to be written back. */
void vexfs_c_touch_dir(struct inode *dir)
{
	inode_set_mtime_to_ts(dir, inode_set_ctime_current(dir));
	mark_inode_dirty(dir);
}

static const struct inode_operations vexfs_dir_iops;
static const struct inode_operations vexfs_file_iops;
static const struct inode_operations vexfs_special_iops;
static const struct file_operations vexfs_dir_fops;
static const struct file_operations vexfs_file_fops;
static const struct address_space_operations vexfs_aops;

/* Point a new or freshly read inode at the operation tables of its type. */
void vexfs_c_set_ops(struct inode *inode)
{
	switch (inode->i_mode & S_IFMT) {
	case S_IFDIR:
		inode->i_op = &vexfs_dir_iops;
		inode->i_fop = &vexfs_dir_fops;
		break;
	case S_IFLNK:
		inode->i_op = &page_symlink_inode_operations;
		inode_nohighmem(inode);
		inode->i_mapping->a_ops = &vexfs_aops;
		break;
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
	case S_IFSOCK:
		inode->i_op = &vexfs_special_iops;
		init_special_inode(inode, inode->i_mode, inode->i_rdev);
		break;
	default:
		inode->i_op = &vexfs_file_iops;
		inode->i_fop = &vexfs_file_fops;
		inode->i_mapping->a_ops = &vexfs_aops;
		break;
	}
}

/* Runs `call` (an int expression) inside a journal handle of `sb`; its value, or the
 * handle's error. An I/O error or corruption met half way aborts the journal (Rust decides:
 * kmod/txn.rs `failed`), so that half an operation is never committed. */
#define VEXFS_IN_HANDLE(sb, kind, call)                         \
	({                                                      \
		struct vexfs_handle __h;                        \
		int __err = vexfs_c_handle_start((sb), &__h, (kind)); \
		if (!__err) {                                   \
			__err = (call);                         \
			if (__err == -EIO || __err == -EUCLEAN) \
				vexfs_rs_handle_failed((sb), __err); \
			vexfs_c_handle_stop((sb), &__h);        \
		}                                               \
		__err;                                          \
	})

/* ---- address space: file data through the page cache and buffer heads ------------------- */

static int vexfs_get_block(struct inode *inode, sector_t iblock, struct buffer_head *bh, int create)
{
	u64 phys = 0, count = 0;
	int is_new = 0;
	u64 max = bh->b_size >> inode->i_blkbits;
	int err;

	err = vexfs_rs_get_block(inode, iblock, create, max ? max : 1, &phys, &count, &is_new);
	if (err)
		return err;
	if (!count)
		return 0; /* a hole, and create was 0 */
	map_bh(bh, inode->i_sb, phys);
	bh->b_size = count << inode->i_blkbits;
	if (is_new)
		set_buffer_new(bh);
	return 0;
}

static int vexfs_read_folio(struct file *file, struct folio *folio)
{
	return block_read_full_folio(folio, vexfs_get_block);
}

static void vexfs_readahead(struct readahead_control *rac)
{
	mpage_readahead(rac, vexfs_get_block);
}

static int vexfs_writepages(struct address_space *mapping, struct writeback_control *wbc)
{
	return mpage_writepages(mapping, wbc, vexfs_get_block);
}

static void vexfs_write_failed(struct address_space *mapping, loff_t to)
{
	struct inode *inode = mapping->host;

	if (to > inode->i_size) {
		truncate_pagecache(inode, inode->i_size);
		/* A failure is logged and aborts the journal; the write's own error is returned. */
		(void)vexfs_rs_truncate_blocks(inode);
	}
}

/*
 * A buffered write holds one handle from write_begin to write_end, taken before the page lock
 * and ended after it is released: a commit, which waits for handles, then never waits for a
 * task that holds a page lock, and may write ordered data itself. The handle's saved state
 * travels in fsdata.
 */
static int vexfs_write_begin(struct file *file, struct address_space *mapping, loff_t pos,
			     unsigned int len, struct folio **foliop, void **fsdata)
{
	struct super_block *sb = mapping->host->i_sb;
	struct vexfs_handle *h = kmalloc(sizeof(*h), GFP_NOFS);
	u32 retries = 0;
	int ret;

	if (!h)
		return -ENOMEM;
retry:
	ret = vexfs_c_handle_start(sb, h, VEXFS_TXN_SMALL);
	if (ret) {
		kfree(h);
		return ret;
	}
	ret = block_write_begin(mapping, pos, len, foliop, vexfs_get_block);
	if (unlikely(ret)) {
		if (ret == -EIO || ret == -EUCLEAN)
			vexfs_rs_handle_failed(sb, ret);
		vexfs_write_failed(mapping, pos + len);
		vexfs_c_handle_stop(sb, h);
		/* Blocks freed since the last checkpoint may be all that is missing. */
		if (ret == -ENOSPC && vexfs_rs_retry_alloc(sb, &retries))
			goto retry;
		kfree(h);
		return ret;
	}
	*fsdata = h;
	return 0;
}

static int vexfs_write_end(struct file *file, struct address_space *mapping, loff_t pos,
			   unsigned int len, unsigned int copied, struct folio *folio, void *fsdata)
{
	struct vexfs_handle *h = fsdata;
	int ret = generic_write_end(file, mapping, pos, len, copied, folio, fsdata);

	vexfs_c_handle_stop(mapping->host->i_sb, h);
	kfree(h);
	return ret;
}

/* A shared mapping's page becomes writable: its blocks are allocated now, in a handle taken
 * before the page lock, so writeback never allocates and ENOSPC reaches the program. */
static vm_fault_t vexfs_page_mkwrite(struct vm_fault *vmf)
{
	struct inode *inode = file_inode(vmf->vma->vm_file);
	struct vexfs_handle h;
	u32 retries = 0;
	vm_fault_t ret;
	int err;

	sb_start_pagefault(inode->i_sb);
	file_update_time(vmf->vma->vm_file);
retry:
	err = vexfs_c_handle_start(inode->i_sb, &h, VEXFS_TXN_SMALL);
	if (err) {
		ret = vmf_fs_error(err);
		goto out;
	}
	err = block_page_mkwrite(vmf->vma, vmf, vexfs_get_block);
	if (err == -EIO || err == -EUCLEAN)
		vexfs_rs_handle_failed(inode->i_sb, err);
	ret = vmf_fs_error(err);
	vexfs_c_handle_stop(inode->i_sb, &h);
	if (err == -ENOSPC && vexfs_rs_retry_alloc(inode->i_sb, &retries))
		goto retry;
out:
	sb_end_pagefault(inode->i_sb);
	return ret;
}

static const struct vm_operations_struct vexfs_vm_ops = {
	.fault = filemap_fault,
	.map_pages = filemap_map_pages,
	.page_mkwrite = vexfs_page_mkwrite,
};

static int vexfs_mmap(struct file *file, struct vm_area_struct *vma)
{
	file_accessed(file);
	vma->vm_ops = &vexfs_vm_ops;
	return 0;
}

static sector_t vexfs_bmap(struct address_space *mapping, sector_t block)
{
	return generic_block_bmap(mapping, block, vexfs_get_block);
}

static const struct address_space_operations vexfs_aops = {
	.dirty_folio = block_dirty_folio,
	.invalidate_folio = block_invalidate_folio,
	.read_folio = vexfs_read_folio,
	.readahead = vexfs_readahead,
	.writepages = vexfs_writepages,
	.write_begin = vexfs_write_begin,
	.write_end = vexfs_write_end,
	.migrate_folio = buffer_migrate_folio,
	.bmap = vexfs_bmap,
	.is_partially_uptodate = block_is_partially_uptodate,
	.error_remove_folio = generic_error_remove_folio,
};

/* ---- ioctls (include/vexfs.h) and the embedding xattr ------------------------------------ */

/* SET and REMOVE change the file: they need it open for writing, a writable mount, and the
 * inode lock (which also orders them against the xattr path). GET needs it open for reading;
 * SEARCH returns only files the caller may read (kmod/ioctl.rs). */
static long vexfs_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct inode *inode = file_inode(file);
	long ret;

	if (_IOC_TYPE(cmd) != VEXFS_IOCTL_MAGIC)
		return -ENOTTY;
	if (cmd == VEXFS_IOC_SET_EMBEDDINGS || cmd == VEXFS_IOC_REMOVE_EMBEDDINGS) {
		/* Only regular files carry embeddings (a directory can't be opened for writing). */
		if (S_ISDIR(inode->i_mode))
			return -EISDIR;
		if (!(file->f_mode & FMODE_WRITE))
			return -EBADF;
		ret = mnt_want_write_file(file);
		if (ret)
			return ret;
		inode_lock(inode);
		ret = VEXFS_IN_HANDLE(inode->i_sb, VEXFS_TXN_WORST, vexfs_rs_ioctl(inode, cmd, arg));
		inode_unlock(inode);
		/* A returned SET or REMOVE is durable (docs/DURABILITY.md). */
		if (ret >= 0) {
			int err = vexfs_rs_commit(inode->i_sb);

			if (err)
				ret = err;
		}
		mnt_drop_write_file(file);
		return ret;
	}
	/* GET hands out a file's embeddings: it needs the file open for reading, as read(2) does
	 * (the xattr read makes its own checks). */
	if (cmd == VEXFS_IOC_GET_EMBEDDINGS && !(file->f_mode & FMODE_READ))
		return -EBADF;
	return vexfs_rs_ioctl(inode, cmd, arg);
}

#define VEXFS_XATTR_NAME "vexfs.embedding" /* after the "user." prefix */

/* Namespace indexes of the stored attributes (core::format::xattr). */
#define VEXFS_XATTR_USER 1
#define VEXFS_XATTR_TRUSTED 2
#define VEXFS_XATTR_SECURITY 3

static int vexfs_stored_get(const struct xattr_handler *handler, struct dentry *dentry,
			    struct inode *inode, const char *name, void *buffer, size_t size)
{
	return vexfs_rs_xattr_get_stored(inode, handler->flags, name, strlen(name), buffer, size);
}

/* Sets or removes (value NULL) a stored attribute, in a handle; ctime follows. */
static int vexfs_stored_set_h(struct inode *inode, int index, const char *name, const void *value,
			      size_t size, int flags)
{
	int err = vexfs_rs_xattr_set_stored(inode, index, name, strlen(name), value, size, flags);

	if (!err) {
		inode_set_ctime_current(inode);
		mark_inode_dirty(inode);
	}
	return err;
}

static int vexfs_stored_set(const struct xattr_handler *handler, struct mnt_idmap *idmap,
			    struct dentry *dentry, struct inode *inode, const char *name,
			    const void *value, size_t size, int flags)
{
	return VEXFS_IN_HANDLE(inode->i_sb, VEXFS_TXN_SMALL,
			       vexfs_stored_set_h(inode, handler->flags, name, value, size, flags));
}

static int vexfs_xattr_get(const struct xattr_handler *handler, struct dentry *dentry,
			   struct inode *inode, const char *name, void *buffer, size_t size)
{
	if (strcmp(name, VEXFS_XATTR_NAME))
		return vexfs_stored_get(handler, dentry, inode, name, buffer, size);
	return vexfs_rs_xattr_get(inode, buffer, size);
}

static int vexfs_xattr_set(const struct xattr_handler *handler, struct mnt_idmap *idmap,
			   struct dentry *dentry, struct inode *inode, const char *name,
			   const void *value, size_t size, int flags)
{
	int err;

	if (strcmp(name, VEXFS_XATTR_NAME))
		return vexfs_stored_set(handler, idmap, dentry, inode, name, value, size, flags);
	if (!S_ISREG(inode->i_mode))
		return -EPERM;
	err = VEXFS_IN_HANDLE(inode->i_sb, VEXFS_TXN_WORST, vexfs_rs_xattr_set(inode, value, size, flags));
	/* Setting the embedding is durable when it returns, as SET is. */
	return err ? err : vexfs_rs_commit(inode->i_sb);
}

/* ---- POSIX ACLs: the posix_acl_xattr form, stored as the attributes of indexes 4 (access)
 * and 5 (default) with an empty name (core::format::xattr) ---- */
#define VEXFS_XATTR_ACL_ACCESS 4
#define VEXFS_XATTR_ACL_DEFAULT 5

static struct posix_acl *vexfs_get_acl(struct inode *inode, int type, bool rcu)
{
	int index = type == ACL_TYPE_ACCESS ? VEXFS_XATTR_ACL_ACCESS : VEXFS_XATTR_ACL_DEFAULT;
	struct posix_acl *acl;
	void *value;
	int n;

	if (rcu)
		return ERR_PTR(-ECHILD);
	n = vexfs_rs_xattr_get_stored(inode, index, "", 0, NULL, 0);
	if (n == -ENODATA)
		return NULL;
	if (n < 0)
		return ERR_PTR(n);
	value = kmalloc(n, GFP_NOFS);
	if (!value)
		return ERR_PTR(-ENOMEM);
	n = vexfs_rs_xattr_get_stored(inode, index, "", 0, value, n);
	acl = n < 0 ? ERR_PTR(n) : posix_acl_from_xattr(&init_user_ns, value, n);
	kfree(value);
	return acl;
}

/* Stores (or with acl NULL removes) an ACL, in the caller's handle. */
static int vexfs_store_acl(struct inode *inode, int type, struct posix_acl *acl)
{
	int index = type == ACL_TYPE_ACCESS ? VEXFS_XATTR_ACL_ACCESS : VEXFS_XATTR_ACL_DEFAULT;
	size_t size = 0;
	void *value = NULL;
	int err;

	if (type == ACL_TYPE_DEFAULT && !S_ISDIR(inode->i_mode))
		return acl ? -EACCES : 0;
	if (acl) {
		size = posix_acl_xattr_size(acl->a_count);
		value = kmalloc(size, GFP_NOFS);
		if (!value)
			return -ENOMEM;
		err = posix_acl_to_xattr(&init_user_ns, acl, value, size);
		if (err < 0) {
			kfree(value);
			return err;
		}
	}
	err = vexfs_rs_xattr_set_stored(inode, index, "", 0, value, size, 0);
	kfree(value);
	if (err == -ENODATA && !acl)
		err = 0;
	if (!err)
		set_cached_acl(inode, type, acl);
	return err;
}

static int vexfs_set_acl_h(struct mnt_idmap *idmap, struct dentry *dentry, struct posix_acl *acl,
			   int type)
{
	struct inode *inode = d_inode(dentry);
	umode_t mode = inode->i_mode;
	int err;

	if (type == ACL_TYPE_ACCESS && acl) {
		/* An ACL the mode says whole is no ACL; the mode takes its group bits. */
		err = posix_acl_update_mode(idmap, inode, &mode, &acl);
		if (err)
			return err;
	}
	err = vexfs_store_acl(inode, type, acl);
	if (err)
		return err;
	inode->i_mode = mode;
	inode_set_ctime_current(inode);
	mark_inode_dirty(inode);
	return 0;
}

static int vexfs_set_acl(struct mnt_idmap *idmap, struct dentry *dentry, struct posix_acl *acl,
			 int type)
{
	return VEXFS_IN_HANDLE(dentry->d_sb, VEXFS_TXN_SMALL, vexfs_set_acl_h(idmap, dentry, acl, type));
}

/* A new inode's inherited ACLs (posix_acl_create gave them), in the create's handle. */
static int vexfs_init_acl(struct inode *inode, struct posix_acl *default_acl, struct posix_acl *acl)
{
	int err = 0;

	if (default_acl)
		err = vexfs_store_acl(inode, ACL_TYPE_DEFAULT, default_acl);
	if (!err && acl)
		err = vexfs_store_acl(inode, ACL_TYPE_ACCESS, acl);
	return err;
}

/* user.: the embedding (user.vexfs.embedding), else a stored attribute. */
static const struct xattr_handler vexfs_user_xattr_handler = {
	.prefix = XATTR_USER_PREFIX,
	.flags = VEXFS_XATTR_USER,
	.get = vexfs_xattr_get,
	.set = vexfs_xattr_set,
};

/* trusted.: CAP_SYS_ADMIN only (the VFS checks it for get and set). */
static const struct xattr_handler vexfs_trusted_xattr_handler = {
	.prefix = XATTR_TRUSTED_PREFIX,
	.flags = VEXFS_XATTR_TRUSTED,
	.get = vexfs_stored_get,
	.set = vexfs_stored_set,
};

/* security.: SELinux labels, file capabilities (the LSMs check access). */
static const struct xattr_handler vexfs_security_xattr_handler = {
	.prefix = XATTR_SECURITY_PREFIX,
	.flags = VEXFS_XATTR_SECURITY,
	.get = vexfs_stored_get,
	.set = vexfs_stored_set,
};

static const struct xattr_handler * const vexfs_xattr_handlers[] = {
	&vexfs_user_xattr_handler,
	&vexfs_trusted_xattr_handler,
	&vexfs_security_xattr_handler,
	NULL,
};

/* The embedding's name (if the file has one), then the stored attributes' (trusted. ones for
 * CAP_SYS_ADMIN only, as every filesystem lists them). */
static ssize_t vexfs_listxattr(struct dentry *dentry, char *buffer, size_t size)
{
	static const char name[] = VEXFS_XATTR_EMBEDDING;
	struct inode *inode = d_inode(dentry);
	size_t used = 0;
	ssize_t n;

	if (vexfs_rs_has_embeddings(inode)) {
		if (buffer) {
			if (size < sizeof(name))
				return -ERANGE;
			memcpy(buffer, name, sizeof(name));
		}
		used = sizeof(name);
	}
	n = vexfs_rs_xattr_list_stored(inode, capable(CAP_SYS_ADMIN), buffer ? buffer + used : NULL,
				       buffer ? size - used : 0);
	if (n < 0)
		return n;
	return used + n;
}

/* ---- regular files ------------------------------------------------------------------------ */

static int vexfs_setattr(struct mnt_idmap *idmap, struct dentry *dentry, struct iattr *attr)
{
	struct inode *inode = d_inode(dentry);
	struct vexfs_handle h;
	loff_t old = i_size_read(inode);
	int err = setattr_prepare(&nop_mnt_idmap, dentry, attr);

	if (err)
		return err;
	if ((attr->ia_valid & ATTR_SIZE) && attr->ia_size != old) {
		err = inode_newsize_ok(inode, attr->ia_size);
		if (err)
			return err;
		if (S_ISREG(inode->i_mode)) {
			/* Zero the tail of the last block on disk, not only in the cache. */
			err = block_truncate_page(inode->i_mapping, attr->ia_size, vexfs_get_block);
			if (err)
				return err;
		}
		/* The page cache first, outside the handle: a commit never waits for a page. A
		 * shrink keeps the disk size at the old one meanwhile (an atime or mtime update
		 * committed before the first truncate handle would otherwise commit the new size
		 * with the old blocks mapped past it). */
		if (attr->ia_size < old)
			vexfs_rs_truncate_prepare(inode);
		truncate_setsize(inode, attr->ia_size);
	}
	if ((attr->ia_valid & ATTR_SIZE) && attr->ia_size <= old) {
		/* In handles of its own, a tree leaf each (a large file's truncate is several
		 * transactions; between them its disk size covers what is still mapped and may
		 * hold data). A failure aborted the journal: no later part of this truncate is
		 * committed. As on ext4, a truncate to the size or below frees the blocks
		 * fallocate(KEEP_SIZE) preallocated past it; one that grows the file keeps them. */
		err = vexfs_rs_truncate_blocks(inode);
		if (err)
			return err;
	}
	err = vexfs_c_handle_start(inode->i_sb, &h, VEXFS_TXN_DELETE);
	if (err)
		return err;
	if (attr->ia_valid & ATTR_SIZE)
		inode_set_mtime_to_ts(inode, inode_set_ctime_current(inode));
	setattr_copy(&nop_mnt_idmap, inode, attr);
	mark_inode_dirty(inode);
	/* A chmod rewrites the access ACL's mask and owner entries (nested handle). */
	if (attr->ia_valid & ATTR_MODE)
		err = posix_acl_chmod(&nop_mnt_idmap, dentry, inode->i_mode);
	vexfs_c_handle_stop(inode->i_sb, &h);
	return err;
}

/* fsync: the file's data, then a commit of the journal (which holds its metadata). */
static int vexfs_fsync(struct file *file, loff_t start, loff_t end, int datasync)
{
	struct inode *inode = file_inode(file);
	int err = file_write_and_wait_range(file, start, end);

	if (err)
		return err;
	return vexfs_rs_commit(inode->i_sb);
}

/* SEEK_DATA and SEEK_HOLE from the extent map (blocks are allocated at write_begin and
 * page_mkwrite, so the map is the data); the rest as every block filesystem. */
static loff_t vexfs_llseek(struct file *file, loff_t offset, int whence)
{
	struct inode *inode = file->f_mapping->host;
	loff_t pos;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return generic_file_llseek(file, offset, whence);
	inode_lock_shared(inode);
	pos = vexfs_rs_seek_data_hole(inode, offset, whence == SEEK_HOLE);
	inode_unlock_shared(inode);
	if (pos < 0)
		return pos;
	return vfs_setpos(file, pos, inode->i_sb->s_maxbytes);
}

int vexfs_c_zeroout(struct super_block *sb, u64 block, u64 count)
{
	return sb_issue_zeroout(sb, block, count, GFP_NOFS);
}

/* Writes zeros over bytes pos .. pos + len (inside one block, below i_size) through the page
 * cache, as a write(2) would (write_begin/write_end, each in its handle); i_rwsem held. */
static int vexfs_write_zeros(struct file *file, loff_t pos, size_t len)
{
	struct kiocb kiocb;
	struct kvec kv = { .iov_base = page_address(ZERO_PAGE(0)), .iov_len = len };
	struct iov_iter iter;
	ssize_t n;

	init_sync_kiocb(&kiocb, file);
	kiocb.ki_pos = pos;
	iov_iter_kvec(&iter, ITER_SOURCE, &kv, 1, len);
	n = generic_perform_write(&kiocb, &iter);
	if (n < 0)
		return n;
	return n == len ? 0 : -EIO;
}

/* Zeros bytes start .. end of the file where they lie in a mapped block and below i_size (a
 * hole, or bytes past the end, read as zeros already): the partial blocks at the ends of a
 * punched or zeroed range. */
static int vexfs_zero_partial(struct file *file, loff_t start, loff_t end)
{
	struct inode *inode = file_inode(file);
	loff_t size = i_size_read(inode);
	int mapped;

	if (end > size)
		end = size;
	if (start >= end)
		return 0;
	mapped = vexfs_rs_block_mapped(inode, start >> PAGE_SHIFT);
	if (mapped <= 0)
		return mapped;
	return vexfs_write_zeros(file, start, end - start);
}

/* The size after fallocate without KEEP_SIZE (old: the size before it), in a handle. */
static int vexfs_extend_size_h(struct inode *inode, loff_t old, loff_t size)
{
	if (size > i_size_read(inode))
		i_size_write(inode, size);
	if (i_size_read(inode) > old) {
		inode_set_mtime_to_ts(inode, inode_set_ctime_current(inode));
		mark_inode_dirty(inode);
	}
	return 0;
}

/*
 * fallocate: 0 and KEEP_SIZE allocate the range's holes (zeroed on the device: no unwritten
 * extents), PUNCH_HOLE | KEEP_SIZE unmaps it (the partial blocks at its ends zeroed),
 * ZERO_RANGE punches and allocates (KEEP_SIZE or not). Without KEEP_SIZE the size grows over
 * each block in the handle that maps it (no commit sees a block past the size), then to the
 * range's end; with KEEP_SIZE past the end of file the blocks stay past the size, a
 * preallocation (the inode's eofblocks flag; a truncate to the size or below frees it, as on
 * ext4). Other modes: EOPNOTSUPP.
 */
static long vexfs_fallocate(struct file *file, int mode, loff_t offset, loff_t len)
{
	struct inode *inode = file_inode(file);
	loff_t end = offset + len;
	loff_t first = round_up(offset, PAGE_SIZE), last = round_down(end, PAGE_SIZE);
	int err;

	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	inode_lock(inode);
	err = file_modified(file);
	if (err)
		goto out;
	filemap_invalidate_lock(inode->i_mapping);
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		if (first > last) {
			/* Inside one block. */
			err = vexfs_zero_partial(file, offset, end);
		} else {
			err = vexfs_zero_partial(file, offset, first);
			if (!err)
				err = vexfs_zero_partial(file, last, end);
			if (!err && first < last) {
				truncate_pagecache_range(inode, first, last - 1);
				err = vexfs_rs_punch(inode, first >> PAGE_SHIFT, last >> PAGE_SHIFT);
			}
		}
	}
	if (!err && !(mode & FALLOC_FL_PUNCH_HOLE)) {
		u64 grow_to = (mode & FALLOC_FL_KEEP_SIZE) ? 0 : (u64)end;
		loff_t old = i_size_read(inode);

		err = vexfs_rs_alloc_range(inode, offset >> PAGE_SHIFT, DIV_ROUND_UP(end, PAGE_SIZE),
					   grow_to);
		if (!err && !(mode & FALLOC_FL_KEEP_SIZE))
			err = VEXFS_IN_HANDLE(inode->i_sb, VEXFS_TXN_SMALL,
					      vexfs_extend_size_h(inode, old, end));
	}
	filemap_invalidate_unlock(inode->i_mapping);
out:
	inode_unlock(inode);
	return err;
}

int vexfs_c_fiemap_fill(struct fiemap_extent_info *fi, u64 logical, u64 phys, u64 len, int last)
{
	return fiemap_fill_next_extent(fi, logical, phys, len, last ? FIEMAP_EXTENT_LAST : 0);
}

static int vexfs_fiemap(struct inode *inode, struct fiemap_extent_info *fieinfo, u64 start,
			u64 len)
{
	int ret = fiemap_prep(inode, fieinfo, start, &len, 0);

	if (ret)
		return ret;
	return vexfs_rs_fiemap(inode, fieinfo, start, len);
}

/*
 * O_DIRECT, served through the page cache (as ext4 falls back to buffered I/O where it cannot
 * do direct I/O): a read first writes back the cached pages it covers; a write goes through
 * the cache and is written back, and its pages dropped, before it returns. The data is on the
 * device when a direct write returns, and a direct read sees every earlier write; alignment
 * is not required.
 */
static int vexfs_file_open(struct inode *inode, struct file *file)
{
	file->f_mode |= FMODE_CAN_ODIRECT;
	return generic_file_open(inode, file);
}

static ssize_t vexfs_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	if (iocb->ki_flags & IOCB_DIRECT) {
		struct address_space *mapping = iocb->ki_filp->f_mapping;
		size_t count = iov_iter_count(to);
		int err;

		if (!count)
			return 0;
		err = filemap_write_and_wait_range(mapping, iocb->ki_pos, iocb->ki_pos + count - 1);
		if (err)
			return err;
		iocb->ki_flags &= ~IOCB_DIRECT;
	}
	return generic_file_read_iter(iocb, to);
}

/* Blocks one chunk of a buffered write maps past the end of file at once: 1 MiB. */
#define VEXFS_WRITE_CHUNK_BLOCKS 256

/*
 * Writes through the page cache, i_rwsem held, with what lies past the end of file in chunks of
 * up to VEXFS_WRITE_CHUNK_BLOCKS blocks. A chunk runs in one handle (VEXFS_TXN_PREALLOC) that
 * maps its blocks past the end of file at once (vexfs_rs_prealloc: a few runs, one allocation
 * and one extent change each, instead of one per page), copies the data in (write_begin's
 * handles nest in it and find the blocks mapped; get_block reports them new, so the parts of a
 * page the write does not cover are zeroed) and frees what the copy did not reach, pages and
 * blocks past the new i_size (vexfs_write_failed), before the handle ends. A commit waits for
 * the handle, so none sees a block mapped past i_size, and the ordered data of the blocks it
 * maps is in the page cache for it to write first. The rest (a write inside the file, a chunk
 * nothing could be mapped for: ENOSPC then comes from write_begin, which retries after a
 * checkpoint) goes page by page, each page in its own handle.
 */
static ssize_t vexfs_buffered_write(struct kiocb *iocb, struct iov_iter *from)
{
	struct inode *inode = file_inode(iocb->ki_filp);
	struct super_block *sb = inode->i_sb;
	ssize_t done = 0, ret;

	inode_lock(inode);
	ret = generic_write_checks(iocb, from);
	if (ret > 0)
		ret = file_modified(iocb->ki_filp);
	while (ret >= 0 && iov_iter_count(from)) {
		size_t count = iov_iter_count(from), chunk, shorted;
		loff_t pos = iocb->ki_pos;
		u64 eof = DIV_ROUND_UP((u64)i_size_read(inode), PAGE_SIZE);
		u64 first = (u64)pos >> PAGE_SHIFT;
		u64 end = ((u64)pos + count + PAGE_SIZE - 1) >> PAGE_SHIFT;
		u64 start = max(first, eof);
		struct vexfs_handle h;
		s64 mapped = 0;

		/* Past the end of file from its last block on (which a page handle may allocate). */
		if (first + 1 >= eof && end > start + 1) {
			ret = vexfs_c_handle_start(sb, &h, VEXFS_TXN_PREALLOC);
			if (ret)
				break;
			mapped = vexfs_rs_prealloc(inode, first, start, min(end, start + VEXFS_WRITE_CHUNK_BLOCKS));
			if (mapped < 0 && mapped != -ENOSPC) {
				if (mapped == -EIO || mapped == -EUCLEAN)
					vexfs_rs_handle_failed(sb, (int)mapped);
				vexfs_write_failed(inode->i_mapping, (loff_t)end << PAGE_SHIFT);
				vexfs_c_handle_stop(sb, &h);
				ret = mapped;
				break;
			}
			if (mapped <= 0)
				vexfs_c_handle_stop(sb, &h);
		}
		if (mapped <= 0) {
			/* Page by page, to the end. */
			ret = generic_perform_write(iocb, from);
			if (ret > 0)
				done += ret;
			break;
		}
		chunk = min_t(u64, count, ((start + (u64)mapped) << PAGE_SHIFT) - (u64)pos);
		shorted = count - chunk;
		iov_iter_truncate(from, chunk);
		WRITE_ONCE(VI(inode)->chunk_writer, current);
		ret = generic_perform_write(iocb, from);
		WRITE_ONCE(VI(inode)->chunk_writer, NULL);
		iov_iter_reexpand(from, iov_iter_count(from) + shorted);
		/* The size the pages gave the inode, written once (vexfs_dirty_inode). */
		mark_inode_dirty(inode);
		/* Pages and blocks past the new i_size: what a short copy did not fill. */
		vexfs_write_failed(inode->i_mapping, (loff_t)(start + (u64)mapped) << PAGE_SHIFT);
		vexfs_c_handle_stop(sb, &h);
		if (ret <= 0)
			break;
		done += ret;
		if ((size_t)ret < chunk)
			break;
	}
	inode_unlock(inode);
	if (done > 0)
		return generic_write_sync(iocb, done);
	return ret;
}

static ssize_t vexfs_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct address_space *mapping = iocb->ki_filp->f_mapping;
	bool direct = iocb->ki_flags & IOCB_DIRECT;
	loff_t pos = iocb->ki_pos;
	ssize_t n;
	int err;

	if (!direct && !(iocb->ki_flags & IOCB_NOWAIT))
		return vexfs_buffered_write(iocb, from);
	iocb->ki_flags &= ~IOCB_DIRECT;
	n = generic_file_write_iter(iocb, from);
	if (n <= 0 || !direct)
		return n;
	/* ki_pos is past the data written (O_APPEND: pos was the old end). */
	pos = iocb->ki_pos - n;
	err = filemap_write_and_wait_range(mapping, pos, pos + n - 1);
	if (err)
		return err;
	invalidate_mapping_pages(mapping, pos >> PAGE_SHIFT, (pos + n - 1) >> PAGE_SHIFT);
	return n;
}

static const struct file_operations vexfs_file_fops = {
	.open = vexfs_file_open,
	.llseek = vexfs_llseek,
	.read_iter = vexfs_read_iter,
	.write_iter = vexfs_write_iter,
	.mmap = vexfs_mmap,
	.fsync = vexfs_fsync,
	.splice_read = filemap_splice_read,
	.splice_write = iter_file_splice_write,
	.unlocked_ioctl = vexfs_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.fallocate = vexfs_fallocate,
};

static const struct inode_operations vexfs_file_iops = {
	.setattr = vexfs_setattr,
	.listxattr = vexfs_listxattr,
	.fiemap = vexfs_fiemap,
	.get_inode_acl = vexfs_get_acl,
	.set_acl = vexfs_set_acl,
};

static const struct inode_operations vexfs_special_iops = {
	.setattr = vexfs_setattr,
	.listxattr = vexfs_listxattr,
	.get_inode_acl = vexfs_get_acl,
	.set_acl = vexfs_set_acl,
};

/* ---- directories -------------------------------------------------------------------------- */

static struct dentry *vexfs_lookup(struct inode *dir, struct dentry *dentry, unsigned int flags)
{
	struct inode *inode = NULL;
	u64 ino = 0;
	int err;

	if (dentry->d_name.len > 255)
		return ERR_PTR(-ENAMETOOLONG);
	err = vexfs_rs_lookup(dir, dentry->d_name.name, dentry->d_name.len, &ino);
	if (err)
		return ERR_PTR(err);
	if (ino) {
		err = vexfs_rs_iget(dir->i_sb, ino, &inode);
		if (err)
			return ERR_PTR(err);
	}
	return d_splice_alias(inode, dentry);
}

/*
 * Namespace operations run inside one journal handle each: the dirents, the inodes, the link
 * counts and the times they change commit together. The *_h functions are the bodies.
 */

/* Allocates a VFS inode, has Rust give it an inode number and a dirent, then publishes it. */
static int vexfs_make_h(struct inode *dir, struct dentry *dentry, umode_t mode, const char *symname,
			dev_t rdev)
{
	struct posix_acl *default_acl = NULL, *acl = NULL;
	struct inode *inode;
	int err;

	/* The directory's default ACL: the new inode's ACLs, its mode masked by them. */
	if (!symname) {
		err = posix_acl_create(dir, &mode, &default_acl, &acl);
		if (err)
			return err;
	}
	inode = new_inode(dir->i_sb);
	if (!inode) {
		posix_acl_release(default_acl);
		posix_acl_release(acl);
		return -ENOMEM;
	}
	/* A device's number, before Rust writes the disk inode. */
	inode->i_rdev = rdev;
	err = vexfs_rs_create(dir, dentry->d_name.name, dentry->d_name.len, mode, inode);
	if (err) {
		/* Rust left i_nlink at 0 and the inode off the disk: eviction frees nothing. */
		posix_acl_release(default_acl);
		posix_acl_release(acl);
		make_bad_inode(inode);
		iput(inode);
		return err;
	}
	vexfs_c_set_ops(inode);
	if (insert_inode_locked(inode) < 0) {
		/* The inode number is still in the inode hash: the bitmaps disagree with memory. */
		posix_acl_release(default_acl);
		posix_acl_release(acl);
		pr_err("vexfs: inode %lu allocated twice\n", inode->i_ino);
		make_bad_inode(inode);
		iput(inode);
		return -EUCLEAN;
	}
	/* The inherited ACLs. A failure (ENOSPC for the xattr block) undoes the create as a
	 * failed symlink's below: the dirent goes, the inode goes with its last reference. */
	err = vexfs_init_acl(inode, default_acl, acl);
	posix_acl_release(default_acl);
	posix_acl_release(acl);
	if (err) {
		vexfs_rs_unlink(dir, dentry->d_name.name, dentry->d_name.len, inode);
		if (S_ISDIR(inode->i_mode)) {
			/* The create counted the subdirectory in its parent. */
			drop_nlink(dir);
			mark_inode_dirty(dir);
		}
		clear_nlink(inode);
		unlock_new_inode(inode);
		iput(inode);
		return err;
	}
	if (symname) {
		err = page_symlink(inode, symname, strlen(symname) + 1);
		if (err) {
			/* Undo the dirent; the inode goes when its last reference does. */
			vexfs_rs_unlink(dir, dentry->d_name.name, dentry->d_name.len, inode);
			clear_nlink(inode);
			unlock_new_inode(inode);
			iput(inode);
			return err;
		}
	}
	mark_inode_dirty(inode);
	d_instantiate_new(dentry, inode);
	return 0;
}

/* Room for the dirent `dentry` will add to `dir`, made before the operation's handle. */
static int vexfs_make_room(struct inode *dir, struct dentry *dentry)
{
	return vexfs_rs_make_room(dir, dentry->d_name.name, dentry->d_name.len);
}

static int vexfs_make(struct inode *dir, struct dentry *dentry, umode_t mode, const char *symname,
		      dev_t rdev)
{
	int err = vexfs_make_room(dir, dentry);

	if (err)
		return err;
	return VEXFS_IN_HANDLE(dir->i_sb, VEXFS_TXN_SMALL, vexfs_make_h(dir, dentry, mode, symname, rdev));
}

static int vexfs_create(struct mnt_idmap *idmap, struct inode *dir, struct dentry *dentry,
			umode_t mode, bool excl)
{
	return vexfs_make(dir, dentry, (mode & ~S_IFMT) | S_IFREG, NULL, 0);
}

static int vexfs_mkdir(struct mnt_idmap *idmap, struct inode *dir, struct dentry *dentry,
		       umode_t mode)
{
	return vexfs_make(dir, dentry, (mode & ~S_IFMT) | S_IFDIR, NULL, 0);
}

/* FIFOs, sockets, character and block devices (format v3): an inode with no data; a device's
 * number in the disk inode's rdev. The VFS has checked the type and the caller's right. */
static int vexfs_mknod(struct mnt_idmap *idmap, struct inode *dir, struct dentry *dentry,
		       umode_t mode, dev_t rdev)
{
	if (!S_ISCHR(mode) && !S_ISBLK(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode))
		return -EINVAL;
	return vexfs_make(dir, dentry, mode, NULL, (S_ISCHR(mode) || S_ISBLK(mode)) ? rdev : 0);
}

static int vexfs_symlink(struct mnt_idmap *idmap, struct inode *dir, struct dentry *dentry,
			 const char *symname)
{
	if (strlen(symname) >= PAGE_SIZE)
		return -ENAMETOOLONG;
	return vexfs_make(dir, dentry, S_IFLNK | 0777, symname, 0);
}

static int vexfs_link_h(struct dentry *old_dentry, struct inode *dir, struct dentry *dentry)
{
	struct inode *inode = d_inode(old_dentry);
	int err;

	if (inode->i_nlink >= U16_MAX)
		return -EMLINK;
	err = vexfs_rs_link(dir, dentry->d_name.name, dentry->d_name.len, inode);
	if (err)
		return err;
	inode_set_ctime_current(inode);
	inode_inc_link_count(inode);
	ihold(inode);
	d_instantiate(dentry, inode);
	return 0;
}

static int vexfs_link(struct dentry *old_dentry, struct inode *dir, struct dentry *dentry)
{
	int err = vexfs_make_room(dir, dentry);

	if (err)
		return err;
	return VEXFS_IN_HANDLE(dir->i_sb, VEXFS_TXN_SMALL, vexfs_link_h(old_dentry, dir, dentry));
}

static int vexfs_unlink_h(struct inode *dir, struct dentry *dentry)
{
	struct inode *inode = d_inode(dentry);
	int err = vexfs_rs_unlink(dir, dentry->d_name.name, dentry->d_name.len, inode);

	if (err)
		return err;
	inode_set_ctime_to_ts(inode, inode_get_ctime(dir));
	inode_dec_link_count(inode);
	return 0;
}

static int vexfs_unlink(struct inode *dir, struct dentry *dentry)
{
	return VEXFS_IN_HANDLE(dir->i_sb, VEXFS_TXN_DELETE, vexfs_unlink_h(dir, dentry));
}

static int vexfs_rmdir_h(struct inode *dir, struct dentry *dentry)
{
	struct inode *inode = d_inode(dentry);
	int err = vexfs_rs_dir_empty(inode);

	if (err)
		return err;
	err = vexfs_unlink_h(dir, dentry);
	if (err)
		return err;
	inode->i_size = 0;
	inode_dec_link_count(inode);
	inode_dec_link_count(dir);
	return 0;
}

static int vexfs_rmdir(struct inode *dir, struct dentry *dentry)
{
	return VEXFS_IN_HANDLE(dir->i_sb, VEXFS_TXN_DELETE, vexfs_rmdir_h(dir, dentry));
}

/* A new inode without a dirent (O_TMPFILE's file, a rename's whiteout), hashed and I_NEW:
 * the caller unlocks it. Inside the caller's handle. */
static struct inode *vexfs_new_unlinked(struct inode *dir, umode_t mode, dev_t rdev)
{
	struct inode *inode = new_inode(dir->i_sb);
	int err;

	if (!inode)
		return ERR_PTR(-ENOMEM);
	inode->i_rdev = rdev;
	err = vexfs_rs_create_unlinked(dir, mode, inode);
	if (err) {
		make_bad_inode(inode);
		iput(inode);
		return ERR_PTR(err);
	}
	vexfs_c_set_ops(inode);
	if (insert_inode_locked(inode) < 0) {
		pr_err("vexfs: inode %lu allocated twice\n", inode->i_ino);
		make_bad_inode(inode);
		iput(inode);
		return ERR_PTR(-EUCLEAN);
	}
	return inode;
}

static int vexfs_rename_h(struct inode *old_dir, struct dentry *old_dentry,
			  struct inode *new_dir, struct dentry *new_dentry, unsigned int flags)
{
	struct inode *inode = d_inode(old_dentry);
	struct inode *target = d_inode(new_dentry);
	struct inode *whiteout = NULL;
	int err;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT))
		return -EINVAL;
	if (flags & RENAME_EXCHANGE) {
		/* Both names exist (the VFS checked); each takes the other's inode. */
		err = vexfs_rs_rename(old_dir, old_dentry->d_name.name, old_dentry->d_name.len,
				      new_dir, new_dentry->d_name.name, new_dentry->d_name.len,
				      inode, target, NULL, 1);
		if (err)
			return err;
		if (old_dir != new_dir && S_ISDIR(inode->i_mode) != S_ISDIR(target->i_mode)) {
			if (S_ISDIR(inode->i_mode)) {
				inode_inc_link_count(new_dir);
				inode_dec_link_count(old_dir);
			} else {
				inode_inc_link_count(old_dir);
				inode_dec_link_count(new_dir);
			}
		}
		inode_set_ctime_current(inode);
		inode_set_ctime_current(target);
		mark_inode_dirty(inode);
		mark_inode_dirty(target);
		return 0;
	}
	if (target && S_ISDIR(target->i_mode)) {
		err = vexfs_rs_dir_empty(target);
		if (err)
			return err;
	}
	if (flags & RENAME_WHITEOUT) {
		/* overlayfs: the old name is left naming a whiteout, a character device 0:0. */
		whiteout = vexfs_new_unlinked(old_dir, S_IFCHR | WHITEOUT_MODE, WHITEOUT_DEV);
		if (IS_ERR(whiteout))
			return PTR_ERR(whiteout);
	}
	err = vexfs_rs_rename(old_dir, old_dentry->d_name.name, old_dentry->d_name.len,
			      new_dir, new_dentry->d_name.name, new_dentry->d_name.len,
			      inode, target, whiteout, 0);
	if (whiteout) {
		if (err) {
			/* No dirent names it: its last reference frees it. */
			clear_nlink(whiteout);
		} else {
			mark_inode_dirty(whiteout);
		}
		unlock_new_inode(whiteout);
		iput(whiteout);
	}
	if (err)
		return err;
	if (target) {
		inode_set_ctime_current(target);
		if (S_ISDIR(target->i_mode)) {
			clear_nlink(target);
			inode_dec_link_count(new_dir);
		} else {
			inode_dec_link_count(target);
		}
		mark_inode_dirty(target);
	}
	if (S_ISDIR(inode->i_mode) && old_dir != new_dir) {
		inode_dec_link_count(old_dir);
		inode_inc_link_count(new_dir);
	}
	inode_set_ctime_current(inode);
	mark_inode_dirty(inode);
	return 0;
}

/* O_TMPFILE: a regular file with no name, link count 0 (an orphan on disk, freed when closed
 * or after a crash) until linkat gives it one. */
static int vexfs_tmpfile_h(struct inode *dir, struct file *file, umode_t mode)
{
	struct posix_acl *default_acl = NULL, *acl = NULL;
	struct inode *inode;
	int err;

	/* The directory's default ACL, or the umask (SB_POSIXACL: the VFS left it to us). */
	mode = (mode & ~S_IFMT) | S_IFREG;
	err = posix_acl_create(dir, &mode, &default_acl, &acl);
	if (err)
		return err;
	inode = vexfs_new_unlinked(dir, mode, 0);
	if (IS_ERR(inode)) {
		posix_acl_release(default_acl);
		posix_acl_release(acl);
		return PTR_ERR(inode);
	}
	err = vexfs_init_acl(inode, default_acl, acl);
	posix_acl_release(default_acl);
	posix_acl_release(acl);
	if (err) {
		/* No dirent names it: its last reference frees it. */
		clear_nlink(inode);
		unlock_new_inode(inode);
		iput(inode);
		return err;
	}
	d_tmpfile(file, inode);
	mark_inode_dirty(inode);
	unlock_new_inode(inode);
	return 0;
}

static int vexfs_tmpfile(struct mnt_idmap *idmap, struct inode *dir, struct file *file,
			 umode_t mode)
{
	int err = VEXFS_IN_HANDLE(dir->i_sb, VEXFS_TXN_SMALL, vexfs_tmpfile_h(dir, file, mode));

	return finish_open_simple(file, err);
}

static int vexfs_rename(struct mnt_idmap *idmap, struct inode *old_dir, struct dentry *old_dentry,
			struct inode *new_dir, struct dentry *new_dentry, unsigned int flags)
{
	/* A new name in new_dir (not an exchange, not over an existing name) needs room. */
	if (!(flags & RENAME_EXCHANGE) && d_really_is_negative(new_dentry)) {
		int err = vexfs_make_room(new_dir, new_dentry);

		if (err)
			return err;
	}
	return VEXFS_IN_HANDLE(old_dir->i_sb, VEXFS_TXN_DELETE,
			       vexfs_rename_h(old_dir, old_dentry, new_dir, new_dentry, flags));
}

static int vexfs_iterate(struct file *file, struct dir_context *ctx)
{
	if (!dir_emit_dots(file, ctx))
		return 0;
	return vexfs_rs_iterate(file_inode(file), ctx);
}

/* Directory positions: byte offsets in a linear directory, name keys up to LLONG_MAX in an
 * indexed one (kmod/namei.rs iterate_indexed), past the file size limit s_maxbytes. */
static loff_t vexfs_dir_llseek(struct file *file, loff_t offset, int whence)
{
	return generic_file_llseek_size(file, offset, whence, LLONG_MAX, i_size_read(file_inode(file)));
}

static const struct file_operations vexfs_dir_fops = {
	.llseek = vexfs_dir_llseek,
	.read = generic_read_dir,
	.iterate_shared = vexfs_iterate,
	.fsync = vexfs_fsync,
	.unlocked_ioctl = vexfs_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static const struct inode_operations vexfs_dir_iops = {
	.lookup = vexfs_lookup,
	.create = vexfs_create,
	.mkdir = vexfs_mkdir,
	.symlink = vexfs_symlink,
	.mknod = vexfs_mknod,
	.tmpfile = vexfs_tmpfile,
	.link = vexfs_link,
	.unlink = vexfs_unlink,
	.rmdir = vexfs_rmdir,
	.rename = vexfs_rename,
	.setattr = vexfs_setattr,
	.listxattr = vexfs_listxattr,
	.get_inode_acl = vexfs_get_acl,
	.set_acl = vexfs_set_acl,
};

/* ---- superblock --------------------------------------------------------------------------- */

static struct inode *vexfs_alloc_inode(struct super_block *sb)
{
	struct vexfs_inode_info *vi = alloc_inode_sb(sb, vexfs_inode_cachep, GFP_KERNEL);

	if (!vi)
		return NULL;
	vexfs_rs_init_inode(vi->rs);
	return &vi->vfs_inode;
}

static void vexfs_free_inode(struct inode *inode)
{
	kmem_cache_free(vexfs_inode_cachep, VI(inode));
}

/* The inode is in the journal since it was dirtied (vexfs_dirty_inode): a sync write of it
 * is a commit. */
static int vexfs_write_inode(struct inode *inode, struct writeback_control *wbc)
{
	return vexfs_rs_write_inode(inode, wbc->sync_mode == WB_SYNC_ALL);
}

/* mark_inode_dirty: the disk inode is updated now, in the caller's handle (or one of its
 * own), so it commits with the operation that changed it; in a chunk of a buffered write, by
 * its writer, when the chunk ends (the chunk's handle holds every commit back until then). */
static void vexfs_dirty_inode(struct inode *inode, int flags)
{
	struct vexfs_handle h;

	if (READ_ONCE(VI(inode)->chunk_writer) == current)
		return;

	if (vexfs_c_handle_start(inode->i_sb, &h, VEXFS_TXN_SMALL)) {
		pr_err("vexfs: inode %lu changed while the journal is aborted\n", inode->i_ino);
		return;
	}
	vexfs_rs_dirty_inode(inode);
	vexfs_c_handle_stop(inode->i_sb, &h);
}

static void vexfs_evict_inode(struct inode *inode)
{
	struct vexfs_handle h;

	truncate_inode_pages_final(&inode->i_data);
	if (!inode->i_nlink && !is_bad_inode(inode)) {
		if (vexfs_c_handle_start(inode->i_sb, &h, VEXFS_TXN_DELETE)) {
			pr_err("vexfs: inode %lu not freed: the journal is aborted\n", inode->i_ino);
		} else {
			vexfs_rs_free_inode_disk(inode);
			vexfs_c_handle_stop(inode->i_sb, &h);
		}
	}
	invalidate_inode_buffers(inode);
	clear_inode(inode);
}

static void vexfs_put_super(struct super_block *sb)
{
	vexfs_rs_put_super(sb);
}

static int vexfs_sync_fs(struct super_block *sb, int wait)
{
	return vexfs_rs_sync_fs(sb, wait);
}

static int vexfs_statfs(struct dentry *dentry, struct kstatfs *buf)
{
	struct vexfs_statfs st;
	int err = vexfs_rs_statfs(dentry->d_sb, &st);

	if (err)
		return err;
	buf->f_type = VEXFS_MAGIC;
	buf->f_bsize = dentry->d_sb->s_blocksize;
	buf->f_blocks = st.blocks;
	buf->f_bfree = st.bfree;
	buf->f_bavail = st.bfree;
	buf->f_files = st.files;
	buf->f_ffree = st.ffree;
	buf->f_namelen = 255;
	buf->f_fsid = u64_to_fsid(st.fsid);
	return 0;
}

/* /proc/mounts: errors= when it is not the default, index_mem= when set. */
static int vexfs_show_options(struct seq_file *m, struct dentry *root)
{
	switch (vexfs_rs_errors(root->d_sb)) {
	case VEXFS_ERRORS_CONTINUE:
		seq_puts(m, ",errors=continue");
		break;
	case VEXFS_ERRORS_PANIC:
		seq_puts(m, ",errors=panic");
		break;
	}
	if (vexfs_rs_index_mem(root->d_sb))
		seq_printf(m, ",index_mem=%llu", vexfs_rs_index_mem(root->d_sb));
	return 0;
}

static const struct super_operations vexfs_sops = {
	.alloc_inode = vexfs_alloc_inode,
	.free_inode = vexfs_free_inode,
	.write_inode = vexfs_write_inode,
	.dirty_inode = vexfs_dirty_inode,
	.evict_inode = vexfs_evict_inode,
	.put_super = vexfs_put_super,
	.sync_fs = vexfs_sync_fs,
	.statfs = vexfs_statfs,
	.show_options = vexfs_show_options,
};

/* ---- mounting: the fs_context API -------------------------------------------------------- */

/*
 * The operations are set before Rust reads anything, so that a failed mount still has sane
 * ones. The Rust state of the mount (SbInfo on s_fs_info) never outlives this superblock's
 * use by vexfs, and is gone before kill_block_super() releases the device, on every path:
 * - fill_super fails before s_root is set: Rust frees it before returning (its inodes were
 *   evicted at their last iput, the superblock not being active yet), and the VFS calls no
 *   operation of ours again (generic_shutdown_super does nothing filesystem-specific without
 *   s_root);
 * - mounted, or fill_super failed after setting s_root: generic_shutdown_super syncs, evicts
 *   every inode, then calls put_super, which frees it last.
 * So kill_sb is plain kill_block_super.
 */
/*
 * Mount options, parsed into the fs_context (fc->fs_private) and handed to Rust by fill_super
 * and reconfigure: errors=continue|remount-ro|panic (default remount-ro; kmod/errors.rs).
 */
struct vexfs_fs_context {
	int errors; /* enum vexfs_errors, or -1 when the option was not given */
	u64 index_mem; /* index_mem= in bytes (0: no cap) */
	bool index_mem_set; /* index_mem= was given */
};

enum { Opt_errors, Opt_index_mem };

/* The smallest index_mem= other than 0 (64 blocks): one search borrows a few dozen blocks at
 * once (a batch of 32 vectors' blocks, kmod/pins.rs). */
#define VEXFS_MIN_INDEX_MEM (256ULL << 10)

static const struct constant_table vexfs_param_errors[] = {
	{ "continue", VEXFS_ERRORS_CONTINUE },
	{ "panic", VEXFS_ERRORS_PANIC },
	{ "remount-ro", VEXFS_ERRORS_REMOUNT_RO },
	{}
};

static const struct fs_parameter_spec vexfs_param_specs[] = {
	fsparam_enum("errors", Opt_errors, vexfs_param_errors),
	fsparam_string("index_mem", Opt_index_mem),
	{}
};

static int vexfs_fill_super(struct super_block *sb, struct fs_context *fc)
{
	struct vexfs_fs_context *ctx = fc->fs_private;
	int err;

	sb->s_op = &vexfs_sops;
	sb->s_xattr = vexfs_xattr_handlers;
	sb->s_time_gran = 1;
	/* The disk inode's link count is a u16: the VFS refuses a link past it (EMLINK), a
	 * directory's subdirectories included, instead of the count being clamped on disk. */
	sb->s_max_links = U16_MAX;
	/* POSIX ACLs (stored as xattrs): the VFS applies the umask only without a default ACL. */
	sb->s_flags |= SB_POSIXACL;
	err = vexfs_rs_fill_super(sb, !!(fc->sb_flags & SB_SILENT));
	/* Until here (corruption found while mounting fails the mount) the default applies. */
	if (!err) {
		vexfs_rs_set_errors(sb, ctx->errors < 0 ? VEXFS_ERRORS_REMOUNT_RO : ctx->errors);
		vexfs_rs_set_index_mem(sb, ctx->index_mem);
	}
	return err;
}

static int vexfs_get_tree(struct fs_context *fc)
{
	return get_tree_bdev(fc, vexfs_fill_super);
}

/*
 * One option of the mount's option string. The generic flags (ro, sync, ...) are taken by the
 * VFS before this is called and "source" is left to it; errors= is ours (a bad value is refused
 * by fs_parse, logged); any other option is refused with EINVAL, logged.
 */
static int vexfs_parse_param(struct fs_context *fc, struct fs_parameter *param)
{
	struct vexfs_fs_context *ctx = fc->fs_private;
	struct fs_parse_result result;
	int opt;

	opt = fs_parse(fc, vexfs_param_specs, param, &result);
	if (opt == -ENOPARAM) {
		if (!strcmp(param->key, "source"))
			return -ENOPARAM;
		return invalfc(fc, "unknown mount option '%s'", param->key);
	}
	if (opt < 0)
		return opt;
	switch (opt) {
	case Opt_errors:
		ctx->errors = result.uint_32;
		break;
	case Opt_index_mem: {
		char *end;
		u64 v = memparse(param->string, &end);

		if (end == param->string || *end)
			return invalfc(fc, "index_mem=%s: not a size (bytes, with K, M or G)", param->string);
		if (v && v < VEXFS_MIN_INDEX_MEM)
			return invalfc(fc, "index_mem=%s: below the least, 256K (0: no cap)", param->string);
		ctx->index_mem = v;
		ctx->index_mem_set = true;
		break;
	}
	}
	return 0;
}

/* remount: the journal is set up for the mode the filesystem was mounted in (kmod/txn.rs), so
 * switching between read-only and read-write is refused (docs/DURABILITY.md); errors= may
 * change (an option not given keeps its value). */
static int vexfs_reconfigure(struct fs_context *fc)
{
	struct vexfs_fs_context *ctx = fc->fs_private;
	struct super_block *sb = fc->root->d_sb;

	if ((fc->sb_flags_mask & SB_RDONLY) && ((fc->sb_flags ^ sb->s_flags) & SB_RDONLY)) {
		pr_warn("vexfs (%s): remount between read-only and read-write is not supported\n", sb->s_id);
		return -EINVAL;
	}
	sync_filesystem(sb);
	if (ctx->errors >= 0)
		vexfs_rs_set_errors(sb, ctx->errors);
	if (ctx->index_mem_set)
		vexfs_rs_set_index_mem(sb, ctx->index_mem);
	return 0;
}

static void vexfs_free_fc(struct fs_context *fc)
{
	kfree(fc->fs_private);
}

static const struct fs_context_operations vexfs_context_ops = {
	.parse_param = vexfs_parse_param,
	.get_tree = vexfs_get_tree,
	.reconfigure = vexfs_reconfigure,
	.free = vexfs_free_fc,
};

static int vexfs_init_fs_context(struct fs_context *fc)
{
	struct vexfs_fs_context *ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);

	if (!ctx)
		return -ENOMEM;
	ctx->errors = -1;
	fc->fs_private = ctx;
	fc->ops = &vexfs_context_ops;
	return 0;
}

static struct file_system_type vexfs_fs_type = {
	.owner = THIS_MODULE,
	.name = "vexfs",
	.init_fs_context = vexfs_init_fs_context,
	.kill_sb = kill_block_super,
	.fs_flags = FS_REQUIRES_DEV,
};

static void vexfs_inode_init_once(void *obj)
{
	struct vexfs_inode_info *vi = obj;

	INIT_LIST_HEAD(&vi->ordered);
	vi->chunk_writer = NULL;
	inode_init_once(&vi->vfs_inode);
}

/* Called from the Rust module's init and drop. */
int vexfs_c_register(void)
{
	int err;

	vexfs_inode_cachep = kmem_cache_create("vexfs_inode_cache", sizeof(struct vexfs_inode_info), 0,
					       SLAB_RECLAIM_ACCOUNT | SLAB_ACCOUNT,
					       vexfs_inode_init_once);
	if (!vexfs_inode_cachep)
		return -ENOMEM;
	err = register_filesystem(&vexfs_fs_type);
	if (err)
		kmem_cache_destroy(vexfs_inode_cachep);
	return err;
}

void vexfs_c_unregister(void)
{
	unregister_filesystem(&vexfs_fs_type);
	/* Inodes are freed through RCU: wait for them before destroying their cache. */
	rcu_barrier();
	kmem_cache_destroy(vexfs_inode_cachep);
}

MODULE_ALIAS_FS("vexfs");
