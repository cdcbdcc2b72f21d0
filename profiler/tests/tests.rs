//! Integration tests of the profiler: synthetic traces whose right answers
//! are worked out by hand, fed through the decoder and the model, then
//! symbolised and reported.

mod corpus;
mod flame;
mod growth;
mod live;
mod model;
mod reading;
mod report;
mod symbols;
mod util;
