//! The exports read back: the pprof profile decoded field by field with the
//! test decoder of `protobuf.rs`, and the JSON parsed.

use super::protobuf::{Field, fields, unpack};
use super::{json, pprof};
use crate::ModelOptions;
use crate::read::Analysis;
use crate::symbols::Symbolizer;
use crate::synth::{TraceBuilder, alloc, free};

/// Stack 2 = 0x401000;0x402000 (in module `/opt/app`, which does not
/// exist, so frames are named `app+0x...`) allocates 1000 B twice, one
/// freed; stack 3 = 0x401000;0x7000 (no module) allocates 24 B, freed.
fn sample() -> Vec<u8> {
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(3200, 3200);
    t.string(1, "/opt/app");
    t.module(0x400000, 1, &[0xab, 0xcd], &[(0x401000, 0x403000, 0x1000)]);
    t.thread(0, 100, "main", 0);
    t.frame(1, 0, 0x401000)
        .frame(2, 1, 0x402000)
        .frame(3, 1, 0x7000);
    t.string(2, "phase two");
    t.events(
        0,
        &[
            alloc(320, 0xa000, 1000, 2),
            alloc(400, 0xb000, 1000, 2),
            free(500, 0xb000),
            alloc(640, 0xc000, 24, 3),
            free(960, 0xc000),
        ],
    );
    t.footer(3200);
    t.into_bytes()
}

fn analyse(bytes: &[u8]) -> Analysis {
    Analysis::read(bytes, ModelOptions::default()).unwrap()
}

/// A decoded profile: repeated fields by number.
struct Decoded<'a> {
    fields: Vec<(u32, Field<'a>)>,
}

impl<'a> Decoded<'a> {
    fn all(&self, n: u32) -> Vec<&'a [u8]> {
        self.fields
            .iter()
            .filter(|(f, _)| *f == n)
            .filter_map(|(_, v)| match v {
                Field::Bytes(b) => Some(*b),
                Field::Varint(_) => None,
            })
            .collect()
    }

    fn varint(&self, n: u32) -> u64 {
        self.fields
            .iter()
            .find_map(|(f, v)| match v {
                Field::Varint(x) if *f == n => Some(*x),
                _ => None,
            })
            .unwrap_or(0)
    }
}

fn varint(msg: &[u8], n: u32) -> u64 {
    Decoded {
        fields: fields(msg),
    }
    .varint(n)
}

fn bytes_of(msg: &[u8], n: u32) -> Vec<&[u8]> {
    Decoded {
        fields: fields(msg),
    }
    .all(n)
}

#[test]
fn pprof_has_go_heap_sample_types_and_the_sites_values() {
    let a = analyse(&sample());
    let bytes = pprof::encode(&a.model, &mut Symbolizer::default());
    let p = Decoded {
        fields: fields(&bytes),
    };
    let strings: Vec<String> = p
        .all(6)
        .iter()
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    assert_eq!(strings[0], "");
    let s = |i: u64| strings[i as usize].as_str();

    let types: Vec<(&str, &str)> = p
        .all(1)
        .iter()
        .map(|t| (s(varint(t, 1)), s(varint(t, 2))))
        .collect();
    assert_eq!(types, pprof::SAMPLE_TYPES);
    assert_eq!(s(p.varint(14)), "inuse_space");
    assert_eq!(p.varint(10), 3200, "duration_nanos");

    // Functions by id, then locations by id as lists of function names.
    let functions: Vec<(u64, String)> = p
        .all(5)
        .iter()
        .map(|f| (varint(f, 1), s(varint(f, 2)).to_owned()))
        .collect();
    let function = |id: u64| functions.iter().find(|f| f.0 == id).unwrap().1.clone();
    let locations: Vec<(u64, u64, u64, Vec<String>)> = p
        .all(4)
        .iter()
        .map(|l| {
            let names = bytes_of(l, 4)
                .iter()
                .map(|line| function(varint(line, 1)))
                .collect();
            (varint(l, 1), varint(l, 2), varint(l, 3), names)
        })
        .collect();
    let location = |id: u64| locations.iter().find(|l| l.0 == id).unwrap();

    let mut samples: Vec<(Vec<String>, Vec<u64>)> = p
        .all(2)
        .iter()
        .map(|sample| {
            let ids = unpack(bytes_of(sample, 1)[0]);
            let names = ids.iter().map(|&id| location(id).3.join("+")).collect();
            (names, unpack(bytes_of(sample, 2)[0]))
        })
        .collect();
    samples.sort();
    assert_eq!(
        samples,
        [
            (
                vec!["0x7000".to_owned(), "app+0x1000".to_owned()],
                vec![1, 24, 0, 0]
            ),
            (
                vec!["app+0x2000".to_owned(), "app+0x1000".to_owned()],
                vec![2, 2000, 1, 1000]
            ),
        ]
    );

    // One mapping, for /opt/app, with its build id; the frame outside any
    // module has none.
    let mappings = p.all(3);
    assert_eq!(mappings.len(), 1);
    assert_eq!(s(varint(mappings[0], 5)), "/opt/app");
    assert_eq!(s(varint(mappings[0], 6)), "abcd");
    assert_eq!(varint(mappings[0], 2), 0x401000);
    assert_eq!(varint(mappings[0], 3), 0x403000);
    let app = locations.iter().find(|l| l.2 == 0x402000).unwrap();
    assert_eq!(app.1, varint(mappings[0], 1));
    let bare = locations.iter().find(|l| l.2 == 0x7000).unwrap();
    assert_eq!(bare.1, 0);
}

#[test]
fn pprof_is_gzipped() {
    let a = analyse(&sample());
    let mut out = Vec::new();
    pprof::write_pprof(&a.model, &mut Symbolizer::default(), &mut out).unwrap();
    assert_eq!(&out[..2], [0x1f, 0x8b]);
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[..]), &mut plain).unwrap();
    assert_eq!(plain, pprof::encode(&a.model, &mut Symbolizer::default()));
}

#[test]
fn json_export_lists_every_site_with_its_whole_stack() {
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(1000, 1000);
    let mut parent = 0;
    // A 40-frame stack: the report would cut it to 5 frames.
    for id in 1..=40 {
        t.frame(id, parent, 0x1000 * id);
        parent = id;
    }
    t.string(7, "loaded");
    t.events(0, &[alloc(10, 0xa000, 64, 40), alloc(20, 0xb000, 8, 1)]);
    t.footer(1000);
    let a = analyse(t.bytes());
    let e = json::build(&a, &mut Symbolizer::default());
    assert_eq!(e.sites.len(), 2);
    assert_eq!(e.sites[0].bytes_allocated, 64);
    assert_eq!(e.sites[0].frames.len(), 40);
    assert_eq!(e.sites[0].more_frames, 0);
    assert_eq!(e.sites[1].frames.len(), 1);
    assert_eq!(e.summary.live_bytes, 72);
    let mut out = Vec::new();
    json::write(&e, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["sites"][0]["frames"][39]["address"], 0x1000);
}
