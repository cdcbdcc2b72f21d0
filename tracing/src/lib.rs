//! Every `tracing` span becomes a memtally scope: memory by span — by
//! request (tower-http's request spans), by task (tokio's task spans, or
//! any future with `.instrument(span)`), by the program's own spans —
//! without changing the code that makes them.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! #[global_allocator]
//! static A: memtally_alloc::MemTally = memtally_alloc::MemTally::new();
//!
//! tracing_subscriber::registry()
//!     .with(memtally_tracing::MemtallyLayer::new())
//!     .init();
//! ```
//!
//! Run the program with `MEMTALLY=mode=full,out=app.mtt` and read the trace
//! with `memtally report --by scope app.mtt`.
//!
//! Mapping (see `docs/scopes.md` for what is counted):
//! - a span is one scope instance, named by the span's name; it ends when
//!   the span closes (its last handle is dropped);
//! - entering a span (directly, or on each poll of an instrumented future,
//!   on whichever thread) puts the thread in its instance; exiting gives
//!   the thread back the scope it was in before, so nested spans nest.
//!
//! The layer allocates a little itself (the span's extension, and the
//! per-thread stack of what to restore); those bytes count in the scope
//! that was current then. When nothing is being recorded, spans get no
//! instance and entering them costs a lookup in the span's extensions.

use memtally_alloc::scopes::{self, Saved};
use std::cell::RefCell;
use tracing_core::Subscriber;
use tracing_core::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The layer: add it to a `tracing_subscriber::registry()`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemtallyLayer {
    _private: (),
}

impl MemtallyLayer {
    /// A layer that maps spans to scopes.
    pub fn new() -> Self {
        MemtallyLayer::default()
    }
}

/// A span's scope instance, kept in its extensions.
struct SpanScope {
    name: &'static str,
    instance: u64,
}

thread_local! {
    /// Per thread, the spans entered and not yet exited, innermost last,
    /// with the scope each replaced.
    static ENTERED: RefCell<Vec<(Id, Saved)>> = const { RefCell::new(Vec::new()) };
}

impl<S> Layer<S> for MemtallyLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let instance = scopes::new_instance();
        if instance == 0 {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanScope {
                name: attrs.metadata().name(),
                instance,
            });
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let ext = span.extensions();
        let Some(scope) = ext.get::<SpanScope>() else {
            return;
        };
        // Room first, so that the stack's growth is not the span's.
        let _ = ENTERED.try_with(|e| e.borrow_mut().reserve(1));
        let saved = scopes::enter_instance(scope.name, scope.instance);
        drop(ext);
        // A thread that is exiting has no stack left: the scope is then
        // entered without a way back, which ends with the thread anyway.
        let _ = ENTERED.try_with(|e| e.borrow_mut().push((id.clone(), saved)));
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let _ = ENTERED.try_with(|e| {
            let mut e = e.borrow_mut();
            // Exits come in the reverse order of enters on a thread; an exit
            // of a span this layer did not see entered changes nothing.
            if let Some(i) = e.iter().rposition(|(entered, _)| entered == id) {
                let (_, saved) = e.remove(i);
                if i == e.len() {
                    scopes::restore(saved);
                }
            }
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id)
            && let Some(scope) = span.extensions().get::<SpanScope>()
        {
            scopes::end_instance(scope.instance);
        }
    }
}
