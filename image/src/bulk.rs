//! Bulk loading (`mkfs.vexfs --import`): populates an unmounted filesystem from an `.fvecs`
//! file, as `mke2fs -d` populates one from a directory, with the layout of
//! `vexctl import` on a mounted one: row `i` becomes the regular file `DIR/i` (mode 0644),
//! holding the `"text"` of line `i` of the passages if any (else empty), with row `i` as its
//! one embedding (chunk 0). Only the vector slots and inode numbers may differ from `vexctl
//! import`'s: by default near rows take neighbouring slots ([`SlotOrder::Locality`]) and the
//! files are made in slot order.
//!
//! Two phases, through [`Writer`] (the kernel's format, index and journal code), synced
//! through the journal (the files every [`ImportOpts::batch`] rows, the links every
//! [`LINKS_SYNC_INTERVAL`]), so that an interrupted load leaves a consistent filesystem on
//! which [`import`] run again resumes:
//! 1. **files**: each row's file created and its vector stored pending
//!    ([`Indexing::Deferred`], as the kernel's SET stores it), in slot order (with
//!    [`SlotOrder::Locality`] the rows come from memory and the passages from
//!    [`Texts::text_at`]: the inodes, vectors and codes each written in sequence; made in row
//!    order instead, scattered slots cost the journal commits of pydocs-1m's files phase 54 s
//!    against 9 s). A row whose file already carries an embedding is skipped; one whose file
//!    exists without one gets it.
//! 2. **links**: every pending vector linked into the HNSW graph (with [`SlotOrder::Rows`] in
//!    slot order, `IndexMem::index_pending`, the kernel's index worker's code; with
//!    [`SlotOrder::Locality`] in row order, [`Writer::set_link_order`]; with
//!    [`ImportOpts::threads`] above 1, planned in batches on several threads:
//!    [`Writer::index_pending_parallel`]), so the image mounts with nothing left for the
//!    worker; with [`ImportOpts::build_codes`] on the distances of SQ8 codes held in memory
//!    for the phase ([`Writer::set_build_codes`]), else on the filesystem's own.

use std::io::{BufRead, Read, Seek};
use std::time::Instant;

use vexfs_core::embed::Indexing;
use vexfs_core::format::superblock::ROOT_INO;

use crate::texts::Texts;
use crate::vecfile::Fvecs;
use crate::writer::Writer;
use crate::{Error, Result};

/// How often the links phase syncs: a crash loses at most this much linking (the vectors it
/// had not linked stay pending, and a run again links them). In between, the writer commits by
/// itself whenever the index blocks changed since the last commit would outgrow the journal
/// (`Writer::end_op`), so each commit is one transaction. Not every [`ImportOpts::batch`]
/// rows, as the files phase: at a million vectors each batch of links changes some 13,000
/// blocks of the HNSW region (the neighbours' lists, at random), so syncing a batch at a time
/// logged, wrote home and flushed about 100 MB each time, 103 s of a 475 s import.
pub const LINKS_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// [`ImportOpts::batch`] by default (`mkfs.vexfs --batch`). Each sync of the files phase
/// logs and writes home the directory blocks the batch's names went to (at random among the
/// directory's thousands), the new inodes and vectors, with three device flushes: at 1,000
/// rows a sync, pydocs-1m's files phase spent 20.4 s of its 51 s in 1,000 commits. A crash
/// loses at most this many rows' files (1% of a million); `--resume` makes them again.
pub const DEFAULT_BATCH: u64 = 10_000;

/// Rows of the sample [`code_neighbour_recall`] ranks, at most (evenly spaced).
pub const CODE_CHECK_ROWS: usize = 4096;
/// Rows of that sample it ranks them from, at most (evenly spaced).
pub const CODE_CHECK_QUERIES: usize = 256;
/// Neighbours [`code_neighbour_recall`] compares per query.
pub const CODE_CHECK_K: usize = 10;

/// How well SQ8 codes at scale `2^shift` ([`vexfs_core::sq8::quantise`]) keep the nearest
/// neighbours of `rows` (`dim` floats each, row after row): over a sample of at most
/// [`CODE_CHECK_ROWS`] rows, for each of at most [`CODE_CHECK_QUERIES`] of them, the share of
/// its [`CODE_CHECK_K`] nearest other rows by the float `metric` distance that are also its
/// nearest by the codes' distance (this CPU's kernels, `DistanceKernel::distances` and
/// `code_distances`), averaged: recall@10 of the codes against the floats, 1.0 when they rank
/// alike. What `mkfs.vexfs --build-on auto` decides by. Fewer than 2 rows: 1.0.
pub fn code_neighbour_recall(rows: &[f32], dim: usize, metric: u32, shift: i32) -> f64 {
    use vexfs_core::distance::{best_impl, DistanceKernel};
    let n = rows.len().checked_div(dim).unwrap_or(0);
    if n < 2 {
        return 1.0;
    }
    let stride = vexfs_core::vindex::build_code_stride(dim as u32);
    let step = n.div_ceil(CODE_CHECK_ROWS).max(1);
    let picked: Vec<usize> = (0..n).step_by(step).collect();
    let bits: Vec<Vec<u32>> =
        picked.iter().map(|&r| rows[r * dim..(r + 1) * dim].iter().map(|x| x.to_bits()).collect()).collect();
    let codes: Vec<Vec<u8>> = bits
        .iter()
        .map(|v| {
            let mut c = vec![0u8; stride];
            vexfs_core::sq8::quantise(v, shift, &mut c);
            c
        })
        .collect();
    let imp = best_impl();
    let vec_ptrs: Vec<*const u32> = bits.iter().map(|v| v.as_ptr()).collect();
    let code_ptrs: Vec<*const u8> = codes.iter().map(|c| c.as_ptr()).collect();
    let k = CODE_CHECK_K.min(picked.len() - 1);
    let qstep = picked.len().div_ceil(CODE_CHECK_QUERIES).max(1);
    let (mut found, mut asked) = (0usize, 0usize);
    let (mut floats, mut by_code) = (vec![0u32; picked.len()], vec![0u32; picked.len()]);
    // The k nearest other rows of the sample by `keys` (ties by row).
    let nearest = |q: usize, keys: &mut dyn FnMut(usize) -> f64| {
        let mut all: Vec<(f64, usize)> = (0..picked.len()).filter(|&i| i != q).map(|i| (keys(i), i)).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.truncate(k);
        all.into_iter().map(|e| e.1).collect::<Vec<_>>()
    };
    for q in (0..picked.len()).step_by(qstep) {
        // SAFETY: every pointer is at `dim` u32s (or `stride` bytes, a multiple of 32) of a
        // vector held above, unchanged during the calls.
        unsafe { imp.distances(metric, dim as u32, vec_ptrs[q], &vec_ptrs, &mut floats) };
        let truth = nearest(q, &mut |i| f64::from(f32::from_bits(floats[i])));
        // SAFETY: as above.
        unsafe { imp.code_distances(metric, stride as u32, code_ptrs[q], &code_ptrs, &mut by_code) };
        let by_codes = nearest(q, &mut |i| f64::from(by_code[i]));
        found += by_codes.iter().filter(|i| truth.contains(i)).count();
        asked += k;
    }
    found as f64 / asked.max(1) as f64
}

/// What [`import`] does.
#[derive(Debug, Clone)]
pub struct ImportOpts {
    /// Directory of the files, below the root (made if missing, mode 0755); `None`: the root.
    pub dir: Option<String>,
    /// Rows per journal sync in the files phase (at least 1): a crash loses at most the rows
    /// since the last. The links phase links this many at a time and syncs every
    /// [`LINKS_SYNC_INTERVAL`].
    pub batch: u64,
    /// Threads of the links phase: 1 links one vector at a time
    /// ([`Writer::index_pending`]); more plan batches of them at once
    /// ([`Writer::index_pending_parallel`], the same graph for any count from 2 up). They
    /// also share the work of [`SlotOrder::Locality`].
    pub threads: usize,
    /// Which vector slot each row's embedding takes.
    pub order: SlotOrder,
    /// On a filesystem without codes: the links phase builds the graph on transient SQ8
    /// codes at scale `2^shift` ([`Writer::set_build_codes`]; `mkfs.vexfs --build-on
    /// sq8`), as a filesystem with `--quant sq8` is built on its own; the image stays
    /// float32. `None` (or a filesystem with codes): on the filesystem's own distances.
    pub build_codes: Option<i32>,
}

impl Default for ImportOpts {
    fn default() -> Self {
        ImportOpts { dir: None, batch: DEFAULT_BATCH, threads: 1, order: SlotOrder::Locality, build_codes: None }
    }
}

/// Which vector slot each row's embedding takes ([`ImportOpts::order`], `mkfs.vexfs
/// --slot-order`). The files hold the same either way (row `i` is file `DIR/i`); where the
/// vectors lie in the vector regions differs, and so does the order the files are made in
/// (slot order), hence their inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOrder {
    /// Row order: the first free slot, as `vexctl import` stores them.
    Rows,
    /// Near rows in the same blocks ([`crate::order::slot_order`], seeded by the
    /// superblock's `hnsw_seed`): fewer block reads for a search under a memory budget. All
    /// the rows are read into memory first (`rows * dim * 4` bytes), and the offsets of the
    /// passages' lines (8 bytes a row).
    Locality,
}

/// The phase [`import`] reports progress of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Files created (of the rows).
    Files,
    /// Vectors linked into the graph (of those pending when the phase began).
    Links,
}

/// What [`import`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ImportStats {
    /// Rows whose file got its embedding in this run.
    pub imported: u64,
    /// Rows skipped: their file already carried an embedding (an earlier, interrupted run).
    pub skipped: u64,
    /// Vectors linked into the graph.
    pub linked: u64,
    /// Seconds of the files phase.
    pub files_secs: f64,
    /// Seconds of the links phase.
    pub links_secs: f64,
    /// Seconds of the files phase spent committing to the journal (`Writer::commit_time`:
    /// logging and writing home the blocks changed since the last commit, with the device
    /// flushes).
    pub files_commit_secs: f64,
    /// Seconds of the links phase spent committing to the journal.
    pub links_commit_secs: f64,
}

/// Rows of a block that [`SlotOrder::Locality`] keeps together: the node records of a 4 KiB
/// block of the vector data region with `NODE_RECORDS`, else its vectors (at least 1).
fn order_leaf(sb: &vexfs_core::format::superblock::Superblock) -> usize {
    let block = vexfs_core::format::BLOCK_SIZE as u64;
    let per = if sb.has_node_records() {
        vexfs_core::format::vector::HnswGeometry::new(sb).level0_per_block
    } else {
        block / u64::from(sb.vec_stride).max(1)
    };
    usize::try_from(per.max(1)).unwrap_or(1)
}

/// The inode of directory `name` below the root, made (mode 0755) if missing; the root for
/// `None`. Errors: `Invalid` when `name` is not a valid name or names something that is not a
/// directory; those of the writer.
fn import_dir<D>(w: &mut Writer<D>, name: Option<&str>) -> Result<u32>
where
    D: vexfs_core::io::BlockDevice<Error = std::io::Error>,
{
    let Some(name) = name else { return Ok(ROOT_INO) };
    let img = w.image();
    let root = img.inode(ROOT_INO)?;
    match img.find_entry(ROOT_INO, &root, name.as_bytes())? {
        Some(e) if img.inode(e.ino)?.is_dir() => Ok(e.ino),
        Some(_) => Err(Error::Invalid(format!("/{name} exists and is not a directory"))),
        None => w.mkdir(ROOT_INO, name, 0o755),
    }
}

/// Row `row`'s file in directory `dir`: made with `text` if missing, given `v` as its one
/// embedding (in slot `hint` if given, else the first free one) unless it already carries one
/// (counted as skipped). Errors: `Invalid` when the name is taken by something that is not a
/// regular file; those of the writer.
fn add_file<D>(
    w: &mut Writer<D>,
    dir: u32,
    row: u64,
    v: &[f32],
    text: &str,
    hint: Option<u32>,
    st: &mut ImportStats,
) -> Result<()>
where
    D: vexfs_core::io::BlockDevice<Error = std::io::Error>,
{
    let name = row.to_string();
    let img = w.image();
    let existing = img.find_entry(dir, &img.inode(dir)?, name.as_bytes())?;
    let ino = match existing {
        Some(e) => {
            let inode = img.inode(e.ino)?;
            if !inode.is_reg() {
                return Err(Error::Invalid(format!(
                    "file {name} of the import directory exists and is not a regular file"
                )));
            }
            if !img.vec_slots(e.ino, &inode)?.is_empty() {
                st.skipped += 1;
                return Ok(());
            }
            e.ino
        }
        None => w.create(dir, &name, text.as_bytes())?,
    };
    if let Some(slot) = hint {
        w.set_slot_hint(slot)?;
    }
    w.set_embeddings(ino, &[v])?;
    st.imported += 1;
    Ok(())
}

/// Populates the filesystem of `w` from `vecs` (see the module's docs): row `i` becomes file
/// `i` of the import directory, with the text of line `i` of `texts` (which must have at least
/// as many lines as `vecs` has rows). `progress(phase, done, total)` is called after every row
/// of each phase. Returns what was done; the writer is synced (everything is on the device).
/// Errors: `Invalid` for vectors of another dimension than the filesystem's, too few passages,
/// no room (inodes, blocks, vector slots: the files made before, in row or slot order, are
/// kept, synced), a bad import
/// directory; `Io`; `Format` for a corrupt filesystem.
pub fn import<D, R, T>(
    w: &mut Writer<D>,
    vecs: &mut Fvecs<R>,
    mut texts: Option<&mut Texts<T>>,
    opts: &ImportOpts,
    mut progress: impl FnMut(Phase, u64, u64),
) -> Result<ImportStats>
where
    D: vexfs_core::io::BlockDevice<Error = std::io::Error>,
    R: Read + Seek,
    T: BufRead + Seek,
{
    let dim = w.image().sb().vec_dim;
    if vecs.dim() != dim {
        return Err(Error::Invalid(format!(
            "{} has vectors of dimension {}, the filesystem {dim}",
            vecs.name(),
            vecs.dim()
        )));
    }
    let batch = opts.batch.max(1);
    let rows = vecs.rows();
    let dir = import_dir(w, opts.dir.as_deref())?;
    w.set_indexing(Indexing::Deferred);
    w.remember_checked();
    // Both phases touch the whole vector regions: huge pages for the writer's cache.
    w.expect_whole_index()?;
    let mut st = ImportStats::default();
    let committed = w.commit_time();
    let start = Instant::now();
    // Locality: the rows in memory, `slot[row]`, the files made in slot order (so that
    // inodes, vectors and codes are each written in sequence), linked in row order.
    let (slots, all) = match opts.order {
        SlotOrder::Rows => (None, Vec::new()),
        SlotOrder::Locality => {
            let sb = w.image().sb();
            let leaf = order_leaf(sb);
            let (seed, threads) = (sb.hnsw_seed, opts.threads.max(1));
            let all = vecs.rows_range(0, rows)?;
            (Some(crate::order::slot_order(&all, dim as usize, leaf, seed, threads)), all)
        }
    };
    let short =
        |lines: u64| Error::Invalid(format!("the passages end at line {lines}, before the {rows} rows of the vectors"));
    let mut done = 0u64;
    let mut row_done = |w: &mut Writer<D>| -> Result<()> {
        done += 1;
        if done % batch == 0 {
            w.sync()?;
        }
        progress(Phase::Files, done, rows);
        Ok(())
    };
    if let Some(slot) = slots {
        let by_slot = crate::order::rows_by_slot(&slot)
            .ok_or_else(|| Error::Invalid("the slot order is not a permutation of the rows".into()))?;
        // Linked in row order, not in the slots' (sorted by locality) order.
        w.set_link_order(slot);
        let starts = match texts.as_deref_mut() {
            Some(t) => {
                let starts = t.line_starts(rows)?;
                if (starts.len() as u64) < rows {
                    return Err(short(starts.len() as u64));
                }
                starts
            }
            None => Vec::new(),
        };
        let d = dim as usize;
        for (s, &row) in by_slot.iter().enumerate() {
            let r = row as usize;
            let text = match (texts.as_deref_mut(), starts.get(r)) {
                (Some(t), Some(&at)) => t.text_at(u64::from(row), at)?,
                _ => String::new(),
            };
            let v = all.get(r * d..(r + 1) * d).ok_or_else(|| Error::Invalid(format!("no row {row}")))?;
            let hint = u32::try_from(s).ok();
            add_file(w, dir, u64::from(row), v, &text, hint, &mut st)?;
            row_done(w)?;
        }
    } else {
        vecs.for_each(|row, v| {
            let text = match texts.as_deref_mut() {
                Some(t) => t.next_text()?.ok_or_else(|| short(row))?,
                None => String::new(),
            };
            add_file(w, dir, row, v, &text, None, &mut st)?;
            row_done(w)
        })?;
    }
    drop(all);
    w.sync()?;
    st.files_secs = start.elapsed().as_secs_f64();
    st.files_commit_secs = (w.commit_time() - committed).as_secs_f64();
    let committed = w.commit_time();

    let start = Instant::now();
    let total = u64::from(w.vector_header()?.pending);
    let on_codes = match opts.build_codes {
        Some(shift) if total > 0 && !w.image().sb().has_codes() => {
            w.set_build_codes(shift)?;
            true
        }
        _ => false,
    };
    let step = usize::try_from(batch).unwrap_or(usize::MAX);
    let mut synced = Instant::now();
    loop {
        let n = if opts.threads > 1 { w.index_pending_parallel(step, opts.threads)? } else { w.index_pending(step)? };
        if n == 0 {
            break;
        }
        st.linked += n as u64;
        if synced.elapsed() >= LINKS_SYNC_INTERVAL {
            w.sync()?;
            synced = Instant::now();
        }
        progress(Phase::Links, st.linked, total);
    }
    if on_codes {
        w.clear_build_codes();
    }
    w.sync()?;
    let left = w.vector_header()?.pending;
    if left > 0 {
        return Err(Error::Invalid(format!("{left} vectors are still pending after the links phase")));
    }
    st.links_secs = start.elapsed().as_secs_f64();
    st.links_commit_secs = (w.commit_time() - committed).as_secs_f64();
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vecfile::fvecs_bytes;
    use crate::writer::SEQUENTIAL_LINKS;
    use crate::{fsck, mkfs, sample, Image, MemDevice};
    use std::io::Cursor;
    use vexfs_core::format::superblock::{Metric, Superblock};
    use vexfs_core::format::BLOCK_SIZE;

    fn image(dim: u32) -> Image<MemDevice> {
        let mut dev = MemDevice::new(4096);
        let p = vexfs_core::format::layout::MkfsParams { dim, metric: Metric::L2, ..sample::params(4096) };
        mkfs::format(&mut dev, &p, true).unwrap();
        Image::open(dev).unwrap()
    }

    /// `n` distinct rows: component 0 is the row number.
    fn rows(n: usize, dim: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| (0..dim).map(|j| if j == 0 { i as f32 } else { ((i * 31 + j * 7) % 17) as f32 - 8.0 }).collect())
            .collect()
    }

    #[test]
    fn files_texts_and_links() {
        let data = rows(300, 8);
        let mut vecs = Fvecs::new(Cursor::new(fvecs_bytes(&data)), "v.fvecs").unwrap();
        let jsonl: String = (0..300).map(|i| format!("{{\"text\": \"row {i}\"}}\n")).collect();
        let mut texts = Texts::new(Cursor::new(jsonl.into_bytes()), "t.jsonl");
        let mut w = Writer::new(image(8)).unwrap();
        let opts = ImportOpts { dir: Some("docs".into()), batch: 64, ..Default::default() };
        let mut seen = Vec::new();
        let st = import(&mut w, &mut vecs, Some(&mut texts), &opts, |p, d, t| seen.push((p, d, t))).unwrap();
        assert_eq!((st.imported, st.skipped, st.linked), (300, 0, 300));
        assert_eq!(seen.first(), Some(&(Phase::Files, 1, 300)));
        assert_eq!(seen.last(), Some(&(Phase::Links, 300, 300)));
        let h = w.vector_header().unwrap();
        assert_eq!((h.live, h.pending), (300, 0));
        // Every file holds its text and its row's vector; the nearest file to a row is itself.
        let img = w.image();
        for i in 0..300 {
            let ino = img.lookup(&format!("/docs/{i}")).unwrap();
            let inode = img.inode(ino).unwrap();
            assert_eq!(img.read_file(ino, &inode).unwrap(), format!("row {i}").as_bytes());
            assert_eq!(img.vec_slots(ino, &inode).unwrap().len(), 1);
        }
        for i in [0usize, 150, 299] {
            let hits = w.search(&data[i], 1, 64).unwrap();
            let ino = w.image().lookup(&format!("/docs/{i}")).unwrap();
            assert_eq!(hits[0].dist_bits(), 0.0f32.to_bits(), "row {i}");
            assert_eq!(hits[0].ino, u64::from(ino), "row {i}");
        }
        let bytes = w.commit().unwrap().into_device().bytes;
        let (img, early) = fsck::open(MemDevice { bytes }).unwrap();
        let problems = fsck::check(&img, early).unwrap().problems;
        assert!(problems.is_empty(), "{problems:#?}");
    }

    /// `n` pseudo-random rows of `dim` components in [-1, 1) (a fixed LCG).
    fn random_rows(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut x = seed;
        let mut next = move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        (0..n).map(|_| (0..dim).map(|_| next()).collect()).collect()
    }

    /// recall@10 at ef 10 of `w`'s index for `queries` against brute force over `data`
    /// (file i holds row i; the files are under /docs).
    fn recall_at_10(w: &mut Writer<MemDevice>, data: &[Vec<f32>], queries: &[Vec<f32>]) -> f64 {
        let ino_row: std::collections::HashMap<u64, usize> =
            (0..data.len()).map(|i| (u64::from(w.image().lookup(&format!("/docs/{i}")).unwrap()), i)).collect();
        let mut found = 0usize;
        for q in queries {
            let mut exact: Vec<(f32, usize)> = data
                .iter()
                .enumerate()
                .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), i))
                .collect();
            exact.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let truth: Vec<usize> = exact.iter().take(10).map(|e| e.1).collect();
            let hits = w.search(q, 10, 10).unwrap();
            found += hits.iter().filter(|h| truth.contains(&ino_row[&h.ino])).count();
        }
        found as f64 / (10 * queries.len()) as f64
    }

    /// A 16384-block image of `data` (`dim`-d rows, l2, ef_construction 64) imported with
    /// `opts`, every row linked; the writer, not yet committed.
    fn imported(data: &[Vec<f32>], dim: usize, opts: &ImportOpts) -> Writer<MemDevice> {
        let mut dev = MemDevice::new(16384);
        let p = vexfs_core::format::layout::MkfsParams {
            dim: dim as u32,
            metric: Metric::L2,
            inode_count: Some(8192),
            ef_construction: 64,
            ..sample::params(16384)
        };
        mkfs::format(&mut dev, &p, true).unwrap();
        let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
        let mut vecs = Fvecs::new(Cursor::new(fvecs_bytes(data)), "v.fvecs").unwrap();
        let st = import(&mut w, &mut vecs, None::<&mut Texts<Cursor<Vec<u8>>>>, opts, |_, _, _| {}).unwrap();
        let n = data.len() as u64;
        assert_eq!((st.imported, st.linked), (n, n), "{} threads", opts.threads);
        let h = w.vector_header().unwrap();
        assert_eq!((u64::from(h.live), h.pending), (n, 0), "{} threads", opts.threads);
        w
    }

    /// The bytes of the vector regions of `img` (bitmap to the HNSW region's end).
    fn vector_regions(img: &[u8]) -> &[u8] {
        let sb = Superblock::decode(&img[..BLOCK_SIZE]).unwrap();
        let r = sb.vector_regions();
        &img[r.start as usize * BLOCK_SIZE..r.end() as usize * BLOCK_SIZE]
    }

    /// The parallel links phase: the same graph for 2, 3 and 4 threads (the vector regions
    /// byte for byte), and the same again when each insert of a batch connects back right
    /// after its choice, on one thread (`CONNECT_EACH`: the graph as defined, against the
    /// batch's connections run after all its choices, split between the threads by level-0
    /// record block); every row linked, fsck clean, a recall@10 within 0.02 of the one-by-one
    /// build's; past SEQUENTIAL_LINKS, so that batches are planned.
    #[test]
    fn parallel_links() {
        use crate::vectors::test_hooks::{CONNECT_EACH, SHARED_CONNECTS};
        use std::sync::atomic::Ordering;
        let (n, dim) = (SEQUENTIAL_LINKS + 904, 16);
        let data = random_rows(n, dim, 7);
        let queries = random_rows(200, dim, 8);
        let build = |threads: usize, each: bool| {
            CONNECT_EACH.with(|c| c.set(each));
            let mut w = imported(
                &data,
                dim,
                &ImportOpts { dir: Some("docs".into()), batch: 700, threads, ..Default::default() },
            );
            CONNECT_EACH.with(|c| c.set(false));
            let recall = recall_at_10(&mut w, &data, &queries);
            (w.commit().unwrap().into_device().bytes, recall)
        };
        let (one, r1) = build(1, false);
        let shared = SHARED_CONNECTS.load(Ordering::Relaxed);
        let (two, r2) = build(2, false);
        assert!(SHARED_CONNECTS.load(Ordering::Relaxed) > shared, "no batch connected on several threads");
        let (three, r3) = build(3, false);
        let (four, _) = build(4, false);
        let (each, _) = build(2, true);
        let (img, early) = fsck::open(MemDevice { bytes: two.clone() }).unwrap();
        let problems = fsck::check(&img, early).unwrap().problems;
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(vector_regions(&two) == vector_regions(&three), "2 and 3 threads made different graphs");
        assert!(vector_regions(&two) == vector_regions(&four), "2 and 4 threads made different graphs");
        assert!(
            vector_regions(&two) == vector_regions(&each),
            "connecting after the batch's choices changed the graph"
        );
        assert!(vector_regions(&one) != vector_regions(&two), "the batches were not planned apart");
        assert_eq!(r2, r3);
        assert!(r1 > 0.8 && r2 > r1 - 0.02, "recall@10: one by one {r1}, in batches {r2}");
    }

    /// `ImportOpts::build_codes` (`mkfs.vexfs --build-on sq8`): a float32 filesystem whose
    /// graph is built on transient SQ8 codes gets, link for link, the HNSW region of a
    /// filesystem made with `--quant sq8` at the same scale from the same rows (which builds
    /// on its stored codes), one by one in row order and in parallel batches; it is not the
    /// graph built on the float distances, the image stays float32 (no codes feature), checks
    /// clean, and its float32 searches find recall@10 within 0.03 of that graph's.
    #[test]
    fn graph_on_transient_codes() {
        use crate::mkfs::FormatOpts;
        use vexfs_core::format::superblock::Region;
        let (n, dim) = (SEQUENTIAL_LINKS + 904, 16);
        let data = random_rows(n, dim, 7);
        let queries = random_rows(200, dim, 8);
        let max = data.iter().flatten().map(|x| x.to_bits() & 0x7fff_ffff).max().unwrap();
        let shift = vexfs_core::sq8::shift_for_max(max);
        let build = |sq8: bool, codes: Option<i32>, threads: usize, order: SlotOrder| {
            let mut dev = MemDevice::new(16384);
            let p = vexfs_core::format::layout::MkfsParams {
                dim: dim as u32,
                metric: Metric::L2,
                inode_count: Some(8192),
                // Both layouts the same slots (the codes region would take some).
                vec_capacity: Some(4096),
                ef_construction: 64,
                ..sample::params(16384)
            };
            let opts = FormatOpts { sq8_shift: sq8.then_some(shift), ..FormatOpts::default() };
            mkfs::format_with(&mut dev, &p, true, opts).unwrap();
            let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
            let mut vecs = Fvecs::new(Cursor::new(fvecs_bytes(&data)), "v.fvecs").unwrap();
            let opts = ImportOpts { dir: Some("docs".into()), batch: 700, threads, order, build_codes: codes };
            let st = import(&mut w, &mut vecs, None::<&mut Texts<Cursor<Vec<u8>>>>, &opts, |_, _, _| {}).unwrap();
            assert_eq!(st.linked, n as u64);
            let recall = recall_at_10(&mut w, &data, &queries);
            let bytes = w.commit().unwrap().into_device().bytes;
            let sb = Superblock::decode(&bytes[..BLOCK_SIZE]).unwrap();
            assert_eq!(sb.has_codes(), sq8);
            let r = sb.region(Region::Hnsw);
            let hnsw = bytes[r.start as usize * BLOCK_SIZE..r.end() as usize * BLOCK_SIZE].to_vec();
            let (img, early) = fsck::open(MemDevice { bytes }).unwrap();
            let problems = fsck::check(&img, early).unwrap().problems;
            assert!(problems.is_empty(), "{problems:#?}");
            (hnsw, recall)
        };
        for (threads, order) in [(1, SlotOrder::Rows), (2, SlotOrder::Locality)] {
            let (float, r_float) = build(false, None, threads, order);
            let (transient, r_codes) = build(false, Some(shift), threads, order);
            let (stored, _) = build(true, None, threads, order);
            // Transient codes asked of a filesystem with its own: built on its own.
            let (stored_too, _) = build(true, Some(shift + 1), threads, order);
            assert!(transient == stored, "{threads} threads: not the graph built on stored SQ8 codes");
            assert!(stored_too == stored, "{threads} threads: transient codes used beside stored ones");
            assert!(transient != float, "{threads} threads: the graph on codes is the float one");
            assert!(r_float > 0.8 && r_codes > r_float - 0.03, "recall@10: on floats {r_float}, on codes {r_codes}");
        }
    }

    /// `code_neighbour_recall`: 1.0 when the codes are the vectors exactly (integer components
    /// at scale 2^0), low when a scale far too small codes them all near zero, 1.0 for fewer
    /// than 2 rows.
    #[test]
    fn code_neighbour_recall_ranks_as_the_codes_do() {
        let rows: Vec<f32> = random_rows(3000, 16, 5).into_iter().flatten().map(|x| (x * 100.0).round()).collect();
        let l2 = Metric::L2 as u32;
        assert_eq!(code_neighbour_recall(&rows, 16, l2, 0), 1.0);
        let coarse = code_neighbour_recall(&rows, 16, l2, -6);
        assert!(coarse < 0.5, "codes of -1, 0, 1 kept {coarse} of the neighbours");
        assert_eq!(code_neighbour_recall(&rows[..16], 16, l2, -6), 1.0);
    }

    /// `Writer::set_build_codes` refuses a scale out of range and a filesystem with codes of
    /// its own.
    #[test]
    fn build_codes_refused() {
        use crate::mkfs::FormatOpts;
        let mut w = Writer::new(image(8)).unwrap();
        assert!(w.set_build_codes(vexfs_core::sq8::MAX_SHIFT + 1).is_err());
        assert!(w.set_build_codes(vexfs_core::sq8::MIN_SHIFT - 1).is_err());
        w.set_build_codes(7).unwrap();
        w.clear_build_codes();
        let mut dev = MemDevice::new(4096);
        let p = vexfs_core::format::layout::MkfsParams { dim: 8, metric: Metric::L2, ..sample::params(4096) };
        mkfs::format_with(&mut dev, &p, true, FormatOpts { sq8_shift: Some(7), ..FormatOpts::default() }).unwrap();
        let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
        let e = w.set_build_codes(7).unwrap_err().to_string();
        assert!(e.contains("filesystem with codes"), "{e}");
    }

    /// Linking in parallel into a graph with tombstones (files removed since their vectors were
    /// linked): the connections read the tombstones' flags, in other threads' blocks, so they
    /// run on one thread; every new vector is linked and the image checks clean.
    #[test]
    fn parallel_links_beside_tombstones() {
        let (n, dim) = (SEQUENTIAL_LINKS + 200, 16);
        let data = random_rows(n + 300, dim, 13);
        let mut w = imported(
            &data[..n],
            dim,
            &ImportOpts { dir: Some("docs".into()), batch: 700, threads: 2, ..Default::default() },
        );
        let img = w.image();
        let docs = img.find_entry(ROOT_INO, &img.inode(ROOT_INO).unwrap(), b"docs").unwrap().unwrap().ino;
        for row in (0..n).step_by(50) {
            let img = w.image();
            let ino = img.find_entry(docs, &img.inode(docs).unwrap(), row.to_string().as_bytes()).unwrap().unwrap().ino;
            w.remove_embeddings(ino).unwrap();
        }
        let tombstones = w.vector_header().unwrap().deleted;
        assert!(tombstones > 0, "no tombstone left to link beside");
        w.set_indexing(Indexing::Deferred);
        for (i, v) in data[n..].iter().enumerate() {
            let ino = w.create(ROOT_INO, &format!("new{i}"), b"").unwrap();
            w.set_embeddings(ino, &[v]).unwrap();
        }
        assert_eq!(w.index_pending_parallel(usize::MAX, 2).unwrap(), 300);
        let h = w.vector_header().unwrap();
        assert_eq!((h.pending, h.deleted), (0, tombstones));
        let bytes = w.commit().unwrap().into_device().bytes;
        let (img, early) = fsck::open(MemDevice { bytes }).unwrap();
        let problems = fsck::check(&img, early).unwrap().problems;
        assert!(problems.is_empty(), "{problems:#?}");
    }

    /// Vectors that cross a block boundary (24-d: a stride of 96 bytes) are read in place from
    /// the bulk loader's one-mapping cache (`BlockStore::read_span`): the graph is byte for
    /// byte the one built when each is copied out of its pages, as the kernel does.
    #[test]
    fn crossing_vectors_in_place() {
        use crate::vectors::test_hooks::{PAGES_ONLY, SPANS};
        use std::sync::atomic::Ordering;
        let (n, dim) = (SEQUENTIAL_LINKS + 300, 24);
        let data = random_rows(n, dim, 11);
        let build = |pages_only: bool| {
            PAGES_ONLY.with(|p| p.set(pages_only));
            let w = imported(&data, dim, &ImportOpts { dir: None, batch: 500, threads: 2, ..Default::default() });
            assert_eq!(w.image().sb().vec_stride, 96, "a stride that does not divide a block");
            w.commit().unwrap().into_device().bytes
        };
        let before = SPANS.load(Ordering::Relaxed);
        let in_place = build(false);
        assert!(SPANS.load(Ordering::Relaxed) > before, "no vector was read in place");
        let copied = build(true);
        assert!(vector_regions(&in_place) == vector_regions(&copied), "reading vectors in place changed the graph");
    }

    /// The slot orders: `Rows` puts row i in slot i (as `vexctl import`); `Locality` puts
    /// near rows in the same data-region block (mean distance between the rows of a block
    /// under half of what row order gives, on clustered rows in a random order), keeps
    /// every file's own vector (each row's nearest file is itself) and checks clean.
    #[test]
    fn slot_orders() {
        let (n, dim) = (SEQUENTIAL_LINKS + 300, 16);
        // 24 clusters, rows drawn from them at random.
        let centres = random_rows(24, dim, 21);
        let noise = random_rows(n, dim, 22);
        let data: Vec<Vec<f32>> = noise
            .iter()
            .enumerate()
            .map(|(i, e)| centres[(i * 7919) % 24].iter().zip(e).map(|(c, x)| 4.0 * c + 0.3 * x).collect())
            .collect();
        let per_block = BLOCK_SIZE / (dim * 4);
        let spread = |order: SlotOrder| {
            let opts = ImportOpts { dir: Some("docs".into()), batch: 700, threads: 2, order, build_codes: None };
            let mut w = imported(&data, dim, &opts);
            let (mut row_at, mut ino_at) = (vec![usize::MAX; n], vec![0u32; n]);
            for i in 0..n {
                let img = w.image();
                let ino = img.lookup(&format!("/docs/{i}")).unwrap();
                let slots = img.vec_slots(ino, &img.inode(ino).unwrap()).unwrap();
                assert_eq!(slots.len(), 1);
                (row_at[slots[0] as usize], ino_at[slots[0] as usize]) = (i, ino);
            }
            // The files are made in slot order: their inode numbers rise with the slots.
            assert!(ino_at.windows(2).all(|p| p[0] < p[1]), "{order:?}: inodes not in slot order");
            for i in (0..n).step_by(97) {
                let hits = w.search(&data[i], 1, 64).unwrap();
                assert_eq!(hits[0].ino, u64::from(w.image().lookup(&format!("/docs/{i}")).unwrap()), "row {i}");
            }
            let bytes = w.commit().unwrap().into_device().bytes;
            let (img, early) = fsck::open(MemDevice { bytes }).unwrap();
            let problems = fsck::check(&img, early).unwrap().problems;
            assert!(problems.is_empty(), "{order:?}: {problems:#?}");
            let d = |a: usize, b: usize| data[a].iter().zip(&data[b]).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
            let pairs: Vec<f32> = (0..n - 1)
                .filter(|s| s / per_block == (s + 1) / per_block)
                .map(|s| d(row_at[s], row_at[s + 1]))
                .collect();
            (row_at, pairs.iter().sum::<f32>() / pairs.len() as f32)
        };
        let (rows_order, apart) = spread(SlotOrder::Rows);
        assert!(rows_order.iter().enumerate().all(|(s, &r)| s == r), "row order: row i in slot i");
        let (_, near) = spread(SlotOrder::Locality);
        assert!(near * 2.0 < apart, "neighbouring slots: {near} in locality order, {apart} in row order");
    }

    /// `Writer::set_link_order`: pending vectors are linked in its order, one at a time by
    /// `index_pending` (a slot not pending, or past the capacity, is skipped), then the rest
    /// in slot order; and in batches by `index_pending_parallel`.
    #[test]
    fn link_order_is_followed() {
        let mut w = Writer::new(image(4)).unwrap();
        w.set_indexing(Indexing::Deferred);
        for (i, v) in rows(6, 4).iter().enumerate() {
            let ino = w.create(ROOT_INO, &format!("f{i}"), b"").unwrap();
            assert_eq!(w.set_embeddings(ino, &[v]).unwrap(), vec![i as u32]);
        }
        let pending = |w: &mut Writer<MemDevice>| (0..6).filter(|&s| w.is_pending(s).unwrap()).collect::<Vec<u32>>();
        assert_eq!(pending(&mut w), vec![0, 1, 2, 3, 4, 5]);
        w.set_link_order(vec![4, u32::MAX, 1]);
        assert_eq!(w.index_pending(1).unwrap(), 1);
        assert_eq!(pending(&mut w), vec![0, 1, 2, 3, 5]);
        assert_eq!(w.index_pending(1).unwrap(), 1);
        assert_eq!(pending(&mut w), vec![0, 2, 3, 5]);
        assert_eq!(w.index_pending(1).unwrap(), 1);
        assert_eq!(pending(&mut w), vec![2, 3, 5]);
        w.set_link_order(vec![5, 3]);
        assert_eq!(w.index_pending_parallel(10, 2).unwrap(), 3);
        assert_eq!(w.vector_header().unwrap().pending, 0);
        let bytes = w.commit().unwrap().into_device().bytes;
        let (img, early) = fsck::open(MemDevice { bytes }).unwrap();
        let problems = fsck::check(&img, early).unwrap().problems;
        assert!(problems.is_empty(), "{problems:#?}");
    }

    /// A load stopped part way through the files phase in locality order (a bad passage:
    /// the files before it in slot order are made and synced), then run again with the
    /// passages mended: every row's file, text and vector, once.
    #[test]
    fn resumes_files_made_in_slot_order() {
        let (n, dim) = (300usize, 8);
        let data = random_rows(n, dim, 5);
        let line = |i: usize, bad: bool| {
            if bad {
                "{\"id\": 1}\n".to_string()
            } else {
                format!("{{\"text\": \"row {i}\"}}\n")
            }
        };
        let jsonl = |bad: Option<usize>| -> Vec<u8> {
            (0..n).map(|i| line(i, bad == Some(i))).collect::<String>().into_bytes()
        };
        let mut w = Writer::new(image(dim as u32)).unwrap();
        let opts = ImportOpts {
            dir: Some("docs".into()),
            batch: 16,
            threads: 2,
            order: SlotOrder::Locality,
            build_codes: None,
        };
        let mut vecs = Fvecs::new(Cursor::new(fvecs_bytes(&data)), "v.fvecs").unwrap();
        let mut texts = Texts::new(Cursor::new(jsonl(Some(150))), "t.jsonl");
        let e = import(&mut w, &mut vecs, Some(&mut texts), &opts, |_, _, _| {}).unwrap_err();
        assert!(e.to_string().contains("t.jsonl: line 150: no \"text\" field"), "{e}");
        let made = (0..n).filter(|i| w.image().lookup(&format!("/docs/{i}")).is_ok()).count();
        assert!(made > 0 && made < n, "{made} files made before the bad passage");
        let mut texts = Texts::new(Cursor::new(jsonl(None)), "t.jsonl");
        let st = import(&mut w, &mut vecs, Some(&mut texts), &opts, |_, _, _| {}).unwrap();
        assert_eq!((st.imported + st.skipped, st.linked), (n as u64, n as u64));
        assert!(st.skipped > 0 && st.skipped as usize <= made, "skipped {} of {made}", st.skipped);
        let h = w.vector_header().unwrap();
        assert_eq!((h.live, h.pending), (n as u32, 0));
        for (i, row) in data.iter().enumerate() {
            let img = w.image();
            let ino = img.lookup(&format!("/docs/{i}")).unwrap();
            let inode = img.inode(ino).unwrap();
            assert_eq!(img.read_file(ino, &inode).unwrap(), format!("row {i}").as_bytes());
            let hits = w.search(row, 1, 64).unwrap();
            assert_eq!(hits[0].ino, u64::from(ino), "row {i}");
        }
        let bytes = w.commit().unwrap().into_device().bytes;
        let (img, early) = fsck::open(MemDevice { bytes }).unwrap();
        let problems = fsck::check(&img, early).unwrap().problems;
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn resumes_and_refuses_bad_input() {
        let data = rows(100, 4);
        let bytes = fvecs_bytes(&data);
        let mut w = Writer::new(image(4)).unwrap();
        // An interrupted run: the first 40 rows only.
        let mut first = Fvecs::new(Cursor::new(fvecs_bytes(&data[..40])), "v.fvecs").unwrap();
        let st = import(&mut w, &mut first, None::<&mut Texts<Cursor<Vec<u8>>>>, &ImportOpts::default(), |_, _, _| {})
            .unwrap();
        assert_eq!((st.imported, st.linked), (40, 40));
        let mut all = Fvecs::new(Cursor::new(bytes), "v.fvecs").unwrap();
        let st = import(&mut w, &mut all, None::<&mut Texts<Cursor<Vec<u8>>>>, &ImportOpts::default(), |_, _, _| {})
            .unwrap();
        assert_eq!((st.imported, st.skipped, st.linked), (60, 40, 60));
        assert_eq!(w.vector_header().unwrap().live, 100);
        // Another dimension; too few passages (the rows before are kept).
        let mut wrong = Fvecs::new(Cursor::new(fvecs_bytes(&rows(3, 5))), "w.fvecs").unwrap();
        let e = import(&mut w, &mut wrong, None::<&mut Texts<Cursor<Vec<u8>>>>, &ImportOpts::default(), |_, _, _| {})
            .unwrap_err();
        assert!(e.to_string().contains("dimension 5, the filesystem 4"), "{e}");
        // Too few passages: in row order the rows before are kept; in locality order (files
        // made in slot order, the passages read at random) it is found before any file.
        for (order, kept) in [(SlotOrder::Rows, true), (SlotOrder::Locality, false)] {
            let mut short = Texts::new(Cursor::new(b"{\"text\": \"a\"}\n".to_vec()), "t.jsonl");
            let mut two = Fvecs::new(Cursor::new(fvecs_bytes(&rows(2, 4))), "v.fvecs").unwrap();
            let dir = format!("more-{order:?}");
            let opts = ImportOpts { dir: Some(dir.clone()), batch: 1, order, ..Default::default() };
            let e = import(&mut w, &mut two, Some(&mut short), &opts, |_, _, _| {}).unwrap_err();
            assert!(e.to_string().contains("the passages end at line 1"), "{e}");
            assert_eq!(w.image().lookup(&format!("/{dir}/0")).is_ok(), kept, "{order:?}");
        }
    }
}
