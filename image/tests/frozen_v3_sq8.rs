//! The frozen image of on-disk format v3 with the feature `SQ8` (`tests/images/v3-sq8.img.gz`:
//! SQ8 codes of every vector, docs/FORMAT.md "Vector codes") reads exactly as its manifest
//! (`tests/images/v3-sq8.manifest`) says, through the shared `verify`: the superblock (the
//! feature bit and `sq8_shift`), every path and inode, contents, chunks and the exact k-NN
//! answers (walked on the codes, re-ranked with the floats); and fsck finds it clean.
//!
//! The committed bytes are read, never regenerated. The other tests show what the image was
//! made to hold (a code per slot in use, tombstones included, each the quantisation of its
//! vector; the codes region between the HNSW region and the data) and what code that reads it
//! must refuse or repair: the bit cleared leaves a codes region the superblock cannot have; a
//! damaged code is reported and written again by `-y`, giving back the image as made.

mod frozen;

use frozen::{committed_named, each_edit_caught, verify};
use vexfs_core::format::superblock::{Region, Superblock, FEATURE_INCOMPAT_DIR_INDEX, FEATURE_INCOMPAT_SQ8};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::sq8;
use vexfs_image::fsck::{self, Fix, Kind, Mode};
use vexfs_image::{Image, MemDevice};

const NAME: &str = "v3-sq8";

fn image(raw: &[u8]) -> Image<MemDevice> {
    Image::open(MemDevice { bytes: raw.to_vec() }).unwrap()
}

#[test]
fn the_v3_sq8_image_reads_as_its_manifest_says() {
    let (manifest, raw) = committed_named(NAME);
    let bad = verify(&manifest, &raw, 3);
    assert!(bad.is_empty(), "{} differences:\n{}", bad.len(), bad.join("\n"));
}

/// The feature, the shift and the region where the format puts them; a code for each of the 12
/// slots in use (10 live, 2 tombstones), each its vector's quantisation.
#[test]
fn the_codes_as_made() {
    let (_, raw) = committed_named(NAME);
    let img = image(&raw);
    let sb = img.sb().clone();
    assert_eq!(sb.feature_incompat, FEATURE_INCOMPAT_DIR_INDEX | FEATURE_INCOMPAT_SQ8);
    assert_eq!(sb.sq8_shift, 5);
    let codes = sb.region(Region::VecCodes);
    assert_eq!((codes.start, codes.blocks), (sb.region(Region::Hnsw).end(), 1));
    assert_eq!(sb.region(Region::Data).start, codes.end());
    let cb = img.read_block(codes.start).unwrap();
    let mut in_use = 0;
    for slot in 0..sb.vec_capacity as usize {
        let code = &cb[slot * 32..slot * 32 + 32];
        let pos = slot * sb.vec_stride as usize;
        let vb = img.read_block(sb.region(Region::VecData).start + (pos / BLOCK_SIZE) as u64).unwrap();
        let bits: Vec<u32> =
            vb[pos % BLOCK_SIZE..][..32].chunks_exact(4).map(|w| u32::from_le_bytes(w.try_into().unwrap())).collect();
        if code.iter().all(|&b| b == 0) {
            continue;
        }
        in_use += 1;
        let mut want = [0u8; 32];
        sq8::quantise(&bits, 5, &mut want);
        assert_eq!(code, &want[..], "slot {slot}");
        // Components are multiples of 1/4 in -2..=2: codes are multiples of 8 in -64..=64.
        assert!(code.iter().all(|&b| (b as i8) % 8 == 0 && (b as i8).abs() <= 64), "slot {slot}");
    }
    assert_eq!(in_use, 12);
}

/// Without the bit the superblock cannot have a codes region: the image is refused; a damaged
/// code is reported as one (`VectorCode`, its own fix, no graph rebuild) and `-y` gives back
/// the image as made, byte for byte.
#[test]
fn what_must_be_refused_or_repaired() {
    let (manifest, raw) = committed_named(NAME);
    let mut cleared = raw.clone();
    let mut sb = Superblock::decode(&cleared[..BLOCK_SIZE]).unwrap();
    sb.feature_incompat &= !FEATURE_INCOMPAT_SQ8;
    sb.encode(&mut cleared[..BLOCK_SIZE]);
    assert!(Image::open(MemDevice { bytes: cleared }).is_err(), "a codes region without SQ8");

    let sb = image(&raw).sb().clone();
    let mut bad = raw.clone();
    let at = sb.region(Region::VecCodes).start as usize * BLOCK_SIZE + 2 * 32 + 3;
    bad[at] ^= 0x10;
    let (out, _) = fsck::run(MemDevice { bytes: bad.clone() }, Mode::Check).unwrap();
    let p = &out.report.problems;
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!((p[0].kind, p[0].fix.clone()), (Kind::VectorCode, Some(Fix::WriteCode { slot: 2 })));
    assert_eq!(out.exit_code(), 4);
    let (out, dev) = fsck::run(MemDevice { bytes: bad }, Mode::Repair).unwrap();
    assert_eq!(out.exit_code(), 1);
    assert!(dev.bytes == raw, "fsck -y did not give back the image as made");
    assert!(verify(&manifest, &dev.bytes, 3).is_empty());
}

#[test]
fn a_wrong_manifest_item_is_caught() {
    let (manifest, raw) = committed_named(NAME);
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("feature bits", "sb feature_incompat ".into(), "sb feature_incompat 2".into(), "superblock feature_incompat"),
        ("shift", "sb sq8_shift ".into(), "sb sq8_shift 6".into(), "superblock sq8_shift"),
    ];
    each_edit_caught(&manifest, &raw, 3, cases);
}
