//! A device's memory as a PyTorch memory snapshot (the pickle
//! `torch.cuda.memory._snapshot()` returns and `_dump_snapshot` writes),
//! so that PyTorch's viewer (pytorch.org/memory_viz,
//! `torch.cuda._memory_viz`) draws what memtally recorded of any program:
//!
//! - `device_traces`: per device ordinal, the allocation history as trace
//!   entries `{action, addr, size, stream, time_us, frames}` (`alloc`,
//!   `free_completed`, and `oom` for a failed allocation), frames
//!   innermost first as `{filename, line, name}`;
//! - `segments`: what was live at the end, each allocation a segment of
//!   one active block (memtally sees the driver's allocations, not a
//!   caching allocator's segments inside them).
//!
//! Only the asked device has a trace; the others' lists are empty.

use super::pickle::Value;
use crate::model::Model;
use crate::replay::{Op, Timed};
use crate::stacks::StackId;
use crate::symbols::Symbolizer;
use std::collections::HashMap;

/// The snapshot of `device`'s operations `ops` (from
/// [`crate::replay::read_device`]).
pub fn snapshot(model: &Model, symbolizer: &mut Symbolizer, ops: &[Timed], device: u32) -> Value {
    let mut frames_of: HashMap<StackId, Value> = HashMap::new();
    let mut frames = |stack: StackId, symbolizer: &mut Symbolizer| {
        frames_of
            .entry(stack)
            .or_insert_with(|| {
                Value::List(
                    symbolizer
                        .stack(model, stack)
                        .frames
                        .iter()
                        .map(|l| {
                            Value::dict(vec![
                                (
                                    "filename",
                                    Value::str(l.file.clone().unwrap_or_else(|| "??".into())),
                                ),
                                ("line", Value::int(l.line.unwrap_or(0))),
                                (
                                    "name",
                                    Value::str(l.function.clone().unwrap_or_else(|| l.raw())),
                                ),
                            ])
                        })
                        .collect(),
                )
            })
            .clone()
    };
    let start_us = model.header().map_or(0, |h| h.start_realtime_ns / 1000);
    let mut trace = Vec::new();
    let mut live: HashMap<u64, (u64, StackId)> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    for t in ops {
        let time_us = start_us + model.since_start_ns(t.ticks) / 1000;
        let entry = |action: &str, addr: u64, size: u64, frames: Value| {
            Value::dict(vec![
                ("action", Value::str(action)),
                ("addr", Value::int(addr)),
                ("size", Value::int(size)),
                ("stream", Value::int(0)),
                ("time_us", Value::int(time_us)),
                ("frames", frames),
            ])
        };
        match t.op {
            Op::Alloc { addr, size, .. } => {
                trace.push(entry("alloc", addr, size, frames(t.stack, symbolizer)));
                if live.insert(addr, (size, t.stack)).is_none() {
                    order.push(addr);
                }
            }
            Op::Free { addr } => {
                let (size, stack) = live.remove(&addr).unwrap_or((0, 0));
                trace.push(entry(
                    "free_completed",
                    addr,
                    size,
                    frames(stack, symbolizer),
                ));
            }
            Op::Failed { size } => {
                trace.push(entry("oom", 0, size, frames(t.stack, symbolizer)));
            }
            Op::Realloc { .. } | Op::Access { .. } | Op::Sync => {}
        }
    }
    let segments = order
        .into_iter()
        .filter_map(|addr| {
            let &(size, stack) = live.get(&addr)?;
            Some(Value::dict(vec![
                ("device", Value::int(device)),
                ("address", Value::int(addr)),
                ("total_size", Value::int(size)),
                ("allocated_size", Value::int(size)),
                ("active_size", Value::int(size)),
                ("requested_size", Value::int(size)),
                ("stream", Value::int(0)),
                ("segment_type", Value::str("large")),
                (
                    "blocks",
                    Value::List(vec![Value::dict(vec![
                        ("address", Value::int(addr)),
                        ("size", Value::int(size)),
                        ("requested_size", Value::int(size)),
                        ("state", Value::str("active_allocated")),
                        ("frames", frames(stack, symbolizer)),
                    ])]),
                ),
            ]))
        })
        .collect();
    let devices = (0..=device)
        .map(|d| {
            if d == device {
                Value::List(std::mem::take(&mut trace))
            } else {
                Value::List(Vec::new())
            }
        })
        .collect();
    Value::dict(vec![
        ("segments", Value::List(segments)),
        ("device_traces", Value::List(devices)),
    ])
}
