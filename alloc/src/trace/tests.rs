//! Round-trip, truncation, corruption and ordering tests of the trace format.

use super::*;
use proptest::prelude::*;

/// Builds a trace in memory, record by record.
pub(crate) struct TraceBuilder {
    pub bytes: Vec<u8>,
    states: std::collections::HashMap<u64, ThreadCodec>,
}

impl TraceBuilder {
    pub fn new() -> Self {
        let mut bytes = MAGIC.to_vec();
        let mut tmp = [0u8; 10];
        let mut c = Cursor::new(&mut tmp);
        put_uvar(&mut c, VERSION);
        let n = c.len();
        bytes.extend_from_slice(&tmp[..n]);
        TraceBuilder {
            bytes,
            states: Default::default(),
        }
    }

    pub fn record(&mut self, kind: u8, fill: impl FnOnce(&mut Cursor<'_>)) {
        let mut payload = vec![0u8; 1 << 16];
        let mut c = Cursor::new(&mut payload);
        fill(&mut c);
        assert!(!c.overflowed());
        let len = c.len();
        let mut head = [0u8; 16];
        let mut h = Cursor::new(&mut head);
        put_record_header(&mut h, kind, len);
        let hl = h.len();
        self.bytes.extend_from_slice(&head[..hl]);
        self.bytes.extend_from_slice(&payload[..len]);
    }

    pub fn header(&mut self) {
        self.record(kind::HEADER, |c| {
            put_uvar(c, VERSION);
            put_uvar(c, 4242);
            put_uvar(c, 1);
            put_u8(c, mode::FULL);
            put_uvar(c, 0);
            put_uvar(c, 64);
            put_uvar(c, 1_700_000_000_000_000_000);
            put_str(c, "/usr/bin/prog");
            put_uvar(c, 2);
            put_str(c, "prog");
            put_str(c, "--flag");
        });
    }

    pub fn events(&mut self, thread: u64, events: &[RawEvent]) {
        let mut state = self.states.remove(&thread).unwrap_or_default();
        self.record(kind::EVENTS, |c| {
            put_uvar(c, thread);
            for e in events {
                state.encode(c, e);
            }
        });
        self.states.insert(thread, state);
    }

    /// As [`TraceBuilder::events`], as an `EVENTS_PACKED` record (whether
    /// or not that is smaller).
    pub fn packed_events(&mut self, thread: u64, events: &[RawEvent]) {
        let mut state = self.states.remove(&thread).unwrap_or_default();
        let mut plain = vec![0u8; 1 << 16];
        let mut c = Cursor::new(&mut plain);
        for e in events {
            state.encode(&mut c, e);
        }
        assert!(!c.overflowed());
        let n = c.len();
        self.states.insert(thread, state);
        let mut scratch = vec![0u8; columns::COLUMNS * n];
        let mut out = vec![0u8; 2 * n + 1024];
        let mut zstd = zstd::bulk::Compressor::new(1).unwrap();
        let len = columns::pack(
            thread,
            &plain[..n],
            &mut scratch,
            &mut out,
            &mut columns::compress_with(&mut zstd),
        )
        .expect("encoded events pack");
        self.record(kind::EVENTS_PACKED, |c| {
            for &b in &out[..len] {
                put_u8(c, b);
            }
        });
    }
}

fn decode_all(bytes: &[u8]) -> (Result<Vec<Record>, DecodeError>, Option<u64>) {
    let mut d = Decoder::new(bytes);
    let mut out = Vec::new();
    loop {
        match d.next_record() {
            Ok(Some(r)) => out.push(r),
            Ok(None) => return (Ok(out), d.truncated_at()),
            Err(e) => return (Err(e), d.truncated_at()),
        }
    }
}

/// Times are stored in 32-tick units and latencies in 8-tick units.
fn quantise_time(t: u64) -> u64 {
    (t >> TIME_SHIFT) << TIME_SHIFT
}

fn quantise_latency(l: u64) -> u64 {
    if l == 0 {
        0
    } else {
        ((l >> LATENCY_SHIFT) << LATENCY_SHIFT).max(1)
    }
}

fn raw_to_kind(e: &RawEvent) -> Event {
    super::decode::event_of(quantised(*e))
}

/// `e` as the decoder gives it back: times and latencies rounded to the
/// trace's units, alignments up to 16 (which are not stored) as 16.
fn quantised(e: RawEvent) -> RawEvent {
    let mut e = with_time(e, quantise_time(e.time()));
    match &mut e {
        RawEvent::Alloc { latency, align, .. } => {
            *latency = quantise_latency(*latency);
            *align = (*align).max(16);
        }
        RawEvent::Free { latency, .. } | RawEvent::Realloc { latency, .. } => {
            *latency = quantise_latency(*latency);
        }
        _ => {}
    }
    e
}

fn event_strategy() -> impl Strategy<Value = (u64, RawEvent)> {
    // Addresses are multiples of 8; a few recur, so frees of recent
    // allocations (coded by rank) happen too.
    let addr = prop_oneof![
        any::<u64>().prop_map(|a| a & !7),
        (0x7f00_0000_0000u64..0x7f00_0100_0000).prop_map(|a| a & !7),
        (0u64..4).prop_map(|a| 0x5000_0000 + a * 64),
    ];
    let ev = prop_oneof![
        (
            addr.clone(),
            any::<u64>(),
            0u32..40,
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(address, size, align_log, stack, latency)| RawEvent::Alloc {
                    time: 0,
                    address,
                    size,
                    align: 1 << align_log,
                    stack,
                    latency,
                }
            ),
        (addr.clone(), any::<u64>()).prop_map(|(address, latency)| RawEvent::Free {
            time: 0,
            address,
            latency
        }),
        (addr.clone(), addr, any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(old_address, new_address, new_size, stack, latency)| RawEvent::Realloc {
                time: 0,
                old_address,
                new_address,
                new_size,
                stack,
                latency,
            }
        ),
        any::<u64>().prop_map(|string| RawEvent::Marker { time: 0, string }),
        (any::<u64>(), any::<u64>()).prop_map(|(string, instance)| RawEvent::Scope {
            time: 0,
            string,
            instance
        }),
        any::<u64>().prop_map(|instance| RawEvent::ScopeEnd { time: 0, instance }),
        prop_oneof![
            (any::<u64>(), any::<bool>()).prop_map(|(address, write)| RawEvent::Access {
                time: 0,
                address,
                write
            }),
            (any::<[u8; 2]>(), any::<u32>(), any::<[u64; 5]>()).prop_map(|(b, device, n)| {
                RawEvent::Device {
                    time: 0,
                    op: b[0],
                    memory: b[1],
                    device,
                    api: n[0],
                    address: n[1],
                    size: n[2],
                    stack: n[3],
                    // Only the operations that carry one keep it.
                    handle: if crate::trace::device::op::carries_handle(b[0]) {
                        n[4]
                    } else {
                        0
                    },
                }
            }),
        ],
        (any::<u8>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(error, address, call, stack)| RawEvent::Error {
                time: 0,
                error,
                address,
                call,
                stack
            }
        ),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(address, size, direct)| {
            RawEvent::Leak {
                time: 0,
                address,
                size,
                direct,
            }
        }),
        (any::<u64>(), any::<u8>(), any::<[u64; 4]>()).prop_map(|(stopped_at, status, n)| {
            RawEvent::LeakScan {
                time: 0,
                stopped_at,
                status,
                direct: [n[0], n[1]],
                indirect: [n[2], n[3]],
            }
        }),
    ];
    (0u64..4, ev)
}

fn with_time(e: RawEvent, t: u64) -> RawEvent {
    match e {
        RawEvent::Alloc {
            address,
            size,
            align,
            stack,
            latency,
            ..
        } => RawEvent::Alloc {
            time: t,
            address,
            size,
            align,
            stack,
            latency,
        },
        RawEvent::Free {
            address, latency, ..
        } => RawEvent::Free {
            time: t,
            address,
            latency,
        },
        RawEvent::Realloc {
            old_address,
            new_address,
            new_size,
            stack,
            latency,
            ..
        } => RawEvent::Realloc {
            time: t,
            old_address,
            new_address,
            new_size,
            stack,
            latency,
        },
        RawEvent::Marker { string, .. } => RawEvent::Marker { time: t, string },
        RawEvent::Scope {
            string, instance, ..
        } => RawEvent::Scope {
            time: t,
            string,
            instance,
        },
        RawEvent::ScopeEnd { instance, .. } => RawEvent::ScopeEnd { time: t, instance },
        RawEvent::Access { address, write, .. } => RawEvent::Access {
            time: t,
            address,
            write,
        },
        RawEvent::Device {
            op,
            memory,
            device,
            api,
            address,
            size,
            stack,
            handle,
            ..
        } => RawEvent::Device {
            time: t,
            op,
            memory,
            device,
            api,
            address,
            size,
            stack,
            handle,
        },
        RawEvent::Leak {
            address,
            size,
            direct,
            ..
        } => RawEvent::Leak {
            time: t,
            address,
            size,
            direct,
        },
        RawEvent::LeakScan {
            stopped_at,
            status,
            direct,
            indirect,
            ..
        } => RawEvent::LeakScan {
            time: t,
            stopped_at,
            status,
            direct,
            indirect,
        },
        RawEvent::Error {
            error,
            address,
            call,
            stack,
            ..
        } => RawEvent::Error {
            time: t,
            error,
            address,
            call,
            stack,
        },
    }
}

proptest! {
    /// Any sequence of events, split into records at arbitrary points and
    /// interleaved between threads, decodes back to the same absolute
    /// events per thread.
    #[test]
    fn events_round_trip(
        evs in proptest::collection::vec((event_strategy(), 0u64..1_000_000), 0..200),
        chunk in 1usize..20,
        packing in any::<u8>(),
    ) {
        let mut b = TraceBuilder::new();
        b.header();
        let mut time = [0u64; 4];
        let mut per_thread: Vec<Vec<RawEvent>> = vec![Vec::new(); 4];
        for ((thread, e), dt) in evs {
            time[thread as usize] += dt;
            per_thread[thread as usize].push(with_time(e, time[thread as usize]));
        }
        // Write the threads' events in chunks, round-robin.
        let mut cursors = [0usize; 4];
        loop {
            let mut wrote = false;
            for t in 0..4 {
                let evs = &per_thread[t];
                let start = cursors[t];
                if start < evs.len() {
                    let end = (start + chunk).min(evs.len());
                    // Plain and packed records of one thread mix freely.
                    if packing >> ((start / chunk + t) % 8) & 1 == 1 {
                        b.packed_events(t as u64, &evs[start..end]);
                    } else {
                        b.events(t as u64, &evs[start..end]);
                    }
                    cursors[t] = end;
                    wrote = true;
                }
            }
            if !wrote { break; }
        }
        let (records, truncated) = decode_all(&b.bytes);
        let records = records.expect("decodes");
        prop_assert_eq!(truncated, None);
        let mut got: Vec<Vec<Event>> = vec![Vec::new(); 4];
        for r in records {
            if let Record::Events { thread, events } = r {
                got[thread as usize].extend(events);
            }
        }
        for t in 0..4 {
            let want: Vec<Event> = per_thread[t].iter().map(raw_to_kind).collect();
            prop_assert_eq!(&got[t], &want);
        }
    }

    /// Random bytes after a valid magic never make the decoder panic.
    #[test]
    fn garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut bytes = MAGIC.to_vec();
        bytes.push(1);
        bytes.extend(tail);
        let _ = decode_all(&bytes);
    }

    /// Flipping bytes of a valid trace gives records, an error or a
    /// truncation, never a panic.
    #[test]
    fn corruption_never_panics(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = sample_trace();
        for (at, v) in flips {
            let i = at % bytes.len();
            bytes[i] ^= v | 1;
        }
        let _ = decode_all(&bytes);
    }
}

/// A block of 24 bytes allocated at time 100 and freed at 150.
fn alloc_then_free() -> [RawEvent; 2] {
    [
        RawEvent::Alloc {
            time: 100,
            address: 0x7f00_0000_1000,
            size: 24,
            align: 8,
            stack: 1,
            latency: 30,
        },
        RawEvent::Free {
            time: 150,
            address: 0x7f00_0000_1000,
            latency: 20,
        },
    ]
}

fn sample_trace() -> Vec<u8> {
    let mut b = TraceBuilder::new();
    b.header();
    b.record(kind::STRING, |c| {
        put_uvar(c, 1);
        put_str(c, "/lib/libc.so.6");
    });
    b.record(kind::FRAME, |c| {
        put_uvar(c, 1);
        put_uvar(c, 0);
        put_uvar(c, 0x401000);
    });
    b.events(0, &alloc_then_free());
    b.record(kind::FOOTER, |c| {
        put_uvar(c, 200);
        put_uvar(c, 2);
        put_uvar(c, 0);
        put_uvar(c, FOOTER_CLEAN_EXIT);
    });
    b.bytes
}

#[test]
fn every_prefix_decodes_to_the_complete_records() {
    let bytes = sample_trace();
    let (full, t) = decode_all(&bytes);
    let full = full.unwrap();
    assert_eq!(t, None);
    assert_eq!(full.len(), 5);
    let mut last_count = 0;
    let mut cuts_inside_records = 0;
    for cut in 0..bytes.len() {
        let (records, truncated) = decode_all(&bytes[..cut]);
        let records = records.unwrap_or_else(|e| panic!("prefix of {cut} bytes: {e}"));
        assert!(records.len() >= last_count, "cut {cut}");
        assert_eq!(&records[..], &full[..records.len()], "cut {cut}");
        last_count = records.len();
        if truncated.is_some() {
            cuts_inside_records += 1;
        }
    }
    // Most cuts fall inside a record and must say so.
    assert!(cuts_inside_records > bytes.len() / 2);
}

#[test]
fn not_a_trace_and_future_versions_are_clear_errors() {
    let (r, _) = decode_all(b"hello world, not a trace");
    assert!(matches!(r, Err(DecodeError::NotATrace)));
    let mut future = MAGIC.to_vec();
    future.push(9);
    let (r, _) = decode_all(&future);
    let e = r.unwrap_err();
    assert!(matches!(e, DecodeError::UnsupportedVersion(9)));
    assert!(e.to_string().contains("version 9 is not supported"));
}

#[test]
fn unknown_records_are_skipped() {
    let mut b = TraceBuilder::new();
    b.header();
    b.record(200, |c| put_str(c, "from the future"));
    b.record(kind::WATERMARK, |c| put_uvar(c, 5));
    let (r, _) = decode_all(&b.bytes);
    let r = r.unwrap();
    assert_eq!(r[1], Record::Unknown { kind: 200 });
    assert_eq!(r[2], Record::Watermark { ticks: 5 });
}

#[test]
fn ordered_mode_merges_threads_by_time_up_to_watermarks() {
    let mut b = TraceBuilder::new();
    b.header();
    let alloc = |time, address| RawEvent::Alloc {
        time,
        address,
        size: 8,
        align: 8,
        stack: 0,
        latency: 1,
    };
    let free = |time, address| RawEvent::Free {
        time,
        address,
        latency: 1,
    };
    // Thread 1 frees what thread 0 allocated, but its record comes first.
    b.events(1, &[free(2000, 0x1000), alloc(4000, 0x2000)]);
    b.events(0, &[alloc(1024, 0x1000), alloc(3008, 0x3000)]);
    b.record(kind::WATERMARK, |c| put_uvar(c, 3500));
    b.events(0, &[free(5024, 0x3000)]);
    b.record(kind::FOOTER, |c| {
        put_uvar(c, 6000);
        put_uvar(c, 5);
        put_uvar(c, 0);
        put_uvar(c, 1);
    });
    let mut d = Decoder::new(&b.bytes[..]);
    let mut times = Vec::new();
    while let Some(item) = d.next_ordered().unwrap() {
        if let Ordered::Event(e) = item {
            times.push((e.event.time, e.thread));
        }
    }
    assert_eq!(
        times,
        vec![(1024, 0), (1984, 1), (3008, 0), (4000, 1), (5024, 0)]
    );
}

#[test]
fn a_growing_file_can_be_followed() {
    let bytes = sample_trace();
    // Feed the decoder through a reader that reveals more bytes over time.
    struct Growing<'a> {
        data: &'a [u8],
        visible: std::rc::Rc<std::cell::Cell<usize>>,
        pos: usize,
    }
    impl std::io::Read for Growing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let end = self.visible.get().min(self.data.len());
            let n = (end - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }
    let visible = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut d = Decoder::new(Growing {
        data: &bytes,
        visible: visible.clone(),
        pos: 0,
    });
    let mut got = 0;
    for step in (0..=bytes.len()).step_by(3) {
        visible.set(step);
        while let Some(_r) = d.next_record().unwrap() {
            got += 1;
        }
    }
    visible.set(bytes.len());
    while let Some(_r) = d.next_record().unwrap() {
        got += 1;
    }
    assert_eq!(got, 5);
    assert_eq!(d.truncated_at(), None);
}

/// Encodes `events` of one thread, with times advancing by `dts`.
fn encoded(evs: &[(RawEvent, u64)]) -> Vec<u8> {
    let mut codec = ThreadCodec::default();
    let mut buf = vec![0u8; evs.len() * MAX_EVENT_BYTES + 1];
    let mut c = Cursor::new(&mut buf);
    let mut time = 0;
    for (e, dt) in evs {
        time += dt;
        codec.encode(&mut c, &with_time(*e, time));
    }
    let n = c.len();
    buf.truncate(n);
    buf
}

fn split_columns(events: &[u8]) -> (bool, Vec<Vec<u8>>) {
    let mut bufs = vec![vec![0u8; events.len()]; columns::COLUMNS];
    let mut parts = bufs.iter_mut();
    let mut cols: [columns::ColumnBuf<'_>; columns::COLUMNS] =
        core::array::from_fn(|_| columns::ColumnBuf::new(parts.next().unwrap()));
    let whole = columns::split(events, &mut cols);
    (whole, cols.iter().map(|c| c.bytes().to_vec()).collect())
}

fn pack_payload(thread: u64, events: &[u8]) -> Vec<u8> {
    let mut scratch = vec![0u8; columns::COLUMNS * events.len()];
    let mut out = vec![0u8; 2 * events.len() + 1024];
    let mut zstd = zstd::bulk::Compressor::new(1).unwrap();
    let len = columns::pack(
        thread,
        events,
        &mut scratch,
        &mut out,
        &mut columns::compress_with(&mut zstd),
    )
    .expect("packs");
    out.truncate(len);
    out
}

fn unpack_payload(payload: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let mut zstd = zstd::bulk::Decompressor::new().unwrap();
    columns::unpack(payload, &mut out, &mut scratch, &mut zstd).map(|()| out)
}

proptest! {
    /// Splitting a thread's encoded events into columns and merging them
    /// gives back the same bytes, for every event kind; so does packing
    /// and unpacking (the thread number first).
    #[test]
    fn columns_regroup_events_losslessly(
        evs in proptest::collection::vec((event_strategy(), 0u64..1_000_000), 0..300),
        thread in any::<u64>(),
    ) {
        let evs: Vec<(RawEvent, u64)> = evs.into_iter().map(|((_, e), dt)| (e, dt)).collect();
        let bytes = encoded(&evs);
        let (whole, cols) = split_columns(&bytes);
        prop_assert!(whole);
        prop_assert_eq!(cols.iter().map(Vec::len).sum::<usize>(), bytes.len() + cols[columns::col::HEAD].len());
        let mut merged = Vec::new();
        let refs: [&[u8]; columns::COLUMNS] = core::array::from_fn(|i| cols[i].as_slice());
        columns::merge(refs, &mut merged).expect("merges");
        prop_assert_eq!(&merged, &bytes);
        if !bytes.is_empty() {
            let unpacked = unpack_payload(&pack_payload(thread, &bytes)).expect("unpacks");
            let mut t = [0u8; 10];
            let mut c = Cursor::new(&mut t);
            put_uvar(&mut c, thread);
            let tl = c.len();
            prop_assert_eq!(&unpacked[..tl], &t[..tl]);
            prop_assert_eq!(&unpacked[tl..], &bytes[..]);
        }
    }

    /// A damaged packed payload unpacks to an error or to some bytes (which
    /// the event decoder then judges), never a panic.
    #[test]
    fn damaged_packed_events_never_panic(
        evs in proptest::collection::vec((event_strategy(), 0u64..1_000), 1..100),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let evs: Vec<(RawEvent, u64)> = evs.into_iter().map(|((_, e), dt)| (e, dt)).collect();
        let mut payload = pack_payload(3, &encoded(&evs));
        for (at, v) in flips {
            let i = at % payload.len();
            payload[i] ^= v | 1;
        }
        let _ = unpack_payload(&payload);
        payload.truncate(cut % (payload.len() + 1));
        let _ = unpack_payload(&payload);
    }
}

#[test]
fn events_that_do_not_parse_are_not_split() {
    // Kind 0 is no event; an allocation cut short is not whole.
    assert!(!split_columns(&[0x00]).0);
    let bytes = encoded(&[(
        RawEvent::Alloc {
            time: 0,
            address: 0x7f00_0000_1000,
            size: 300,
            align: 16,
            stack: 200,
            latency: 0,
        },
        5,
    )]);
    assert!(split_columns(&bytes).0);
    assert!(!split_columns(&bytes[..bytes.len() - 1]).0);
}

#[test]
fn bad_packed_payloads_are_named() {
    let bytes = encoded(&[(
        RawEvent::Free {
            time: 0,
            address: 0x1000,
            latency: 0,
        },
        1,
    )]);
    let good = pack_payload(1, &bytes);
    assert!(unpack_payload(&good).is_ok());
    let mut extra = good.clone();
    extra.push(0);
    assert_eq!(unpack_payload(&extra), Err("bytes after the last column"));
    // A column claiming more than a record can hold is refused before any
    // allocation: thread 1, then a head column of 2^40 bytes.
    let huge = [1u8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
    assert_eq!(
        unpack_payload(&huge),
        Err("columns longer than a packed record can be")
    );
    // Leftover bytes in a column: the time column one byte too long.
    let (_, mut cols) = split_columns(&bytes);
    cols[columns::col::TIME].push(0);
    let refs: [&[u8]; columns::COLUMNS] = core::array::from_fn(|i| cols[i].as_slice());
    assert_eq!(
        columns::merge(refs, &mut Vec::new()),
        Err("packed events leave bytes unused in a column")
    );
}

#[test]
fn a_packed_record_decodes_as_its_plain_events() {
    let evs = alloc_then_free();
    let mut plain = TraceBuilder::new();
    plain.header();
    plain.events(5, &evs);
    let mut packed = TraceBuilder::new();
    packed.header();
    let record = packed.bytes.len();
    packed.packed_events(5, &evs);
    assert_ne!(plain.bytes, packed.bytes);
    let (a, _) = decode_all(&plain.bytes);
    let (b, _) = decode_all(&packed.bytes);
    assert_eq!(a.unwrap(), b.unwrap());
    // A reader that skips events gets the record's thread, unpacked or not.
    let mut d = Decoder::new(&packed.bytes[..]);
    d.skip_events();
    assert!(matches!(d.next_record(), Ok(Some(Record::Header(_)))));
    assert_eq!(
        d.next_record().unwrap(),
        Some(Record::Events {
            thread: 5,
            events: Vec::new()
        })
    );
    // Damage to the packed record's structure is an error naming its
    // kind: here the head column's length (after the kind, the record's
    // length and the thread), 2 events made 3.
    let at = record + 3;
    assert_eq!(packed.bytes[at], 2);
    packed.bytes[at] = 3;
    match decode_all(&packed.bytes).0 {
        Err(DecodeError::Corrupt { kind, .. }) => assert_eq!(kind, kind::EVENTS_PACKED),
        other => panic!("expected a corrupt packed record, got {other:?}"),
    }
}

/// A trace of repetitive events (a loop allocating and freeing from four
/// sites) in `records` plain records of one thread, and its footer.
fn repetitive_trace(records: usize) -> (Vec<u8>, Vec<Record>) {
    let mut b = TraceBuilder::new();
    b.header();
    let mut time = 0;
    for r in 0..records {
        let mut evs = Vec::new();
        for i in 0..500u64 {
            time += 40 + (i * 7919) % 23;
            let address = 0x7f00_0000_0000 + ((r as u64 * 500 + i) % 64) * 64;
            evs.push(RawEvent::Alloc {
                time,
                address,
                size: [24, 40, 64, 200][i as usize % 4],
                align: 16,
                stack: 1 + i % 4,
                latency: 0,
            });
            time += 30;
            evs.push(RawEvent::Free {
                time,
                address,
                latency: 0,
            });
        }
        b.events(2, &evs);
    }
    b.record(kind::FOOTER, |c| {
        put_uvar(c, time + 1);
        put_uvar(c, (records * 1000) as u64);
        put_uvar(c, 0);
        put_uvar(c, FOOTER_CLEAN_EXIT);
    });
    let records = decode_all(&b.bytes).0.expect("decodes");
    (b.bytes, records)
}

#[test]
fn packing_a_trace_keeps_every_record() {
    let (plain, want) = repetitive_trace(6);
    let mut out = Vec::new();
    let stats = pack_trace(&plain[..], &mut out).expect("packs");
    assert_eq!(
        (stats.records, stats.event_records, stats.packed),
        (8, 6, 6)
    );
    assert_eq!(
        (stats.bytes_in, stats.bytes_out),
        (plain.len() as u64, out.len() as u64)
    );
    assert!(
        out.len() * 4 < plain.len(),
        "{} of {}",
        out.len(),
        plain.len()
    );
    assert_eq!(stats.truncated_at, None);
    assert_eq!(decode_all(&out).0.expect("packed trace decodes"), want);
    // Packing again changes nothing but copies.
    let mut again = Vec::new();
    let s = pack_trace(&out[..], &mut again).expect("packs");
    assert_eq!((s.event_records, s.packed), (0, 0));
    assert_eq!(again, out);
}

#[test]
fn packing_a_cut_trace_packs_what_came_before_the_cut() {
    let (plain, want) = repetitive_trace(4);
    // Cut inside the third events record.
    let cut = plain.len() * 3 / 5;
    let mut out = Vec::new();
    let stats = pack_trace(&plain[..cut], &mut out).expect("packs");
    let at = stats.truncated_at.expect("says it was cut");
    assert!(at < cut as u64);
    assert_eq!(stats.bytes_in, at);
    let (got, truncated) = decode_all(&out);
    assert_eq!(truncated, None, "the output ends on a record");
    let got = got.expect("decodes");
    assert_eq!(got[..], want[..got.len()]);
    assert!(got.len() >= 3, "header and two events records");
    // Not a trace, or a corrupt one: errors, and nothing claimed written.
    assert!(matches!(
        pack_trace(&b"hello world"[..], &mut Vec::new()),
        Err(PackError::Decode(DecodeError::NotATrace))
    ));
    assert!(pack_trace(&[][..], &mut Vec::new()).is_err());
}

/// A trace of an older version (1, recorded before the finer size
/// buckets) decodes with the buckets it was written with: every free names
/// a block that is live, as it did then (`memtally report`: 201
/// allocations, 63 frees, no unknown free).
#[test]
fn an_older_trace_decodes_with_its_own_buckets() {
    let bytes = include_bytes!("testdata/env-full-v1.mtt");
    assert!(bytes[8] < 5, "the fixture is a trace of version 1 to 4");
    let mut d = Decoder::new(&bytes[..]);
    let mut live = std::collections::HashSet::new();
    let (mut allocs, mut frees) = (0, 0);
    while let Some(r) = d.next_record().expect("decodes") {
        let Record::Events { events, .. } = r else {
            continue;
        };
        for e in events {
            match e.kind {
                EventKind::Alloc { address, .. } => {
                    allocs += 1;
                    live.insert(address);
                }
                EventKind::Free { address, .. } => {
                    frees += 1;
                    assert!(live.remove(&address), "free of {address:#x}, not live");
                }
                EventKind::Realloc {
                    old_address,
                    new_address,
                    ..
                } => {
                    assert!(live.remove(&old_address));
                    live.insert(new_address);
                }
                _ => {}
            }
        }
    }
    assert!(
        (allocs, frees) >= (200, 60),
        "{allocs} allocations, {frees} frees"
    );
}

#[test]
fn each_version_s_model_round_trips_its_own_events() {
    let evs: Vec<RawEvent> = (0..200u64)
        .map(|i| RawEvent::Alloc {
            time: i * 100,
            address: 0x7f00_0000_0000 + i * 48,
            size: 16 + (i * 37) % 3000,
            align: 16,
            stack: 1,
            latency: 0,
        })
        .collect();
    for version in [4, VERSION] {
        let mut enc = ThreadCodec::for_version(version);
        let mut buf = vec![0u8; evs.len() * MAX_EVENT_BYTES];
        let mut c = Cursor::new(&mut buf);
        for e in &evs {
            enc.encode(&mut c, e);
        }
        let n = c.len();
        struct Bytes<'a>(&'a [u8]);
        impl events::FieldReader for Bytes<'_> {
            fn u8(&mut self) -> Option<u8> {
                let (&b, rest) = self.0.split_first()?;
                self.0 = rest;
                Some(b)
            }
            fn uvar(&mut self) -> Option<u64> {
                let mut at = 0;
                let v = super::decode::read_uvar(self.0, &mut at)?;
                self.0 = &self.0[at..];
                Some(v)
            }
            fn svar(&mut self) -> Option<i64> {
                let v = self.uvar()?;
                Some(((v >> 1) as i64) ^ -((v & 1) as i64))
            }
        }
        let mut dec = ThreadCodec::for_version(version);
        let mut p = Bytes(&buf[..n]);
        let got: Vec<RawEvent> =
            std::iter::from_fn(|| (!p.0.is_empty()).then(|| dec.decode(&mut p).expect("decodes")))
                .collect();
        assert_eq!(got, evs.iter().map(|e| quantised(*e)).collect::<Vec<_>>());
    }
}
