//! The trace decoder on arbitrary bytes, both ways a reader uses it: record
//! by record, and in global time order (with the release of held events a
//! cut-short trace gets). It must return records or a `DecodeError`, never
//! panic, loop or allocate without bound.

#![no_main]

use libfuzzer_sys::fuzz_target;
use memtally_alloc::trace::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(data);
    while let Ok(Some(_)) = d.next_record() {}
    let _ = d.truncated_at();

    let mut d = Decoder::new(data);
    while let Ok(Some(_)) = d.next_ordered() {}
    d.flush_ordered();
    while let Ok(Some(_)) = d.next_ordered() {}
});
