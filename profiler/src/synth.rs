//! Writes synthetic traces with the format's own encoder: the test traces
//! of this crate and of every view built on it, and a starting point for
//! importers of other tools' formats.
//!
//! The builder frames records and keeps each thread's event codec, so
//! callers give absolute times and addresses. The format stores event times
//! in units of `2^TIME_SHIFT` ticks and latencies in units of
//! `2^LATENCY_SHIFT` ticks, and addresses are multiples of 8: tests that
//! want exact answers use times that are multiples of 32 and latencies that
//! are multiples of 8.

use memtally_alloc::trace::{
    Cursor, FOOTER_CLEAN_EXIT, MAGIC, RawEvent, ThreadCodec, VERSION, kind, mode, put_bytes,
    put_record_header, put_str, put_u8, put_uvar,
};
use std::collections::HashMap;

/// Builds a trace in memory, record by record.
#[derive(Clone, Debug)]
pub struct TraceBuilder {
    bytes: Vec<u8>,
    codecs: HashMap<u64, ThreadCodec>,
}

impl Default for TraceBuilder {
    fn default() -> Self {
        TraceBuilder::new()
    }
}

impl TraceBuilder {
    /// A trace holding only the magic bytes and version.
    pub fn new() -> Self {
        let mut bytes = MAGIC.to_vec();
        let mut tmp = [0u8; 10];
        let mut c = Cursor::new(&mut tmp);
        put_uvar(&mut c, VERSION);
        let n = c.len();
        bytes.extend_from_slice(&tmp[..n]);
        TraceBuilder {
            bytes,
            codecs: HashMap::new(),
        }
    }

    /// The bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the bytes so far, leaving the builder empty but able to go
    /// on (its threads' codecs are kept): for writing a long trace to a
    /// file piece by piece.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    /// The finished trace.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Appends raw bytes (for corrupting a trace on purpose).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    /// Appends a record of `kind` whose payload `fill` writes.
    pub fn record(&mut self, kind: u8, mut fill: impl FnMut(&mut Cursor<'_>)) -> &mut Self {
        let mut size = 1 << 12;
        loop {
            let mut payload = vec![0u8; size];
            let mut c = Cursor::new(&mut payload);
            fill(&mut c);
            if c.overflowed() {
                size *= 4;
                continue;
            }
            let len = c.len();
            let mut head = [0u8; 16];
            let mut h = Cursor::new(&mut head);
            put_record_header(&mut h, kind, len);
            let hl = h.len();
            self.bytes.extend_from_slice(&head[..hl]);
            self.bytes.extend_from_slice(&payload[..len]);
            return self;
        }
    }

    /// A HEADER record (`mode` is `trace::mode::FULL` or `SAMPLED`).
    pub fn header(
        &mut self,
        pid: u64,
        mode: u8,
        sample_bytes: u64,
        exe: &str,
        argv: &[&str],
    ) -> &mut Self {
        self.record(kind::HEADER, |c| {
            put_uvar(c, VERSION);
            put_uvar(c, pid);
            put_uvar(c, 1);
            put_u8(c, mode);
            put_uvar(c, sample_bytes);
            put_uvar(c, 64);
            put_uvar(c, 1_700_000_000_000_000_000);
            put_str(c, exe);
            put_uvar(c, argv.len() as u64);
            for a in argv {
                put_str(c, a);
            }
        })
    }

    /// A full-mode HEADER for pid 4242 running `/usr/bin/prog --flag`.
    pub fn full_header(&mut self) -> &mut Self {
        self.header(4242, mode::FULL, 0, "/usr/bin/prog", &["prog", "--flag"])
    }

    /// A CLOCK record.
    pub fn clock(&mut self, ticks: u64, monotonic_ns: u64) -> &mut Self {
        self.record(kind::CLOCK, |c| {
            put_uvar(c, ticks);
            put_uvar(c, monotonic_ns);
            put_uvar(c, 1_700_000_000_000_000_000 + monotonic_ns);
        })
    }

    /// A STRING record.
    pub fn string(&mut self, id: u64, text: &str) -> &mut Self {
        self.record(kind::STRING, |c| {
            put_uvar(c, id);
            put_str(c, text);
        })
    }

    /// A FRAME record: stack `id` is `parent` plus inner frame `address`.
    pub fn frame(&mut self, id: u64, parent: u64, address: u64) -> &mut Self {
        self.record(kind::FRAME, |c| {
            put_uvar(c, id);
            put_uvar(c, parent);
            put_uvar(c, address);
        })
    }

    /// A MODULE record; `segments` are `(start, end, file offset)`.
    pub fn module(
        &mut self,
        base: u64,
        path_string: u64,
        build_id: &[u8],
        segments: &[(u64, u64, u64)],
    ) -> &mut Self {
        self.record(kind::MODULE, |c| {
            put_uvar(c, base);
            put_uvar(c, path_string);
            put_bytes(c, build_id);
            put_uvar(c, segments.len() as u64);
            for &(start, end, offset) in segments {
                put_uvar(c, start);
                put_uvar(c, end);
                put_uvar(c, offset);
            }
        })
    }

    /// A MODULE_GONE record.
    pub fn module_gone(&mut self, base: u64) -> &mut Self {
        self.record(kind::MODULE_GONE, |c| put_uvar(c, base))
    }

    /// A THREAD record.
    pub fn thread(&mut self, thread: u64, os_tid: u64, name: &str, ticks: u64) -> &mut Self {
        self.record(kind::THREAD, |c| {
            put_uvar(c, thread);
            put_uvar(c, os_tid);
            put_str(c, name);
            put_uvar(c, ticks);
        })
    }

    /// A THREAD_END record.
    pub fn thread_end(&mut self, thread: u64, ticks: u64) -> &mut Self {
        self.record(kind::THREAD_END, |c| {
            put_uvar(c, thread);
            put_uvar(c, ticks);
        })
    }

    /// An EVENTS record of `thread` (times must not go backwards within a
    /// thread).
    pub fn events(&mut self, thread: u64, events: &[RawEvent]) -> &mut Self {
        let start = self.codecs.get(&thread).cloned().unwrap_or_default();
        let mut end = start.clone();
        self.record(kind::EVENTS, |c| {
            // The closure may run again with a larger buffer: start over.
            end = start.clone();
            put_uvar(c, thread);
            for e in events {
                end.encode(c, e);
            }
        });
        self.codecs.insert(thread, end);
        self
    }

    /// A WATERMARK record.
    pub fn watermark(&mut self, ticks: u64) -> &mut Self {
        self.record(kind::WATERMARK, |c| put_uvar(c, ticks))
    }

    /// A MEMORY record.
    pub fn memory(&mut self, ticks: u64, rss_bytes: u64, mapped_bytes: u64) -> &mut Self {
        self.record(kind::MEMORY, |c| {
            put_uvar(c, ticks);
            put_uvar(c, rss_bytes);
            put_uvar(c, mapped_bytes);
        })
    }

    /// A FOOTER record of a clean exit.
    pub fn footer(&mut self, ticks: u64) -> &mut Self {
        self.record(kind::FOOTER, |c| {
            put_uvar(c, ticks);
            put_uvar(c, 0);
            put_uvar(c, 0);
            put_uvar(c, FOOTER_CLEAN_EXIT);
        })
    }
}

/// An allocation event (alignment 16, latency 16 ticks).
pub fn alloc(time: u64, address: u64, size: u64, stack: u64) -> RawEvent {
    RawEvent::Alloc {
        time,
        address,
        size,
        align: 16,
        stack,
        latency: 16,
    }
}

/// A free event (latency 8 ticks).
pub fn free(time: u64, address: u64) -> RawEvent {
    RawEvent::Free {
        time,
        address,
        latency: 8,
    }
}

/// A reallocation event (latency 24 ticks).
pub fn realloc(time: u64, old_address: u64, new_address: u64, size: u64, stack: u64) -> RawEvent {
    RawEvent::Realloc {
        time,
        old_address,
        new_address,
        new_size: size,
        stack,
        latency: 24,
    }
}

/// A scope event: the thread's events from here on belong to instance
/// `instance` of the scope named by STRING `string` (0, 0: no scope).
pub fn scope(time: u64, string: u64, instance: u64) -> RawEvent {
    RawEvent::Scope {
        time,
        string,
        instance,
    }
}

/// A device-memory event (`trace::device::op::*`, `memory::*`), as the
/// gpu-shim makes them.
#[allow(clippy::too_many_arguments)]
pub fn device(
    time: u64,
    op: u8,
    memory: u8,
    device: u32,
    api: u64,
    address: u64,
    size: u64,
    stack: u64,
) -> RawEvent {
    RawEvent::Device {
        time,
        op,
        memory,
        device,
        api,
        address,
        size,
        stack,
        handle: 0,
    }
}

/// A scope-end event.
pub fn scope_end(time: u64, instance: u64) -> RawEvent {
    RawEvent::ScopeEnd { time, instance }
}

/// An access annotation event.
pub fn access(time: u64, address: u64, write: bool) -> RawEvent {
    RawEvent::Access {
        time,
        address,
        write,
    }
}

/// A marker event (STRING `string`).
pub fn marker(time: u64, string: u64) -> RawEvent {
    RawEvent::Marker { time, string }
}

/// A finished full-mode trace of `rounds` rounds 10 ms apart (times in
/// ticks of one nanosecond): stack 1 (frame 0x405000) keeps 100 bytes each
/// round, stack 2 (frame 0x406000) allocates 300 bytes and frees them; for
/// tests of growth, timelines and time cursors.
pub fn steady_leak(rounds: u64) -> TraceBuilder {
    let end = rounds * 10_000_000;
    let mut t = TraceBuilder::new();
    t.full_header().clock(0, 0).clock(end, end);
    t.frame(1, 0, 0x405000).frame(2, 0, 0x406000);
    let mut events = Vec::new();
    for i in 0..rounds {
        events.push(alloc(i * 10_000_000, 0x10_0000 + i * 0x100, 100, 1));
        events.push(alloc(i * 10_000_000 + 1, 0x90_0000, 300, 2));
        events.push(free(i * 10_000_000 + 2, 0x90_0000));
    }
    t.events(0, &events).footer(end);
    t
}

/// A memory-error event: `address` given to the call named by STRING
/// `call` when no block was live there, with the call's `stack`.
pub fn memory_error(time: u64, address: u64, call: u64, stack: u64) -> RawEvent {
    RawEvent::Error {
        time,
        error: memtally_alloc::trace::error::NOT_LIVE,
        address,
        call,
        stack,
    }
}

/// One side of a data race: the access that trapped `first`, or the
/// other thread's during its stall (which that thread records first), on
/// the word at `address`, `call` the STRING `write` or `access`.
pub fn race_side(time: u64, first: bool, address: u64, call: u64, stack: u64) -> RawEvent {
    use memtally_alloc::trace::error::{RACE_FIRST, RACE_SECOND};
    RawEvent::Error {
        time,
        error: if first { RACE_FIRST } else { RACE_SECOND },
        address,
        call,
        stack,
    }
}
