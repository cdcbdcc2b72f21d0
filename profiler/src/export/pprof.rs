//! The model's sites as a pprof profile (`profile.proto` of
//! github.com/google/pprof), the format of Go's heap profiles, which
//! `go tool pprof`, Pyroscope and Grafana read.
//!
//! One sample per site, with Go's four heap sample types: `alloc_objects`
//! and `alloc_space` (blocks and bytes allocated over the run),
//! `inuse_objects` and `inuse_space` (blocks and bytes live when the trace
//! ends). `inuse_space` is the default, as in Go. Sampled traces hold the
//! model's estimates, already scaled, so the period is informative only.
//!
//! Stacks are symbolised here, inlined frames included (one pprof
//! `Location` per recorded address, one `Line` per inlined function, the
//! innermost first), so pprof has nothing to look up: every mapping says
//! it has functions, file names, line numbers and inline frames. A frame
//! that could not be symbolised gets a function named `module+0xoffset`,
//! as in memtally's other views. The allocator's own frames are trimmed,
//! as in the report; a stack trimmed to nothing is one `[no stack]`
//! frame.

use super::protobuf::Message;
use crate::model::Model;
use crate::stacks::StackId;
use crate::symbols::{Location, Symbolizer, inner_allocator_frames};
use std::collections::HashMap;
use std::io::{self, Write};

/// The pprof sample types written, in order, as (type, unit).
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// Writes the model's sites as a gzip-compressed pprof profile.
pub fn write_pprof(
    model: &Model,
    symbolizer: &mut Symbolizer,
    out: &mut dyn Write,
) -> io::Result<()> {
    let profile = encode(model, symbolizer);
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    gz.write_all(&profile)?;
    gz.finish()?;
    Ok(())
}

/// The uncompressed `Profile` message of the model's sites.
pub fn encode(model: &Model, symbolizer: &mut Symbolizer) -> Vec<u8> {
    let mut b = Builder::new();
    // pprof takes the first mapping for the main program (its `File:`
    // line), so the executable's comes first.
    let header = model.header().cloned().unwrap_or_default();
    if let Some(exe) = model
        .modules()
        .all()
        .iter()
        .position(|m| m.path.as_deref() == Some(header.exe.as_str()))
    {
        b.mapping(model, exe);
    }
    let mut sites: Vec<_> = model.sites().collect();
    sites.sort_by_key(|s| s.stack);
    let mut samples = Vec::new();
    for site in &sites {
        let c = &site.counters;
        let values = [
            c.allocations,
            c.bytes_allocated,
            c.live_blocks,
            c.live_bytes,
        ];
        if values == [0; 4] {
            continue;
        }
        let locations = b.stack(model, symbolizer, site.stack);
        let mut sample = Message::new();
        sample.packed(1, &locations);
        sample.packed(2, &values);
        samples.push(sample);
    }

    // Profile fields (profile.proto): 1 sample_type, 2 sample, 3 mapping,
    // 4 location, 5 function, 6 string_table, 9 time_nanos,
    // 10 duration_nanos, 11 period_type, 12 period, 13 comment,
    // 14 default_sample_type.
    let mut p = Message::new();
    for (kind, unit) in SAMPLE_TYPES {
        let t = b.value_type(kind, unit);
        p.message(1, &t);
    }
    for s in &samples {
        p.message(2, s);
    }
    for m in &b.mappings {
        p.message(3, m);
    }
    for l in &b.locations {
        p.message(4, l);
    }
    for f in &b.functions {
        p.message(5, f);
    }
    let period_type = b.value_type("space", "bytes");
    let comments = [
        format!("memtally trace of {}", header.argv.join(" ")),
        if model.is_estimate() {
            format!(
                "sampled: values are estimates (mean interval {} bytes)",
                header.sample_bytes
            )
        } else {
            "full: every allocation recorded".to_owned()
        },
    ];
    let comment_ids: Vec<u64> = comments.iter().map(|c| b.string(c) as u64).collect();
    let default_type = b.string("inuse_space");
    for s in &b.strings {
        p.bytes(6, s.as_bytes());
    }
    p.int(9, header.start_realtime_ns as i64)
        .int(10, model.duration_ns() as i64)
        .message(11, &period_type)
        .int(12, header.sample_bytes.max(1) as i64)
        .packed(13, &comment_ids)
        .int(14, default_type);
    p.into_bytes()
}

/// What identifies a pprof location: a stack node's module and address,
/// whether it was the innermost frame (looked up as is rather than as a
/// return address), and how many of its inlined lines were trimmed as
/// allocator frames.
type LocationKey = (Option<usize>, u64, bool, usize);

/// The tables of a profile being built, each entry once.
struct Builder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<Message>,
    function_ids: HashMap<(i64, i64), u64>,
    locations: Vec<Message>,
    location_ids: HashMap<LocationKey, u64>,
    mappings: Vec<Message>,
    mapping_ids: HashMap<usize, u64>,
    stacks: HashMap<StackId, Vec<u64>>,
}

impl Builder {
    fn new() -> Self {
        let mut b = Builder {
            strings: Vec::new(),
            string_ids: HashMap::new(),
            functions: Vec::new(),
            function_ids: HashMap::new(),
            locations: Vec::new(),
            location_ids: HashMap::new(),
            mappings: Vec::new(),
            mapping_ids: HashMap::new(),
            stacks: HashMap::new(),
        };
        // pprof requires string 0 to be "".
        b.string("");
        b
    }

    /// The string table index of `s`.
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), id);
        id
    }

    /// A `ValueType` message: 1 type, 2 unit.
    fn value_type(&mut self, kind: &str, unit: &str) -> Message {
        let mut m = Message::new();
        m.int(1, self.string(kind)).int(2, self.string(unit));
        m
    }

    /// The location ids of `stack`, innermost first, allocator frames
    /// trimmed.
    fn stack(&mut self, model: &Model, symbolizer: &mut Symbolizer, stack: StackId) -> Vec<u64> {
        if let Some(ids) = self.stacks.get(&stack) {
            return ids.clone();
        }
        let nodes = model.stacks().frames(stack);
        let resolved: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| symbolizer.node(model, n, i == 0))
            .collect();
        let flat: Vec<Location> = resolved.iter().flat_map(|l| l.iter().cloned()).collect();
        let mut trim = inner_allocator_frames(&flat);
        let mut ids = Vec::new();
        for ((i, node), lines) in nodes.iter().enumerate().zip(&resolved) {
            if trim >= lines.len() {
                trim -= lines.len();
                continue;
            }
            let key = (node.module, node.address, i == 0, trim);
            let id = match self.location_ids.get(&key) {
                Some(&id) => id,
                None => self.location(model, key, &lines[trim..]),
            };
            ids.push(id);
            trim = 0;
        }
        if ids.is_empty() {
            let key = (None, 0, true, 0);
            let id = match self.location_ids.get(&key) {
                Some(&id) => id,
                None => {
                    let mut none = Location::unknown(0);
                    none.function = Some("[no stack]".into());
                    self.location(model, key, &[none])
                }
            };
            ids.push(id);
        }
        self.stacks.insert(stack, ids.clone());
        ids
    }

    /// Adds a `Location` (1 id, 2 mapping_id, 3 address, 4 line) for the
    /// symbolised `lines` of one address, innermost first.
    fn location(&mut self, model: &Model, key: LocationKey, lines: &[Location]) -> u64 {
        let id = self.locations.len() as u64 + 1;
        let (module, address, _, _) = key;
        let mapping = module.map_or(0, |m| self.mapping(model, m));
        let mut loc = Message::new();
        loc.uint(1, id).uint(2, mapping).uint(3, address);
        for l in lines {
            // Line: 1 function_id, 2 line, 3 column.
            let mut line = Message::new();
            line.uint(1, self.function(l))
                .int(2, l.line.map_or(0, i64::from))
                .int(3, l.column.map_or(0, i64::from));
            loc.message(4, &line);
        }
        self.locations.push(loc);
        self.location_ids.insert(key, id);
        id
    }

    /// The id of the `Function` (1 id, 2 name, 3 system_name, 4 filename)
    /// of a symbolised frame.
    fn function(&mut self, l: &Location) -> u64 {
        let name = match &l.function {
            Some(f) => self.string(f),
            None => self.string(&l.raw()),
        };
        let file = self.string(l.file.as_deref().unwrap_or(""));
        if let Some(&id) = self.function_ids.get(&(name, file)) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let mut f = Message::new();
        f.uint(1, id).int(2, name).int(3, name).int(4, file);
        self.functions.push(f);
        self.function_ids.insert((name, file), id);
        id
    }

    /// The id of the `Mapping` of module `index`: 1 id, 2 memory_start,
    /// 3 memory_limit, 5 filename, 6 build_id, 7-10 has_functions,
    /// has_filenames, has_line_numbers, has_inline_frames.
    fn mapping(&mut self, model: &Model, index: usize) -> u64 {
        if let Some(&id) = self.mapping_ids.get(&index) {
            return id;
        }
        let Some(m) = model.modules().get(index) else {
            return 0;
        };
        let id = self.mappings.len() as u64 + 1;
        let start = m.segments.iter().map(|s| s.0).min().unwrap_or(m.base);
        let limit = m.segments.iter().map(|s| s.1).max().unwrap_or(m.base);
        let path = m.path.clone().unwrap_or_default();
        let build_id: String = m.build_id.iter().map(|b| format!("{b:02x}")).collect();
        let (path, build_id) = (self.string(&path), self.string(&build_id));
        let mut msg = Message::new();
        msg.uint(1, id)
            .uint(2, start)
            .uint(3, limit)
            .int(5, path)
            .int(6, build_id)
            .bool(7, true)
            .bool(8, true)
            .bool(9, true)
            .bool(10, true);
        self.mappings.push(msg);
        self.mapping_ids.insert(index, id);
        id
    }
}
