/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The line between the C glue (glue.c) and the Rust half of vexfs (vexfs_main.rs and its
 * modules). C holds the VFS operation tables and wrappers for `static inline` kernel helpers
 * that bindgen cannot see; Rust holds every decision about the disk format.
 *
 * Rust functions return 0 or a negative errno.
 */
#ifndef VEXFS_GLUE_H
#define VEXFS_GLUE_H

#include <linux/fs.h>
#include <linux/types.h>

/* Per-inode state owned by Rust (the decoded extent map and vector ids), opaque to C; set by
 * vexfs_rs_init_inode at allocation. Mirrored by ffi::INODE_STATE_WORDS. */
#define VEXFS_RS_INODE_WORDS 28

struct vexfs_inode_info {
	__u64 rs[VEXFS_RS_INODE_WORDS];
	/* On the running transaction's ordered list (struct vexfs_mount): its new data blocks are
	 * written before the transaction commits. Empty when not. */
	struct list_head ordered;
	/* The mapping's write-error sequence when it joined the ordered list: a data write that
	 * failed since then, even one whose error fsync or msync already reported, fails the
	 * commit that would expose the block (ext4's data_err=abort). */
	errseq_t ordered_since;
	/* The task writing a chunk of a buffered write past the end of file (vexfs_buffered_write,
	 * i_rwsem held): its pages' inode updates (the size, page by page) are written once, when
	 * the chunk ends, in the chunk's handle. NULL otherwise. */
	struct task_struct *chunk_writer;
	struct inode vfs_inode;
};

/*
 * Per-mount C state (kmod/vfs/mount_c.rs): the commit ticker (a delayed work that asks Rust to
 * commit every few seconds) and the ordered-data lists (inodes with new data blocks in the
 * running transaction, each holding a reference, and those whose data a commit flushed).
 */
struct vexfs_mount {
	struct super_block *sb;
	struct delayed_work tick;
	unsigned long period;
	bool ticking;
	spinlock_t lock;
	struct list_head ordered;
	struct list_head flushed;
	/* The index worker (kmod/vector.rs): links pending vectors into the HNSW graph. */
	struct delayed_work index_work;
	bool indexing;
	/* The index cache's shrinker (kmod/pins.rs), NULL when not registered. */
	struct shrinker *shrinker;
};
int vexfs_c_shrinker_start(struct vexfs_mount *m);
void vexfs_c_shrinker_stop(struct vexfs_mount *m);
struct vexfs_mount *vexfs_c_mount_new(struct super_block *sb);
void vexfs_c_mount_free(struct vexfs_mount *m);
void vexfs_c_ticker_start(struct vexfs_mount *m, unsigned int secs);
void vexfs_c_ticker_stop(struct vexfs_mount *m);
void vexfs_c_ordered_add(struct vexfs_mount *m, struct inode *inode);
void vexfs_c_ordered_preflush(struct vexfs_mount *m);
int vexfs_c_ordered_flush(struct vexfs_mount *m);
void vexfs_c_ordered_put(struct vexfs_mount *m);
void vexfs_c_ordered_discard(struct vexfs_mount *m);
void vexfs_rs_tick(struct super_block *sb);
void vexfs_c_index_start(struct vexfs_mount *m);
void vexfs_c_index_kick(struct vexfs_mount *m, unsigned int delay_ms);
bool vexfs_c_index_running(struct vexfs_mount *m);
void vexfs_c_index_stop(struct vexfs_mount *m);
void vexfs_rs_index_work(struct super_block *sb);
int vexfs_c_relax(void);
void vexfs_c_init_rwsem(struct rw_semaphore *sem);
unsigned int vexfs_c_online_cpus(void);
/* Writes zeros to device blocks block .. block + count (sb_issue_zeroout); waits. */
int vexfs_c_zeroout(struct super_block *sb, u64 block, u64 count);
/* fiemap_fill_next_extent for one extent (bytes), FIEMAP_EXTENT_LAST when last: 0, 1 (the
 * user's array is full) or a negative errno. */
int vexfs_c_fiemap_fill(struct fiemap_extent_info *fi, u64 logical, u64 phys, u64 len, int last);

/* Rust (ops/): superblock. put_super frees the Rust state of the mount; a failed fill_super
 * frees it itself unless it set s_root (then put_super does). */
int vexfs_rs_fill_super(struct super_block *sb, int silent);
void vexfs_rs_put_super(struct super_block *sb);
void vexfs_rs_init_inode(u64 *rs);
int vexfs_rs_sync_fs(struct super_block *sb, int wait);
/* What statfs(2) reports; mirrors ffi::StatfsOut. */
struct vexfs_statfs {
	u64 blocks, bfree, files, ffree, fsid;
};
/* Superblock magic, also statfs's f_type: format::superblock::MAGIC. */
#define VEXFS_MAGIC 0x56455846
int vexfs_rs_statfs(struct super_block *sb, struct vexfs_statfs *out);
/* What the mount does when it finds corruption: the `errors=` mount option (kmod/errors.rs,
 * whose ErrorsMode mirrors these values). Parsed by glue.c into the fs_context, handed to Rust
 * once fill_super succeeded and at every remount that names it. */
enum vexfs_errors {
	VEXFS_ERRORS_CONTINUE = 0,
	VEXFS_ERRORS_REMOUNT_RO = 1,
	VEXFS_ERRORS_PANIC = 2,
};
void vexfs_rs_set_errors(struct super_block *sb, unsigned int mode);
unsigned int vexfs_rs_errors(struct super_block *sb);
void vexfs_rs_set_index_mem(struct super_block *sb, u64 bytes);
u64 vexfs_rs_index_mem(struct super_block *sb);
unsigned long vexfs_rs_index_cached(struct super_block *sb);
unsigned long vexfs_rs_index_shrink(struct super_block *sb, unsigned long nr);

/* Rust (txn.rs): the journal. A handle brackets every operation that changes metadata (see
 * vexfs_c_handle_start); commit makes every finished operation durable. */
void *vexfs_rs_journal(struct super_block *sb);
int vexfs_rs_handle_begin(struct super_block *sb, unsigned int kind, u64 *credits);
void vexfs_rs_handle_end(struct super_block *sb, u64 credits);
int vexfs_rs_commit(struct super_block *sb);
void vexfs_rs_dirty_inode(struct inode *inode);
/* A handle, on the stack of the operation; mirrored in ffi.rs. */
struct vexfs_handle {
	void *prev;
	unsigned int nofs;
	int outer;
	u64 credits; /* log blocks the outermost handle reserved (kmod/txn.rs) */
};
/* What a handle may change (kmod/txn.rs TxnKind): how much of the log it reserves. */
#define VEXFS_TXN_SMALL 0  /* create, mkdir, link, write_begin, page_mkwrite, dirty_inode */
#define VEXFS_TXN_DELETE 1 /* unlink, rmdir, rename, setattr (truncate), evict */
#define VEXFS_TXN_WORST 2  /* SET / REMOVE ioctls, the embedding xattr */
#define VEXFS_TXN_PREALLOC 4 /* a chunk of a buffered write past the end of file */
int vexfs_c_handle_start(struct super_block *sb, struct vexfs_handle *h, unsigned int kind);
/* Rust: an operation in a handle failed with err (EIO, EUCLEAN abort the journal). */
void vexfs_rs_handle_failed(struct super_block *sb, int err);
/* After an ENOSPC outside any handle: whether a checkpoint made freed blocks allocatable (retry). */
bool vexfs_rs_retry_alloc(struct super_block *sb, u32 *retries);
/* Rust: lseek SEEK_DATA (hole 0) or SEEK_HOLE (hole 1) from offset: the offset or -errno. */
s64 vexfs_rs_seek_data_hole(struct inode *inode, s64 offset, int hole);
/* Rust: the stored xattrs (namespace index 1 user, 2 trusted, 3 security). */
int vexfs_rs_xattr_get_stored(struct inode *inode, u8 index, const char *name, size_t name_len,
			      void *buf, size_t size);
int vexfs_rs_xattr_set_stored(struct inode *inode, u8 index, const char *name, size_t name_len,
			      const void *value, size_t size, int flags);
ssize_t vexfs_rs_xattr_list_stored(struct inode *inode, int trusted, char *buf, size_t size);
/* Rust: fallocate's unmapping of file blocks from .. to (PUNCH_HOLE, ZERO_RANGE). */
int vexfs_rs_punch(struct inode *inode, u64 from, u64 to);
/* Rust: fallocate's allocation of the unmapped file blocks from .. to, zeroed, the size grown
 * up to grow_to bytes over them (0: KEEP_SIZE; blocks past the size set the eofblocks flag). */
int vexfs_rs_alloc_range(struct inode *inode, u64 from, u64 to, u64 grow_to);
/* Rust: whether file block blk of inode is mapped (1), a hole (0), or -errno. */
int vexfs_rs_block_mapped(struct inode *inode, u64 blk);
/* Rust: fiemap of bytes start .. start + len, after fiemap_prep. */
int vexfs_rs_fiemap(struct inode *inode, struct fiemap_extent_info *fieinfo, u64 start, u64 len);
void vexfs_c_handle_stop(struct super_block *sb, struct vexfs_handle *h);

/* Rust: inodes and block mapping. */
int vexfs_rs_iget(struct super_block *sb, u64 ino, struct inode **out);
int vexfs_rs_write_inode(struct inode *inode, int sync);
void vexfs_rs_free_inode_disk(struct inode *inode);
int vexfs_rs_get_block(struct inode *inode, u64 iblock, int create, u64 max_blocks,
		       u64 *phys, u64 *count, int *is_new);
void vexfs_rs_truncate_prepare(struct inode *inode);
int vexfs_rs_truncate_blocks(struct inode *inode);
s64 vexfs_rs_prealloc(struct inode *inode, u64 lead, u64 from, u64 to);

/* Rust: namespace. */
int vexfs_rs_lookup(struct inode *dir, const u8 *name, u32 len, u64 *ino);
int vexfs_rs_create(struct inode *dir, const u8 *name, u32 len, umode_t mode, struct inode *inode);
/* Before a dirent is added (no handle open): splits an indexed directory's bucket, or indexes
 * the directory, each step in a handle of its own (kmod/namei.rs make_room). */
int vexfs_rs_make_room(struct inode *dir, const u8 *name, u32 len);
int vexfs_rs_link(struct inode *dir, const u8 *name, u32 len, struct inode *inode);
int vexfs_rs_unlink(struct inode *dir, const u8 *name, u32 len, struct inode *inode);
int vexfs_rs_dir_empty(struct inode *dir);
int vexfs_rs_rename(struct inode *old_dir, const u8 *old_name, u32 old_len,
		    struct inode *new_dir, const u8 *new_name, u32 new_len,
		    struct inode *inode, struct inode *target, struct inode *whiteout,
		    int exchange);
/* Rust: a disk inode and number for a new inode without a dirent (O_TMPFILE, whiteouts). */
int vexfs_rs_create_unlinked(struct inode *dir, umode_t mode, struct inode *inode);
int vexfs_rs_iterate(struct inode *dir, struct dir_context *ctx);

/* Rust: vectors (ioctl.rs). */
long vexfs_rs_ioctl(struct inode *inode, unsigned int cmd, unsigned long arg);
int vexfs_rs_xattr_get(struct inode *inode, void *buf, size_t size);
int vexfs_rs_xattr_set(struct inode *inode, const void *value, size_t size, int flags);
int vexfs_rs_has_embeddings(struct inode *inode);

/* C: wrappers for static inline kernel helpers, called from Rust (mirrored in ffi.rs). */
struct buffer_head;
struct dir_context;
u64 *vexfs_c_inode_rs(struct inode *inode);
struct buffer_head *vexfs_c_bread(struct super_block *sb, u64 block);
struct buffer_head *vexfs_c_bread_ahead(struct super_block *sb, u64 block, u64 ra_end);
struct buffer_head *vexfs_c_bread_counted(struct super_block *sb, u64 block, bool *read);
bool vexfs_c_block_readahead(struct super_block *sb, u64 block);
void vexfs_c_drop_cached(struct super_block *sb, u64 block);
struct buffer_head *vexfs_c_bnew(struct super_block *sb, u64 block);
void vexfs_c_brelse(struct buffer_head *bh);
void vexfs_c_bforget(struct buffer_head *bh);
bool vexfs_c_bh_verified(struct buffer_head *bh);
void vexfs_c_bh_set_verified(struct buffer_head *bh);
bool vexfs_c_bh_checked(struct buffer_head *bh);
void vexfs_c_bh_set_checked(struct buffer_head *bh);
u8 *vexfs_c_bh_data(struct buffer_head *bh);
void vexfs_c_mark_dirty(struct buffer_head *bh);
u64 vexfs_c_bh_blocknr(struct buffer_head *bh);
void vexfs_c_get_bh(struct buffer_head *bh);
bool vexfs_c_bh_txn_test_set(struct buffer_head *bh);
void vexfs_c_bh_txn_clear(struct buffer_head *bh);
void vexfs_c_write_bh(struct buffer_head *bh);
int vexfs_c_wait_bh(struct buffer_head *bh);
int vexfs_c_write_bh_fua(struct buffer_head *bh);
int vexfs_c_sync_dev(struct super_block *sb);
u32 vexfs_c_dev_err_sample(struct super_block *sb);
int vexfs_c_dev_err_since(struct super_block *sb, u32 *since);
void *vexfs_c_journal_info(void);
void vexfs_c_force_rdonly(struct super_block *sb);
void vexfs_c_panic(struct super_block *sb) __noreturn;
u64 vexfs_c_dev_bytes(struct super_block *sb);
int vexfs_c_rdonly(struct super_block *sb);
loff_t vexfs_c_i_size(struct inode *inode);
void vexfs_c_set_i_size(struct inode *inode, loff_t size);
void vexfs_c_mark_inode_dirty(struct inode *inode);
u32 vexfs_c_uid(struct inode *inode);
u32 vexfs_c_gid(struct inode *inode);
void vexfs_c_set_owner(struct inode *inode, u32 uid, u32 gid);
void vexfs_c_init_owner(struct inode *inode, struct inode *dir, umode_t mode);
bool vexfs_c_emit(struct dir_context *ctx, const u8 *name, u32 len, u64 ino, u32 type);
s64 vexfs_c_ctx_pos(struct dir_context *ctx);
void vexfs_c_set_ctx_pos(struct dir_context *ctx, s64 pos);
u32 vexfs_c_nlink(struct inode *inode);
bool vexfs_c_is_new(struct inode *inode);
unsigned int vexfs_c_nofs_save(void);
void vexfs_c_nofs_restore(unsigned int flags);
void vexfs_c_times_now(struct inode *inode);
void vexfs_c_touch_dir(struct inode *dir);
void vexfs_c_set_ops(struct inode *inode);
int vexfs_c_register(void);
void vexfs_c_unregister(void);

#endif
