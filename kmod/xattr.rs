//! Extended attributes in the `user.`, `trusted.` and `security.` namespaces (format v3,
//! `core::format::xattr`): one xattr block per file, read under the metadata lock, changed in
//! a journal handle. The embedding (`user.vexfs.embedding`) is not here (crate::ioctl).

use crate::buf::Buf;
use crate::format::superblock::Region;
use crate::format::xattr::{self as fx, SetError};
use crate::inode::write_disk_inode;
use crate::sb::{Inode, SuperBlock};
use kernel::prelude::*;

/// `ENODATA`: no such attribute.
fn enodata() -> Error {
    Error::from_errno(-crate::error::ENODATA)
}

/// The xattr block of `inode` (0: none), checked as it is read. Errors: `EUCLEAN` (outside
/// the data region, a corrupt block), `EIO`.
fn read_block(sb: &SuperBlock, ino: u64, blk: u64) -> Result<Buf> {
    if !sb.disk().region(Region::Data).contains(blk) {
        return Err(sb.corrupt("xattr block outside the data region", blk));
    }
    let b = Buf::read(sb, blk)?;
    fx::check_xattr_block(b.data(), blk, ino).map_err(|e| sb.report(e))?;
    Ok(b)
}

/// The value of attribute `index`/`name` copied into `out` (`None`: only its length asked).
/// Returns its length. Errors: `ENODATA` (no such attribute), `ERANGE` (`out` too small),
/// `EUCLEAN`, `EIO`.
pub fn get(inode: &Inode, index: u8, name: &[u8], out: Option<&mut [u8]>) -> Result<usize> {
    let sb = inode.sb();
    let g = sb.lock();
    let st = inode.load(&g);
    if st.xattr_block == 0 {
        return Err(enodata());
    }
    let b = read_block(sb, inode.ino(), st.xattr_block)?;
    let v = fx::get(b.data(), index, name).ok_or_else(enodata)?;
    if let Some(out) = out {
        out.get_mut(..v.len()).ok_or(ERANGE)?.copy_from_slice(v);
    }
    Ok(v.len())
}

/// Sets (`Some`) or removes (`None`) attribute `index`/`name`, in the caller's journal handle;
/// `flags` `XATTR_CREATE` (1: `EEXIST` if it exists) or `XATTR_REPLACE` (2: `ENODATA` if not).
/// The block is allocated with the first attribute and freed with the last. On an error
/// nothing changed. Errors: `ENODATA`, `EEXIST`, `ENOSPC` (the attributes would not fit the
/// block, or no block), `ERANGE` (a name past 255 bytes), `EUCLEAN`, `EIO`.
pub fn set(inode: &Inode, index: u8, name: &[u8], value: Option<&[u8]>, flags: i32) -> Result {
    let sb = inode.sb();
    let ino = inode.ino();
    let mut g = sb.lock();
    let mut st = inode.load(&g);
    let (mut b, fresh) = if st.xattr_block != 0 {
        (read_block(sb, ino, st.xattr_block)?, false)
    } else {
        if value.is_none() || flags & 2 != 0 {
            return Err(enodata());
        }
        let blk = g.alloc_block(st.extent_block.max(st.vec_block))?;
        let mut b = match Buf::zeroed(sb, blk) {
            Ok(b) => b,
            Err(e) => {
                g.free_block(blk)?;
                return Err(e);
            }
        };
        fx::init(b.data_mut(), blk, ino);
        (b, true)
    };
    let blk = b.block();
    let exists = fx::get(b.data(), index, name).is_some();
    let refused = if flags & 1 != 0 && exists {
        Some(EEXIST)
    } else if (flags & 2 != 0 || value.is_none()) && !exists {
        Some(enodata())
    } else {
        None
    };
    let r = match refused {
        Some(e) => Err(e),
        None => fx::set(b.data_mut(), blk, ino, index, name, value).map(|_| ()).map_err(|e| match e {
            SetError::Name => ERANGE,
            SetError::NoSpace => ENOSPC,
            SetError::Corrupt(f) => sb.report(f),
        }),
    };
    if let Err(e) = r {
        if fresh {
            b.forget();
            g.free_block(blk)?;
        }
        return Err(e);
    }
    if fx::is_empty(b.data()) {
        // The last attribute went: the block goes too.
        b.forget();
        g.free_block(blk)?;
        st.xattr_block = 0;
    } else {
        sb.dirty(&b)?;
        st.xattr_block = blk;
    }
    inode.store(&g, &st);
    write_disk_inode(&g, inode, &st)
}

/// Writes the names of the attributes of `inode` (with their prefixes, NUL-terminated; the
/// `trusted.` ones only when `trusted`) into `out` (`None`: the length is asked). Returns the
/// bytes they take. Errors: `ERANGE` (`out` too small), `EUCLEAN`, `EIO`.
pub fn list(inode: &Inode, trusted: bool, mut out: Option<&mut [u8]>) -> Result<usize> {
    let sb = inode.sb();
    let g = sb.lock();
    let st = inode.load(&g);
    if st.xattr_block == 0 {
        return Ok(0);
    }
    let b = read_block(sb, inode.ino(), st.xattr_block)?;
    drop(g);
    let mut n = 0usize;
    for x in fx::entries(b.data()) {
        let x = x.map_err(|e| sb.report(e))?;
        if x.index == fx::XATTR_TRUSTED && !trusted {
            continue;
        }
        let prefix = fx::prefix(x.index).unwrap_or("").as_bytes();
        let len = prefix.len() + x.name.len() + 1;
        if let Some(o) = out.as_deref_mut() {
            let dst = o.get_mut(n..n + len).ok_or(ERANGE)?;
            let (p, rest) = dst.split_at_mut(prefix.len());
            p.copy_from_slice(prefix);
            let (nm, nul) = rest.split_at_mut(x.name.len());
            nm.copy_from_slice(x.name);
            nul.fill(0);
        }
        n += len;
    }
    Ok(n)
}
